"""The HTML page of one :class:`~skadapt.evaluation.EvaluationReport`: what was evaluated, the
scores, how each fold trained, per-class results, confusions, calibration, ROC and precision-recall
(binary), and the samples with the highest loss, with thumbnails or texts.

Figures are PNGs inside the page; without matplotlib the page keeps its tables and says how to get
the figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd

from skadapt.evaluation import _html

if TYPE_CHECKING:
    from skadapt.evaluation._report import EvaluationReport

TOP_LOSSES = 12  # samples shown in the page's top-losses table
MOST_CONFUSED = 10  # class pairs shown
_HEADLINE = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "r2", "rmse", "mae")


def report_html(report: EvaluationReport) -> str:
    from skadapt import __version__
    from skadapt.evaluation._interpretation import has_probabilities

    figures = _Figures()
    sections = [("Scores", _scores(report))]
    if report.training is not None or report.learning_curves is not None:
        sections.append(("Training", _training(report, figures)))
    if report.task == "classification":
        sections.append(("Per class", _per_class(report, figures)))
        sections.append(("Confusions", _confusions(report, figures)))
        probabilities = has_probabilities(report)
        if probabilities:
            sections.append(("Calibration", _calibration(report, figures)))
            if len(report.classes) == 2:
                sections.append(("ROC and precision-recall", figures.add(
                    report.plot_roc_pr, "ROC and precision-recall curves",
                    f"Positive class: {report.classes[1]}. Pooled out-of-fold probabilities.")))
        sections.append(("Top losses", _top_losses(report) if probabilities else _html.paragraph(
            "No top losses or calibration: the estimator has no predict_proba.", css="note")))
    else:
        sections.append(("Predictions", _regression(report, figures)))
        sections.append(("Largest errors", _top_losses(report)))
    meta = [("evaluated", report.estimator_name or "an estimator"),
            ("data", report.data_name or f"{report.predictions['sample'].nunique()} samples"),
            ("protocol", _protocol(report)),
            ("written", report.created or _html.now()),
            ("skadapt", __version__)]
    intro = _html.cards(_headline(report))
    if figures.missing:
        intro += _html.paragraph(f"No figures: {figures.missing}", css="note")
    title = f"Evaluation report: {report.task}"
    return _html.page(title, meta, sections, intro=intro)


class _Figures:
    """Draws each figure into the page; remembers, once, why there are none (no matplotlib)."""

    def __init__(self):
        self.missing = None

    def add(self, draw: Callable, alt: str, caption: str | None = None) -> str:
        if self.missing is not None:
            return ""
        try:
            figure = draw()
        except ImportError as error:
            self.missing = str(error)
            return ""
        from skadapt.evaluation._plots import figure_to_png

        return _html.figure(figure_to_png(figure), alt, caption)


def _protocol(report: EvaluationReport) -> str:
    n_tested = len(report.predictions)
    if report.n_folds == 1:
        return f"one split, tested on {n_tested} samples"
    return (f"{report.n_folds}-fold cross-validation, {n_tested} out-of-fold predictions "
            "(each from a model that did not train on the sample)")


def _headline(report: EvaluationReport) -> list[tuple[str, str]]:
    summary = report.to_frame()
    cards = []
    for metric in _HEADLINE:
        if metric in summary.index and pd.notna(summary.loc[metric, "mean"]):
            mean, std = summary.loc[metric, "mean"], summary.loc[metric, "std"]
            value = _html.number(mean) + (f" ± {_html.number(std)}" if report.n_folds > 1 else "")
            cards.append((metric.replace("_", " "), value))
    from skadapt.evaluation._interpretation import has_probabilities

    if has_probabilities(report):
        cards.append(("expected calibration error",
                      _html.number(report.expected_calibration_error())))
    return cards


def _scores(report: EvaluationReport) -> str:
    summary = report.to_frame()
    return ("<h3>Mean and standard deviation over folds</h3>" + _html.table(summary)
            + "<h3>Per fold</h3>" + _html.table(report.fold_scores)
            + _html.paragraph("Times are in seconds." + (
                " n/a: undefined on that fold (ROC AUC on a fold missing a class)."
                if report.fold_scores.isna().any().any() else ""), css="note"))


def _training(report: EvaluationReport, figures: _Figures) -> str:
    from skadapt.evaluation._curves import training_events
    from skadapt.evaluation._report import _training_table

    parts = []
    if report.training is not None:
        parts.append(_html.table(_training_table(report.training)))
    if report.learning_curves is not None:
        events = training_events(report).set_index("fold")
        if (events["unfrozen at"] != "-").any() or events["best epoch"].notna().any():
            parts.append("<h3>Epochs that mattered</h3>" + _html.table(events))
        caption = "Per fold: loss, accuracy and learning rate by epoch."
        if getattr(report, "lr_finder", None) is not None:
            caption += (" Last: the learning-rate range test run before the fits (suggested "
                        f"rate {report.lr_finder.suggestion:.3g}).")
        parts.append(figures.add(report.plot_training, "training curves", caption))
    return "".join(parts)


def _per_class(report: EvaluationReport, figures: _Figures) -> str:
    return (figures.add(report.plot_per_class, "precision and recall per class")
            + _html.table(report.per_class))


def _confusions(report: EvaluationReport, figures: _Figures) -> str:
    from skadapt.evaluation._plots import new_grid, plot_confusion_matrix

    def draw():
        n = len(report.classes)
        figure, axes = new_grid(1, 1, panel=(min(4.4 + 0.3 * n, 8), min(3.6 + 0.3 * n, 7.6)))
        plot_confusion_matrix(report, axes[0, 0])
        return figure

    confused = report.most_confused().head(MOST_CONFUSED)
    most = (_html.table(confused, index=False) if len(confused)
            else _html.paragraph("No confusions: every prediction was right.", css="note"))
    return (figures.add(draw, "confusion matrix") + "<h3>Most confused pairs</h3>" + most
            + "<h3>Confusion matrix (rows: true label, columns: predicted)</h3>"
            + _html.table(report.confusion_matrix))


def _calibration(report: EvaluationReport, figures: _Figures) -> str:
    ece = report.expected_calibration_error()
    text = (f"Expected calibration error: {ece:.3f}. A confidence of 0.8 should come true 80% of "
            "the time: bars under the diagonal mean over-confidence.")
    return (_html.paragraph(text) + figures.add(report.plot_calibration, "reliability diagram")
            + _html.table(report.calibration(), index=False))


def _regression(report: EvaluationReport, figures: _Figures) -> str:
    return (figures.add(report.plot, "predicted against true values, residuals")
            + "<h3>Residuals (y_true - y_pred)</h3>" + _html.table(report._residual_summary()))


def _top_losses(report: EvaluationReport) -> str:
    from skadapt.evaluation._previews import preview_html

    losses = report.top_losses(TOP_LOSSES)
    shown = pd.DataFrame({"sample": losses["sample"], "fold": losses["fold"]})
    if report.inputs is not None:
        shown["input"] = [preview_html(report.inputs, int(i)) for i in losses["sample"]]
    shown["true"] = losses["y_true"].to_numpy()
    shown["predicted"] = losses["y_pred"].to_numpy()
    if report.task == "classification":
        shown["p(predicted)"] = losses["p_pred"].to_numpy()
        shown["p(true)"] = losses["p_true"].to_numpy()
        shown["loss"] = losses["loss"].to_numpy()
        note = ("The samples the models were most wrong about, out of fold: loss is "
                "-log p(true class). Mislabelled samples often show up here.")
    else:
        shown["residual"] = losses["residual"].to_numpy()
        note = "The samples with the largest squared error, out of fold."
    return _html.paragraph(note) + _html.table(shown, index=False)
