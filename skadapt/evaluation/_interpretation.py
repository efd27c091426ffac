"""Which samples a model gets wrong and how sure it was: top losses and the most confused pairs.

After fastai's ``ClassificationInterpretation`` (``top_losses``, ``plot_top_losses``,
``most_confused``), computed from the out-of-fold predictions of
:func:`~skadapt.evaluation.evaluate`: every loss is that of a model that never saw the sample.
A classifier's loss is the cross-entropy of its predicted probabilities, ``-log p(true class)``;
a regressor's is the squared error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from skadapt.evaluation._report import EvaluationReport

_EPS = 1e-15  # probabilities are clipped to [eps, 1] before the log, as sklearn's log_loss does


def proba_columns(report: EvaluationReport) -> list[str]:
    """The ``predictions`` columns holding each class's probability, in ``classes`` order."""
    return [f"proba_{label}" for label in report.classes]


def has_probabilities(report: EvaluationReport) -> bool:
    return (report.task == "classification" and report.classes is not None
            and all(column in report.predictions for column in proba_columns(report)))


def probabilities(report: EvaluationReport) -> np.ndarray:
    """The out-of-fold probabilities, ``(n_predictions, n_classes)``; a clear error without."""
    if not has_probabilities(report):
        what = ("a regressor's report" if report.task == "regression"
                else "the estimator has no predict_proba")
        raise ValueError(
            f"This needs out-of-fold probabilities, but {what}: evaluate a classifier with "
            "predict_proba (for SVC, SVC(probability=True); for a linear model, "
            "LogisticRegression or CalibratedClassifierCV)."
        )
    return report.predictions[proba_columns(report)].to_numpy(dtype=float)


def true_class_index(report: EvaluationReport) -> np.ndarray:
    lookup = {label: i for i, label in enumerate(report.classes)}
    return report.predictions["y_true"].map(lookup).to_numpy()


def sample_losses(report: EvaluationReport) -> np.ndarray:
    """Each prediction's loss: cross-entropy (classifiers), squared error (regressors)."""
    if report.task == "regression":
        return report.predictions["residual"].to_numpy(dtype=float) ** 2
    proba = probabilities(report)
    p_true = proba[np.arange(len(proba)), true_class_index(report)]
    return -np.log(np.clip(p_true, _EPS, 1.0))


def top_losses(report: EvaluationReport, k: int | None = 9) -> pd.DataFrame:
    """The ``k`` predictions with the highest loss, highest first (all when ``k`` is None)."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1):
        raise ValueError(f"k must be a positive int or None, got {k!r}.")
    losses = sample_losses(report)
    predictions = report.predictions
    frame = predictions[["sample", "fold", "y_true", "y_pred"]].copy()
    if report.task == "classification":
        proba = probabilities(report)
        rows = np.arange(len(proba))
        lookup = {label: i for i, label in enumerate(report.classes)}
        predicted = predictions["y_pred"].map(lookup).to_numpy()
        frame["p_pred"] = proba[rows, predicted]
        frame["p_true"] = proba[rows, true_class_index(report)]
    else:
        frame["residual"] = predictions["residual"].to_numpy()
    frame["loss"] = losses
    order = np.argsort(-losses, kind="stable")
    return frame.iloc[order[:k] if k is not None else order].reset_index(drop=True)


def most_confused(report: EvaluationReport, min_count: int = 1) -> pd.DataFrame:
    """Pairs (true, predicted) of different classes, most frequent first, seen ``min_count``
    times or more: the confusion matrix's off-diagonal cells as a list."""
    if report.task != "classification":
        raise ValueError("most_confused() is for classifiers: this report is a regressor's.")
    matrix = report.confusion_matrix
    rows = [(true, predicted, int(matrix.loc[true, predicted]))
            for true in matrix.index for predicted in matrix.columns
            if true != predicted and matrix.loc[true, predicted] >= min_count]
    frame = pd.DataFrame(rows, columns=["true", "predicted", "count"])
    support = matrix.sum(axis=1)
    frame["share_of_true"] = frame["count"].to_numpy() / frame["true"].map(support).to_numpy()
    return frame.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


def plot_top_losses(report: EvaluationReport, inputs, k: int = 9, ncols: int = 3) -> Figure:
    """A grid of the ``k`` highest-loss samples: the image (or text) titled with
    ``true / predicted / probability of the prediction / loss``."""
    from skadapt.evaluation._plots import new_grid
    from skadapt.evaluation._previews import as_image, as_text, sample

    if inputs is None:
        raise ValueError(
            "plot_top_losses needs the samples: this report does not hold X (reports read back "
            "from report.json do not). Pass X: report.plot_top_losses(X=...)."
        )
    losses = top_losses(report, k)
    nrows = max(1, -(-len(losses) // ncols))
    figure, axes = new_grid(nrows, ncols, panel=(2.6, 2.9))
    for ax, row in zip(axes.ravel(), losses.itertuples()):
        value = sample(inputs, int(row.sample))
        image = as_image(value)
        if image is not None:
            ax.imshow(np.asarray(image), cmap="gray" if image.mode == "L" else None)
        else:
            ax.text(0.02, 0.98, _wrap(as_text(value, 160)), va="top", ha="left", fontsize=8,
                    transform=ax.transAxes, wrap=True)
        if report.task == "classification":
            title = f"{row.y_true} / {row.y_pred} / {row.p_pred:.2f} / {row.loss:.2f}"
        else:
            title = f"{row.y_true:.3g} / {row.y_pred:.3g} / {row.loss:.3g}"
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(losses):]:
        ax.set_visible(False)
    legend = ("true / predicted / probability / loss" if report.task == "classification"
              else "true / predicted / squared error")
    figure.suptitle(f"Top losses, out of fold ({legend})", fontsize=10)
    return figure


def _wrap(text: str, width: int = 28) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:8])
