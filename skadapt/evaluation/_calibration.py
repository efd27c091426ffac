"""Calibration: does a predicted probability of 0.8 come true 80% of the time?

The confidence of a prediction is the probability of the predicted class (top-label calibration,
Guo et al., ICML 2017); predictions are put into ``n_bins`` equal-width bins of confidence, and each
bin's accuracy is compared with its mean confidence. The expected calibration error (ECE) is the
mean gap, weighted by the bins' sizes: 0 for a perfectly calibrated model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from skadapt.evaluation._interpretation import probabilities

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from skadapt.evaluation._report import EvaluationReport


def _check_bins(n_bins) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}.")


def reliability_table(report: EvaluationReport, n_bins: int = 10) -> pd.DataFrame:
    """One row per non-empty bin: ``lower``, ``upper``, ``count``, ``confidence`` (mean),
    ``accuracy`` and ``gap`` (accuracy - confidence)."""
    _check_bins(n_bins)
    proba = probabilities(report)
    confidence = proba.max(axis=1)
    predicted = np.asarray(report.classes)[proba.argmax(axis=1)]
    correct = predicted == report.predictions["y_true"].to_numpy()
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bins are (lower, upper]; a confidence of exactly 0 joins the first bin
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        members = which == b
        if members.any():
            rows.append({"lower": edges[b], "upper": edges[b + 1], "count": int(members.sum()),
                         "confidence": float(confidence[members].mean()),
                         "accuracy": float(correct[members].mean())})
    frame = pd.DataFrame(rows, columns=["lower", "upper", "count", "confidence", "accuracy"])
    frame["gap"] = frame["accuracy"] - frame["confidence"]
    return frame


def expected_calibration_error(report: EvaluationReport, n_bins: int = 10) -> float:
    """Sum over bins of ``count / n * |accuracy - confidence|``."""
    table = reliability_table(report, n_bins)
    return float((table["count"] * table["gap"].abs()).sum() / table["count"].sum())


def plot_reliability(report: EvaluationReport, n_bins: int = 10) -> Figure:
    """The reliability diagram (accuracy against confidence, per bin, beside the diagonal) above
    the histogram of confidences; the ECE in the title."""
    from skadapt.evaluation._plots import new_figure

    table = reliability_table(report, n_bins)
    ece = float((table["count"] * table["gap"].abs()).sum() / table["count"].sum())
    figure = new_figure()
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    width = 1.0 / n_bins
    centres = (table["lower"] + table["upper"]) / 2
    top.bar(centres, table["accuracy"], width=width * 0.95, color="C0", edgecolor="white",
            label="accuracy of the bin")
    top.bar(centres, table["gap"].abs(), bottom=table[["accuracy", "confidence"]].min(axis=1),
            width=width * 0.95, fill=False, edgecolor="C3", hatch="//",
            label="gap to the mean confidence")
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(fontsize="small", loc="upper left")
    top.set_title(f"Reliability ({len(report.predictions)} out-of-fold predictions): "
                  f"ECE = {ece:.3f}")
    bottom.bar(centres, table["count"], width=width * 0.95, color="grey")
    bottom.set_xlabel("confidence (probability of the predicted class)")
    bottom.set_ylabel("predictions")
    return figure
