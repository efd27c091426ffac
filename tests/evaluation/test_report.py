import html
import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    StratifiedKFold,
    cross_val_predict,
    cross_val_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from skorch import NeuralNetClassifier
from torch import nn

from skadapt import PretrainedFineTuner
from skadapt.evaluation import EvaluationReport, evaluate
from skadapt.evaluation._report import _training_summary

CV = StratifiedKFold(3, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def binary_report():
    X, y = make_classification(90, 5, random_state=0)
    return evaluate(LogisticRegression(), X, y, cv=CV), X, y


@pytest.fixture(scope="module")
def regression_report():
    X, y = make_regression(60, 3, noise=5.0, random_state=0)
    return evaluate(LinearRegression(), X, y, cv=KFold(3, shuffle=True, random_state=0)), X, y


def test_classifier_scores_match_sklearns_own(binary_report):
    report, X, y = binary_report
    assert isinstance(report, EvaluationReport) and report.task == "classification"
    for metric in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "precision_weighted"):
        expected = cross_val_score(LogisticRegression(), X, y, cv=CV, scoring=metric)
        np.testing.assert_allclose(report.fold_scores[metric], expected)
        np.testing.assert_allclose(report.to_frame().loc[metric], [expected.mean(), expected.std()])
    assert (report.fold_scores[["fit_time", "predict_time"]] > 0).all().all()


def test_confusion_matrix_and_per_class_come_from_out_of_fold_predictions(binary_report):
    report, X, y = binary_report
    predicted = cross_val_predict(LogisticRegression(), X, y, cv=CV)
    by_sample = report.predictions.sort_values("sample")
    np.testing.assert_array_equal(by_sample["sample"], np.arange(len(y)))
    np.testing.assert_array_equal(by_sample["y_pred"], predicted)
    matrix = report.confusion_matrix
    assert matrix.to_numpy().sum() == len(y)
    assert matrix.loc[1, 1] == np.sum((y == 1) & (predicted == 1))
    assert report.per_class.loc["1", "support"] == np.sum(y == 1)
    assert list(report.per_class.index) == ["0", "1", "macro avg", "weighted avg"]


def test_multiclass_string_labels_and_roc_auc_one_vs_rest():
    X, y = make_classification(120, 6, n_informative=4, n_classes=3, random_state=0)
    labels = np.array(["ant", "bee", "wasp"])[y]
    report = evaluate(LogisticRegression(), X, labels, cv=CV)
    expected = cross_val_score(LogisticRegression(), X, labels, cv=CV, scoring="roc_auc_ovr")
    np.testing.assert_allclose(report.fold_scores["roc_auc"], expected)
    assert list(report.confusion_matrix.columns) == ["ant", "bee", "wasp"]


def test_roc_auc_from_decision_function_and_absent_when_undefined():
    X, y = make_classification(90, 5, random_state=0)
    assert "roc_auc" in evaluate(SVC(), X, y, cv=CV).fold_scores
    X3, y3 = make_classification(90, 5, n_informative=3, n_classes=3, random_state=0)
    # a multiclass SVC without probabilities has no ROC AUC: the metric is left out, not faked
    assert "roc_auc" not in evaluate(SVC(), X3, y3, cv=CV).fold_scores


def test_regressor_scores_and_residuals(regression_report):
    report, X, y = regression_report
    cv = KFold(3, shuffle=True, random_state=0)
    mse = -cross_val_score(LinearRegression(), X, y, cv=cv, scoring="neg_mean_squared_error")
    np.testing.assert_allclose(report.fold_scores["mse"], mse)
    np.testing.assert_allclose(report.fold_scores["rmse"], np.sqrt(mse))
    r2 = cross_val_score(LinearRegression(), X, y, cv=cv, scoring="r2")
    np.testing.assert_allclose(report.fold_scores["r2"], r2)
    residuals = report.predictions["y_true"] - report.predictions["y_pred"]
    np.testing.assert_allclose(report.predictions["residual"], residuals)
    assert report.confusion_matrix is None and report.classes is None
    assert "## Residuals" in report.to_markdown()


def test_to_frame_markdown_and_dict(binary_report):
    report, _, _ = binary_report
    frame = report.to_frame()
    assert list(frame.columns) == ["mean", "std"] and "fit_time" in frame.index
    markdown = report.to_markdown()
    assert "| accuracy |" in markdown and "## Confusion matrix" in markdown
    assert markdown.count("| --- ") >= 3 * 3  # three tables with a header rule
    numbers = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert numbers["summary"]["accuracy"]["mean"] == pytest.approx(frame.loc["accuracy", "mean"])
    assert numbers["confusion_matrix"] == report.confusion_matrix.to_numpy().tolist()
    assert len(numbers["folds"]) == 3 and numbers["classes"] == [0, 1]


