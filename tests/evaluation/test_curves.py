import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from skadapt import PretrainedFineTuner, PretrainedFineTunerRegressor
from skadapt.evaluation import evaluate
from skadapt.evaluation._curves import training_events, unfreezing_epochs


def _network(outputs=2):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, outputs))


def _data(n=240):
    X = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    return X, np.where(X[:, 0] + X[:, 1] > 0, "pos", "neg")


@pytest.fixture(scope="module")
def staged(one_torch_thread):
    X, y = _data()
    tuner = PretrainedFineTuner(_network(), freeze="backbone", unfreeze_at=2, max_epochs=5,
                                lr=0.1, validation_fraction=0.5, patience=2,
                                feature_cache=False, random_state=0)
    return evaluate(tuner, X, y, cv=StratifiedKFold(2, shuffle=True, random_state=0))


def test_the_history_records_stage_lr_and_training_accuracy(staged):
    curves = staged.learning_curves
    for column in ("train_loss", "valid_loss", "valid_acc", "train_acc", "lr", "stage",
                   "n_trainable"):
        assert column in curves, column
    first = curves[curves.fold == 0]
    assert first["stage"].tolist()[:3] == [1, 1, 2]
    assert first["n_trainable"].iloc[2] > first["n_trainable"].iloc[1]
    assert first["train_acc"].between(0, 1).all()
    history = staged.estimators[0].history_
    np.testing.assert_allclose(first["lr"], history[:, "lr"])


def test_train_acc_is_the_accuracy_on_the_training_batches(one_torch_thread):
    X, y = _data(64)
    # lr=1e-12: the network barely changes, so each epoch's training accuracy is that of the start
    tuner = PretrainedFineTuner(_network(), freeze="none", max_epochs=2, lr=1e-12, batch_size=16,
                                validation_fraction=None, patience=None, feature_cache=False,
                                random_state=0).fit(X, y)
    expected = np.mean(tuner.predict(X) == y)
    assert tuner.history_[:, "train_acc"] == pytest.approx([expected, expected])


def test_regressors_record_no_training_accuracy(one_torch_thread):
    X, _ = _data(32)
    tuner = PretrainedFineTunerRegressor(_network(1), freeze="none", max_epochs=1,
                                         validation_fraction=None, patience=None,
                                         feature_cache=False, random_state=0)
    tuner.fit(X, X[:, 0])
    assert "train_acc" not in tuner.history_[-1] and tuner.history_[-1, "stage"] == 1


def test_unfreezing_and_best_epochs_are_marked(staged):
    assert unfreezing_epochs(staged.learning_curves) == {0: [3], 1: [3]}
    events = training_events(staged)
    assert events["unfrozen at"].tolist() == ["3", "3"]
    assert events["best epoch"].tolist() == staged.training["best_epoch"].tolist()
    figure = staged.plot_training()
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles == ["Loss", "Accuracy", "Learning rate at the end of each epoch"]
    loss = figure.axes[0]
    # one dotted line per fold, between epochs 2 and 3
    positions = [line.get_xdata()[0] for line in loss.lines if line.get_linestyle() == ":"]
    assert positions == [2.5, 2.5]
    stars = [line for line in loss.lines if line.get_marker() == "*"]
    assert len(stars) == 2
    best = staged.training.loc[0, "best_epoch"]
    assert stars[0].get_xdata()[0] == best
    assert figure.axes[2].get_yscale() == "log"


def test_the_lr_finders_curve_joins_the_training_curves(staged, one_torch_thread):
    X, y = _data(64)
    result = PretrainedFineTuner(_network(), freeze="none", random_state=0).lr_find(
        X, y, num_iter=20)
    staged.lr_finder = result
    try:
        titles = [ax.get_title() for ax in staged.plot_training().axes if ax.get_visible()]
    finally:
        staged.lr_finder = None
    assert titles[-1] == "Learning-rate range test" and len(titles) == 4


def test_no_training_curves_for_plain_estimators():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(30, 3, n_informative=2, n_redundant=0, random_state=0)
    report = evaluate(LogisticRegression(), X, y, cv=3)
    with pytest.raises(ValueError, match="no training curves"):
        report.plot_training()
