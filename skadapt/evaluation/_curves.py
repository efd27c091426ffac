"""Training curves of fine-tuners: loss, accuracy and learning rate per epoch, with the epochs that
mattered marked (where layer groups were unfrozen, the best epoch and whether it was restored), and
the learning-rate range test's curve when one was run.

Everything is read from the per-fold skorch histories that :func:`~skadapt.evaluation.evaluate`
collects into ``learning_curves``: ``train_loss``, ``valid_loss``, ``train_acc``, ``valid_acc``,
``lr`` (the rate at the end of each epoch), ``stage`` and ``n_trainable`` (recorded by skadapt's
schedule). What a history lacks is left out of the figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from skadapt.evaluation._report import EvaluationReport

#: the history keys collected per epoch, in the order of ``learning_curves``' columns
CURVE_KEYS = ("train_loss", "valid_loss", "valid_acc", "train_acc", "lr", "stage", "n_trainable")


def unfreezing_epochs(curves: pd.DataFrame) -> dict[int, list[int]]:
    """Per fold, the epochs at whose start more parameters became trainable (or stage 2 began)."""
    result = {}
    for fold, epochs in curves.groupby("fold"):
        marks = set()
        for column in ("n_trainable", "stage"):
            if column in epochs:
                values = epochs[column].to_numpy(dtype=float)
                grew = np.flatnonzero(values[1:] > values[:-1]) + 1
                marks.update(int(epochs["epoch"].iloc[i]) for i in grew)
        result[int(fold)] = sorted(marks)
    return result


def best_epochs(report: EvaluationReport) -> dict[int, tuple[int, bool]]:
    """Per fold, the epoch the fit picked (on ``valid_loss``) and whether its weights were
    restored; folds that picked none are absent."""
    training = report.training
    if training is None:
        return {}
    return {int(row.fold): (int(row.best_epoch), bool(row.restored_best))
            for row in training.itertuples() if pd.notna(row.best_epoch)}


def training_events(report: EvaluationReport) -> pd.DataFrame:
    """One row per fold: the unfreezing epochs, the best epoch and whether it was restored."""
    curves = report.learning_curves
    if curves is None:
        return pd.DataFrame(columns=["fold", "epochs", "unfrozen at", "best epoch", "restored"])
    unfrozen, best = unfreezing_epochs(curves), best_epochs(report)
    rows = []
    for fold, epochs in curves.groupby("fold"):
        picked = best.get(int(fold))
        rows.append({"fold": int(fold), "epochs": len(epochs),
                     "unfrozen at": ", ".join(map(str, unfrozen[int(fold)])) or "-",
                     "best epoch": picked[0] if picked else None,
                     "restored": ("yes" if picked[1] else "no") if picked else "-"})
    return pd.DataFrame(rows)


def plot_training(report: EvaluationReport) -> Figure:
    """Loss, accuracy and learning rate per epoch and fold (train solid, validation dashed),
    dotted lines where layers were unfrozen, a star on the best epoch (filled when restored), and
    the learning-rate range test's curve when ``report.lr_finder`` is set."""
    from skadapt.evaluation._plots import new_grid

    curves = report.learning_curves
    if curves is None:
        raise ValueError(
            "This report has no training curves: its estimator keeps no skorch history_ (use a "
            "skadapt fine-tuner or a skorch net, alone or at the end of a Pipeline)."
        )
    panels = [("loss", [c for c in ("train_loss", "valid_loss") if c in curves])]
    if {"train_acc", "valid_acc"} & set(curves):
        panels.append(("accuracy", [c for c in ("train_acc", "valid_acc") if c in curves]))
    if "lr" in curves:
        panels.append(("learning rate", ["lr"]))
    finder = getattr(report, "lr_finder", None)
    n_panels = len(panels) + (finder is not None)
    ncols = min(n_panels, 2)
    nrows = -(-n_panels // ncols)
    figure, axes = new_grid(nrows, ncols, panel=(5.2, 3.6))
    axes = axes.ravel()
    unfrozen, best = unfreezing_epochs(curves), best_epochs(report)
    for ax, (name, columns) in zip(axes, panels):
        for fold, epochs in curves.groupby("fold"):
            color = f"C{int(fold) % 10}"
            for column in columns:
                style = "--" if column.startswith("valid") else "-"
                ax.plot(epochs["epoch"], epochs[column], style, color=color, marker=".",
                        label=f"{column}, fold {fold}")
            for epoch in unfrozen[int(fold)]:
                ax.axvline(epoch - 0.5, color=color, linestyle=":", linewidth=1.2)
            picked = best.get(int(fold))
            marked = "valid_loss" if "valid_loss" in columns else None
            if picked and marked:
                at = epochs[epochs["epoch"] == picked[0]]
                ax.plot(at["epoch"], at[marked], "*", markersize=13, color=color,
                        markerfacecolor=color if picked[1] else "white")
        _decorate(ax, name)
    if finder is not None:
        ax = axes[len(panels)]
        finder.plot(ax=ax)
        ax.set_title("Learning-rate range test")
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    notes = []
    if any(unfrozen.values()):
        notes.append("dotted: layers unfrozen")
    if best:
        notes.append("star: best epoch (filled: restored)")
    figure.suptitle("Training per fold (solid: train, dashed: validation)"
                    + (f"; {', '.join(notes)}" if notes else ""), fontsize=10)
    return figure


def _decorate(ax, name: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    if name == "learning rate":
        ax.set_yscale("log")
        ax.set_title("Learning rate at the end of each epoch")
    else:
        ax.set_title(name.capitalize())
    handles, labels = ax.get_legend_handles_labels()
    if len(labels) <= 8:
        ax.legend(fontsize="x-small")
    ax.grid(alpha=0.3)