@pytest.mark.filterwarnings("ignore:A single label was found")
def test_undefined_values_become_none_in_the_dict():
    # one fold holds a single class: ROC AUC is undefined there and averaged over the others
    X = np.arange(12, dtype=float).reshape(-1, 1)
    y = np.array([0] * 4 + [0, 1] * 4)
    folds = [(np.arange(4, 12), np.arange(4)), (np.arange(8), np.arange(8, 12))]
    report = evaluate(LogisticRegression(), X, y, cv=folds)
    assert np.isnan(report.fold_scores.loc[0, "roc_auc"])
    assert report.to_frame().loc["roc_auc", "mean"] == report.fold_scores.loc[1, "roc_auc"]
    assert report.to_dict()["folds"][0]["roc_auc"] is None
    assert "n/a" not in report.to_markdown()  # the summary is defined, from the other fold


def test_plot_draws_the_confusion_matrix(binary_report):
    figure = binary_report[0].plot()
    assert len(figure.axes) == 1 and figure.axes[0].get_title().startswith("Confusion matrix")
    # the counts are written in the cells
    cell_texts = sorted(int(text.get_text()) for text in figure.axes[0].texts)
    assert cell_texts == sorted(binary_report[0].confusion_matrix.to_numpy().ravel().tolist())


def test_plot_of_a_regressor(regression_report):
    figure = regression_report[0].plot()
    assert [ax.get_title().split(" (")[0] for ax in figure.axes] == [
        "Predicted against true",
        "Residuals",
    ]


def test_save_writes_html_with_embedded_figures_and_json(binary_report, tmp_path):
    html_path = binary_report[0].save(tmp_path / "run1")
    assert html_path == tmp_path / "run1" / "report.html"
    page = html_path.read_text()
    assert "data:image/png;base64," in page and "balanced_accuracy" in page
    numbers = json.loads((tmp_path / "run1" / "report.json").read_text())
    assert numbers["task"] == "classification"
    with pytest.raises(ValueError, match="is a file: pass a directory"):
        binary_report[0].save(html_path)


def test_without_matplotlib_plot_says_how_to_install_it(binary_report, tmp_path, monkeypatch):
    for name in [name for name in sys.modules if name.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install skadapt\[plots\]"):
        binary_report[0].plot()
    page = binary_report[0].save(tmp_path).read_text()
    assert "No figures" in page and "skadapt[plots]" in page


class _TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x):
        return self.layers(x)


def test_learning_curves_of_a_skorch_net_in_a_pipeline():
    torch.manual_seed(0)
    X, y = make_classification(60, 5, random_state=0)
    net = NeuralNetClassifier(
        _TinyMLP, criterion=nn.CrossEntropyLoss, max_epochs=3, lr=0.1, verbose=0
    )
    report = evaluate(make_pipeline(StandardScaler(), net), X.astype(np.float32), y, cv=CV)
    curves = report.learning_curves
    assert list(curves.columns) == ["fold", "epoch", "train_loss", "valid_loss", "valid_acc"]
    assert len(curves) == 3 * 3 and curves["epoch"].tolist() == [1, 2, 3] * 3
    history = report.estimators[1][-1].history_
    np.testing.assert_allclose(curves[curves.fold == 1]["train_loss"], history[:, "train_loss"])
    titles = [ax.get_title() for ax in report.plot().axes]
    assert titles[1:] == ["Learning curves per fold", "Validation accuracy per fold"]
    assert len(report.to_dict()["learning_curves"]) == 9


def test_learning_curves_without_a_validation_split():
    X, y = make_classification(40, 5, random_state=0)
    net = NeuralNetClassifier(
        _TinyMLP, criterion=nn.CrossEntropyLoss, max_epochs=2, train_split=None, verbose=0
    )
    report = evaluate(net, X.astype(np.float32), y, cv=CV)
    assert list(report.learning_curves.columns) == ["fold", "epoch", "train_loss"]
    assert len(report.plot().axes) == 2


def test_plain_estimators_have_no_learning_curves(binary_report):
    assert binary_report[0].learning_curves is None


def test_refuses_what_is_neither_classifier_nor_regressor():
    with pytest.raises(TypeError, match="needs a classifier or a regressor, got StandardScaler"):
        evaluate(StandardScaler(), np.zeros((10, 2)), np.zeros(10))


def test_refuses_a_continuous_target_for_a_classifier():
    with pytest.raises(ValueError, match="must hold class labels"):
        evaluate(LogisticRegression(), np.zeros((10, 2)), np.linspace(0, 1, 10))


def test_dataframe_and_series_inputs():
    X, y = make_classification(60, 4, random_state=0)
    frame = pd.DataFrame(X, columns=list("abcd"), index=np.arange(100, 160))
    report = evaluate(LogisticRegression(), frame, pd.Series(y, index=frame.index), cv=CV)
    # positions, not index labels, identify the samples
    assert sorted(report.predictions["sample"]) == list(range(60))


def test_learning_curves_of_the_best_model_of_a_search():
    X, y = make_classification(40, 5, random_state=0)
    net = NeuralNetClassifier(
        _TinyMLP, criterion=nn.CrossEntropyLoss, max_epochs=2, train_split=None, verbose=0
    )
    search = GridSearchCV(net, {"lr": [0.01, 0.1]}, cv=2)
    report = evaluate(search, X.astype(np.float32), y, cv=CV)
    assert report.learning_curves["fold"].tolist() == [0, 0, 1, 1, 2, 2]


