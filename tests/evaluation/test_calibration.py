import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from skadapt.evaluation import EvaluationReport, evaluate


def _report(y_true, proba, classes=("a", "b")):
    """A report of known out-of-fold probabilities (one fold)."""
    proba = np.asarray(proba, dtype=float)
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    predictions = pd.DataFrame({"sample": range(len(y_true)), "fold": 0, "y_true": y_true,
                                "y_pred": y_pred})
    for i, label in enumerate(classes):
        predictions[f"proba_{label}"] = proba[:, i]
    return EvaluationReport("classification", pd.DataFrame({"accuracy": [0.0]}), predictions,
                            classes=np.asarray(classes))


def test_reliability_table_and_ece_by_hand():
    # confidences 0.95, 0.95 (one right, one wrong), 0.6, 0.6, 0.6, 0.6 (three right)
    proba = [[0.95, 0.05], [0.05, 0.95], [0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.6, 0.4]]
    y_true = ["a", "a", "a", "b", "a", "b"]
    report = _report(y_true, proba)
    table = report.calibration(n_bins=10)
    assert table["count"].tolist() == [4, 2]
    np.testing.assert_allclose(table["lower"], [0.5, 0.9])
    np.testing.assert_allclose(table["confidence"], [0.6, 0.95])
    np.testing.assert_allclose(table["accuracy"], [0.75, 0.5])
    np.testing.assert_allclose(table["gap"], [0.15, -0.45])
    expected = (4 * 0.15 + 2 * 0.45) / 6
    assert report.expected_calibration_error(10) == pytest.approx(expected)
    # one bin: the ECE is |overall accuracy - mean confidence|
    assert report.expected_calibration_error(1) == pytest.approx(abs(4 / 6 - (4 * 0.6 + 2 * 0.95) / 6))


def test_bins_are_closed_on_the_right_and_a_certain_prediction_counts():
    report = _report(["a", "a", "a"], [[1.0, 0.0], [0.3, 0.7], [0.5, 0.5]])
    table = report.calibration(n_bins=2)
    # 0.5 falls in (0, 0.5], 0.7 and 1.0 in (0.5, 1]
    assert table["count"].tolist() == [1, 2]
    assert table["accuracy"].tolist() == [1.0, 0.5]


def test_a_perfectly_calibrated_model_has_zero_ece():
    y_true = ["a"] * 8 + ["b"] * 2  # confidence 0.8 for "a", right 8 times in 10
    report = _report(y_true, [[0.8, 0.2]] * 10)
    assert report.expected_calibration_error() == pytest.approx(0.0)


def test_bad_bins_are_refused():
    report = _report(["a"], [[0.9, 0.1]])
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="n_bins must be a positive int"):
            report.calibration(bad)


def test_plot_calibration_of_a_real_evaluation():
    X, y = make_classification(120, 5, random_state=0)
    report = evaluate(LogisticRegression(), X, y, cv=StratifiedKFold(3, shuffle=True,
                                                                       random_state=0))
    figure = report.plot_calibration(n_bins=5)
    top, bottom = figure.axes
    assert f"ECE = {report.expected_calibration_error(5):.3f}" in top.get_title()
    counts = [patch.get_height() for patch in bottom.patches]
    assert sum(counts) == 120
