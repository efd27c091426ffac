"""Figures of an :class:`~skadapt.evaluation.EvaluationReport`, drawn with matplotlib (optional).

Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas rather than through pyplot:
nothing global changes (a notebook keeps its backend) and no figure lingers in pyplot's registry.
sklearn's own displays draw the confusion matrix and the regression plots.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from skadapt.evaluation._report import EvaluationReport

_PANEL_SIZE = (5.0, 4.5)


def new_figure(size: tuple[float, float] = _PANEL_SIZE) -> Figure:
    """An empty figure on its own Agg canvas; an ImportError that says how to get matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "Plotting an evaluation report needs matplotlib: pip install skadapt[plots]"
        ) from error
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def new_grid(nrows: int, ncols: int, panel: tuple[float, float] = _PANEL_SIZE):
    """A figure of ``nrows`` x ``ncols`` panels of size ``panel`` (inches), and its axes array."""
    figure = new_figure((panel[0] * ncols, panel[1] * nrows))
    return figure, figure.subplots(nrows, ncols, squeeze=False)


def _new_figure(n_panels: int):
    figure, axes = new_grid(1, n_panels)
    return figure, axes[0]


def plot_report(report: EvaluationReport) -> Figure:
    """One figure: the task's own panels, then the learning curves when the report has some."""
    curve_panels = _curve_panels(report.learning_curves)
    task_panels = 1 if report.task == "classification" else 2
    figure, axes = _new_figure(task_panels + len(curve_panels))
    if report.task == "classification":
        plot_confusion_matrix(report, axes[0])
    else:
        plot_regression(report, axes[0], axes[1])
    for ax, columns in zip(axes[task_panels:], curve_panels):
        plot_learning_curves(report.learning_curves, columns, ax)
    return figure


def plot_confusion_matrix(report: EvaluationReport, ax) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    rotation = "vertical" if len(report.classes) > 5 else "horizontal"
    ConfusionMatrixDisplay(report.confusion_matrix.to_numpy(), display_labels=report.classes).plot(
        ax=ax, colorbar=False, xticks_rotation=rotation, values_format="d"
    )
    ax.set_title(f"Confusion matrix ({report.n_folds}-fold test predictions)")


def plot_regression(report: EvaluationReport, actual_ax, residual_ax) -> None:
    from sklearn.metrics import PredictionErrorDisplay

    y_true, y_pred = report.predictions["y_true"], report.predictions["y_pred"]
    for ax, kind, title in (
        (actual_ax, "actual_vs_predicted", "Predicted against true"),
        (residual_ax, "residual_vs_predicted", "Residuals"),
    ):
        PredictionErrorDisplay.from_predictions(y_true, y_pred, kind=kind, ax=ax, random_state=0)
        ax.set_title(f"{title} ({report.n_folds}-fold test predictions)")


def _curve_panels(curves) -> list[list[str]]:
    """Losses share a panel; validation accuracy, on another scale, gets its own."""
    if curves is None:
        return []
    panels = [[column for column in ("train_loss", "valid_loss") if column in curves]]
    if "valid_acc" in curves:
        panels.append(["valid_acc"])
    return panels


def plot_learning_curves(curves, columns: list[str], ax) -> None:
    styles = {"train_loss": "-", "valid_loss": "--", "valid_acc": "-"}
    for column in columns:
        for fold, epochs in curves.groupby("fold"):
            ax.plot(
                epochs["epoch"],
                epochs[column],
                styles[column],
                color=f"C{fold % 10}",
                label=f"{column}, fold {fold}",
            )
    from matplotlib.ticker import MaxNLocator

    accuracy = columns == ["valid_acc"]
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy" if accuracy else "loss")
    ax.set_title("Validation accuracy per fold" if accuracy else "Learning curves per fold")
    ax.legend(fontsize="small")


def figure_to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def plot_per_class(report: EvaluationReport) -> Figure:
    """Precision, recall and F1 of each class as horizontal bars, the support beside each label."""
    table = report.per_class.drop(index=["macro avg", "weighted avg"], errors="ignore")
    n = len(table)
    figure, axes = new_grid(1, 1, panel=(7.0, max(2.2, 0.42 * n * 1.0 + 1.2)))
    ax = axes[0, 0]
    positions = np.arange(n)
    height = 0.27
    for offset, (metric, color) in enumerate(
        (("precision", "C0"), ("recall", "C1"), ("f1-score", "C2"))
    ):
        ax.barh(positions + (offset - 1) * height, table[metric], height=height, color=color,
                label=metric)
    ax.set_yticks(positions, [f"{label} (n={support})" for label, support in
                              zip(table.index, table["support"])])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("score (pooled out-of-fold predictions)")
    ax.set_title("Precision, recall and F1 per class")
    ax.legend(fontsize="small", loc="lower right", framealpha=0.9)
    ax.grid(axis="x", alpha=0.3)
    return figure


def plot_roc_pr(report: EvaluationReport) -> Figure:
    """ROC and precision-recall curves of a binary classifier, from the out-of-fold probabilities
    of the second class (``classes[1]``, the positive one, as in sklearn)."""
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    from skadapt.evaluation._interpretation import probabilities

    if report.task != "classification" or len(report.classes) != 2:
        raise ValueError(
            "ROC and precision-recall curves are drawn for binary classifiers; this report has "
            f"{'no classes' if report.classes is None else len(report.classes)} classes: read "
            "per_class and the confusion matrix instead."
        )
    positive = report.classes[1]
    scores = probabilities(report)[:, 1]
    y_true = report.predictions["y_true"].to_numpy()
    figure, axes = new_grid(1, 2)
    RocCurveDisplay.from_predictions(y_true, scores, pos_label=positive, ax=axes[0, 0],
                                     name="out-of-fold", plot_chance_level=True)
    axes[0, 0].set_title("ROC curve (out-of-fold)")
    PrecisionRecallDisplay.from_predictions(y_true, scores, pos_label=positive, ax=axes[0, 1],
                                            name="out-of-fold", plot_chance_level=True)
    axes[0, 1].set_title("Precision-recall curve (out-of-fold)")
    return figure
