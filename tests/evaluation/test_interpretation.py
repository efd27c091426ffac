import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.svm import SVC
from torch import nn

from skadapt import PretrainedFineTuner
from skadapt.evaluation import evaluate

CV = StratifiedKFold(3, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def multiclass():
    X, y = make_classification(150, 6, n_informative=4, n_classes=3, random_state=0)
    labels = np.array(["ant", "bee", "wasp"])[y]
    return evaluate(LogisticRegression(), X, labels, cv=CV), X, labels


def test_predictions_keep_each_folds_probabilities(multiclass):
    report, X, labels = multiclass
    expected = cross_val_predict(LogisticRegression(), X, labels, cv=CV, method="predict_proba")
    by_sample = report.predictions.sort_values("sample")
    columns = ["proba_ant", "proba_bee", "proba_wasp"]
    np.testing.assert_allclose(by_sample[columns].to_numpy(), expected)
    assert report.to_dict()["predictions"]["proba_bee"] == report.predictions["proba_bee"].tolist()


def test_each_fold_is_asked_for_probabilities_once(monkeypatch):
    X, y = make_classification(60, 4, random_state=0)
    calls = []
    original = LogisticRegression.predict_proba
    monkeypatch.setattr(LogisticRegression, "predict_proba",
                        lambda self, X: calls.append(len(X)) or original(self, X))
    report = evaluate(LogisticRegression(), X, y, cv=CV)
    assert len(calls) == 3  # not a second time for ROC AUC
    assert report.fold_scores["roc_auc"].notna().all()


def test_a_fine_tuner_runs_its_network_once_per_fold(monkeypatch, one_torch_thread):
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = np.where(X[:, 0] > 0, "pos", "neg")
    calls = []
    original = PretrainedFineTuner.predict_proba
    monkeypatch.setattr(PretrainedFineTuner, "predict_proba",
                        lambda self, X: calls.append(len(X)) or original(self, X))
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    tuner = PretrainedFineTuner(network, freeze="none", max_epochs=1, random_state=0)
    report = evaluate(tuner, X, y, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    assert calls == [20, 20]  # predict is the argmax of these probabilities: no second pass
    proba = report.predictions[["proba_neg", "proba_pos"]].to_numpy()
    expected = np.array(["neg", "pos"])[proba.argmax(axis=1)]
    np.testing.assert_array_equal(report.predictions["y_pred"], expected)


def test_top_losses_are_the_cross_entropy_of_the_true_class(multiclass):
    report, _, _ = multiclass
    top = report.top_losses(5)
    assert list(top.columns) == ["sample", "fold", "y_true", "y_pred", "p_pred", "p_true", "loss"]
    assert len(top) == 5 and top["loss"].is_monotonic_decreasing
    everything = report.top_losses(None)
    assert len(everything) == 150
    assert top["loss"].iloc[0] == everything["loss"].max()
    for row in top.itertuples():
        prediction = report.predictions.set_index("sample").loc[row.sample]
        assert row.p_true == pytest.approx(prediction[f"proba_{row.y_true}"])
        assert row.p_pred == pytest.approx(prediction[f"proba_{row.y_pred}"])
        assert row.loss == pytest.approx(-np.log(row.p_true))
    # the worst predictions are wrong, and confidently so
    assert (top["y_true"] != top["y_pred"]).all()
    with pytest.raises(ValueError, match="k must be a positive int"):
        report.top_losses(0)


def test_top_losses_need_probabilities():
    X, y = make_classification(60, 4, random_state=0)
    report = evaluate(SVC(), X, y, cv=CV)
    assert not any(column.startswith("proba_") for column in report.predictions)
    with pytest.raises(ValueError, match=r"no predict_proba.*SVC\(probability=True\)"):
        report.top_losses()
    with pytest.raises(ValueError, match="no predict_proba"):
        report.calibration()
    assert "the estimator has no predict_proba" in report._html()


def test_top_losses_of_a_regressor_are_squared_errors():
    X, y = make_regression(40, 3, noise=10.0, random_state=0)
    report = evaluate(LinearRegression(), X, y, cv=KFold(2, shuffle=True, random_state=0))
    top = report.top_losses(3)
    assert list(top.columns) == ["sample", "fold", "y_true", "y_pred", "residual", "loss"]
    np.testing.assert_allclose(top["loss"], top["residual"] ** 2)
    assert top["loss"].iloc[0] == pytest.approx((report.predictions["residual"] ** 2).max())


def test_most_confused_lists_the_off_diagonal_cells(multiclass):
    report, _, _ = multiclass
    confused = report.most_confused()
    matrix = report.confusion_matrix
    off_diagonal = matrix.to_numpy().sum() - np.trace(matrix.to_numpy())
    assert confused["count"].sum() == off_diagonal
    assert confused["count"].is_monotonic_decreasing
    assert (confused["true"] != confused["predicted"]).all()
    first = confused.iloc[0]
    assert first["count"] == matrix.loc[first["true"], first["predicted"]]
    assert first["share_of_true"] == pytest.approx(first["count"] / matrix.loc[first["true"]].sum())
    assert report.most_confused(min_count=first["count"])["count"].min() == first["count"]


def test_plot_top_losses_shows_images_and_texts(one_torch_thread):
    rng = np.random.default_rng(0)
    images = rng.random((40, 1, 6, 6)).astype(np.float32)
    y = (images.mean(axis=(1, 2, 3)) > 0.5).astype(int)
    flat = images.reshape(40, -1)
    report = evaluate(LogisticRegression(), flat, y, cv=CV)
    figure = report.plot_top_losses(k=4, X=images)
    shown = [ax for ax in figure.axes if ax.get_visible()]
    assert len(shown) == 4 and all(len(ax.images) == 1 for ax in shown)
    top = report.top_losses(4)
    assert shown[0].get_title().startswith(f"{top.y_true[0]} / {top.y_pred[0]} / ")
    # the report's own inputs are the flat rows: shown as text, not as images
    texts = report.plot_top_losses(k=2)
    assert [len(ax.images) for ax in texts.axes if ax.get_visible()] == [0, 0]
    report.inputs = None
    with pytest.raises(ValueError, match="Pass X"):
        report.plot_top_losses()


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_a_fold_model_missing_a_class_gets_zero_probability_for_it():
    X = np.arange(12, dtype=float).reshape(-1, 1)
    y = np.array([0] * 4 + [1, 2] * 4)
    folds = [(np.arange(4, 12), np.arange(4)), (np.arange(8), np.arange(8, 12))]
    report = evaluate(LogisticRegression(), X, y, cv=folds)
    first = report.predictions[report.predictions.fold == 0]
    assert (first["proba_0"] == 0).all()  # fold 0's model never saw class 0
    model = report.estimators[0]
    np.testing.assert_allclose(first[["proba_1", "proba_2"]], model.predict_proba(X[:4]))
    np.testing.assert_allclose(report.predictions[["proba_0", "proba_1", "proba_2"]].sum(axis=1), 1)
    assert list(report.classes) == [0, 1, 2]


def test_reports_round_trip_the_new_columns_through_json(multiclass):
    report, _, _ = multiclass
    numbers = report.to_dict()["predictions"]
    frame = pd.DataFrame(numbers)
    assert {"proba_ant", "proba_bee", "proba_wasp"} <= set(frame.columns)


def test_roc_and_precision_recall_curves_of_a_binary_task(multiclass):
    from sklearn.metrics import roc_auc_score

    X, y = make_classification(90, 5, random_state=0)
    labels = np.array(["cat", "dog"])[y]
    report = evaluate(LogisticRegression(), X, labels, cv=CV)
    roc, pr = report.plot_roc_pr().axes
    assert roc.get_title() == "ROC curve (out-of-fold)" and pr.get_title().startswith("Precision")
    pooled = roc_auc_score(report.predictions["y_true"] == "dog", report.predictions["proba_dog"])
    legend = [text.get_text() for text in roc.get_legend().get_texts()]
    assert f"AUC = {pooled:.2f}" in legend[0]
    with pytest.raises(ValueError, match="binary classifiers; this report has 3 classes"):
        multiclass[0].plot_roc_pr()


def test_per_class_chart_has_three_bars_per_class(multiclass):
    report = multiclass[0]
    ax = report.plot_per_class().axes[0]
    assert len(ax.patches) == 3 * 3
    widths = sorted(round(patch.get_width(), 6) for patch in ax.patches)
    table = report.per_class.loc[["ant", "bee", "wasp"], ["precision", "recall", "f1-score"]]
    np.testing.assert_allclose(widths, sorted(np.round(table.to_numpy().ravel(), 6)))
    support = report.per_class["support"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        f"{label} (n={support[label]})" for label in ("ant", "bee", "wasp")]


def test_samples_are_taken_by_position_from_pandas_inputs():
    # a text column read from a file keeps its row labels: position 0 is not label 0 after a split
    from skadapt.evaluation._previews import sample

    texts = pd.Series(["first", "second", "third"], index=[10, 11, 12])
    assert sample(texts, 0) == "first" and sample(texts, 2) == "third"
    table = pd.DataFrame({"text": ["a", "b"]}, index=[5, 6])
    assert sample(table, 1)["text"] == "b"