def _tiny_network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _tiny_data(n=60):
    X = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    return X, np.where(X[:, 0] > 0, "pos", "neg")


@pytest.fixture(scope="module")
def fine_tuned_report(one_torch_thread):
    X, y = _tiny_data()
    tuner = PretrainedFineTuner(_tiny_network(), freeze="none", max_epochs=2, random_state=0)
    return evaluate(tuner, X, y, cv=StratifiedKFold(2, shuffle=True, random_state=0))


def test_training_says_how_each_fold_of_a_fine_tuner_trained(fine_tuned_report):
    training = fine_tuned_report.training
    assert list(training.columns) == [
        "fold", "training_path", "head_solver", "epochs_run", "best_epoch", "restored_best",
        "n_validation", "policy",
    ]
    assert training["fold"].tolist() == [0, 1]
    assert training["epochs_run"].tolist() == [2, 2]
    assert training["restored_best"].tolist() == [False, False]
    assert training["n_validation"].tolist() == [0, 0]
    assert training["best_epoch"].isna().all()  # no internal split: no epoch was picked
    assert training["training_path"].str.startswith("full network (").all()
    assert (training["head_solver"] == "gradient").all()
    for fold, fitted in enumerate(fine_tuned_report.estimators):
        assert training.loc[fold, "policy"] == fitted.validation_["policy"]
        assert training.loc[fold, "training_path"] == fitted.training_path_
    assert "30 samples is 3 < 100" in training.loc[0, "policy"]


def test_training_in_markdown_dict_and_html(fine_tuned_report, tmp_path):
    markdown = fine_tuned_report.to_markdown()
    assert "## Training" in markdown
    assert markdown.index("## Scores") < markdown.index("## Training") < markdown.index(
        "## Per class"
    )
    section = markdown.split("## Training")[1].split("\n## ")[0]
    policy = fine_tuned_report.training.loc[0, "policy"]
    assert policy in section
    header = section.strip().splitlines()[0]
    for column in ("path", "head solver", "epochs run", "best epoch", "restored", "policy"):
        assert column in header
    assert "| 0 | full network (" in section and "| gradient | 2 | n/a | no | 0 |" in section

    records = json.loads(json.dumps(fine_tuned_report.to_dict(), allow_nan=False))["training"]
    assert len(records) == 2
    assert records[0]["epochs_run"] == 2 and isinstance(records[0]["epochs_run"], int)
    assert records[0]["restored_best"] is False and records[0]["best_epoch"] is None
    assert records[1]["policy"] == fine_tuned_report.training.loc[1, "policy"]

    page = fine_tuned_report.save(tmp_path).read_text()
    assert "<h2>Training</h2>" in page and html.escape(policy) in page


def test_training_of_a_convex_probe(one_torch_thread):
    X, y = _tiny_data()
    tuner = PretrainedFineTuner(_tiny_network(), freeze="backbone", max_epochs=2, random_state=0)
    report = evaluate(tuner, X, y, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    training = report.training
    assert training["head_solver"].tolist() == ["convex", "convex"]
    assert training["training_path"].tolist() == ["cached backbone features"] * 2
    assert training["policy"].str.startswith("convex head").all()
    assert "| cached backbone features | convex |" in report.to_markdown()


def test_plain_estimators_have_no_training_summary(binary_report):
    report = binary_report[0]
    assert report.training is None
    assert "## Training" not in report.to_markdown()
    assert "training" not in report.to_dict()


class _Recorded:
    """A fitted model that records only part of what a fine-tuner does."""

    def __init__(self, **attributes):
        self.__dict__.update(attributes)


def test_training_summary_reaches_pipelines_and_searches_and_fills_gaps():
    validation = {"n_validation": 120, "early_stopping": True, "patience": 5, "epochs_run": 9,
                  "best_epoch": 4, "restored_best": True, "policy": "early stopping | best"}
    tuner = _Recorded(training_path_="full network (x)", head_solver_="gradient",
                      validation_=validation)
    search = _Recorded(best_estimator_=make_pipeline(StandardScaler(), "passthrough"))
    search.best_estimator_.steps[-1] = ("tuner", tuner)
    training = _training_summary([search, _Recorded(history_=[])])
    assert training.loc[0, "best_epoch"] == 4 and training.loc[0, "restored_best"]
    assert training.loc[1, ["training_path", "epochs_run", "restored_best"]].isna().all()
    report = EvaluationReport(
        "classification", pd.DataFrame({"accuracy": [1.0, 1.0]}), pd.DataFrame(),
        training=training,
    )
    records = json.loads(json.dumps(report.to_dict(), allow_nan=False))["training"]
    assert records[0]["best_epoch"] == 4 and records[0]["restored_best"] is True
    assert records[1]["training_path"] is None and records[1]["epochs_run"] is None
    markdown_row = report.to_markdown().split("## Training")[1]
    assert "| 9 | 4 | yes | 120 | early stopping \\| best |" in markdown_row
    assert "| 1 | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in markdown_row
    assert _training_summary([_Recorded(history_=[]), LogisticRegression()]) is None
