"""Cross-validated evaluation of a classifier or regressor, as one report a person can read.

sklearn's ``cross_validate`` fits the folds (in parallel with ``n_jobs``) and hands back the fitted
estimators and each fold's test indices; every metric is then computed here from one prediction per
fold, so the fold scores, the confusion matrix and the residuals all come from the same predictions.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_regressor
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import cross_validate
from sklearn.utils import _safe_indexing
from sklearn.utils.multiclass import type_of_target, unique_labels

from skadapt.evaluation import _html
from skadapt.evaluation._curves import CURVE_KEYS

_TIMES = ["fit_time", "predict_time"]


@dataclass(repr=False)
class EvaluationReport:
    """The result of :func:`evaluate`: scores per fold, their summary, and what lies behind them.

    Attributes
    ----------
    task : {"classification", "regression"}
    fold_scores : pandas.DataFrame
        One row per fold: every metric, ``fit_time`` and ``predict_time`` (seconds).
    predictions : pandas.DataFrame
        Every test-fold prediction: ``sample`` (0-based position in ``X``), ``fold``, ``y_true``,
        ``y_pred``, then ``proba_<class>`` per class for classifiers with ``predict_proba`` (the
        fold model's probabilities, from the same pass as ``y_pred``), or ``residual``
        (``y_true - y_pred``) for regression. A sample appears once per fold that tests it:
        exactly once for K-fold splitters.
    classes : numpy.ndarray or None
        The labels, in the order of ``confusion_matrix``'s rows and columns.
    confusion_matrix : pandas.DataFrame or None
        Counts of the pooled test-fold predictions: rows are true labels, columns predicted ones.
    per_class : pandas.DataFrame or None
        Precision, recall, F1 and support per class, then their macro and weighted averages.
    learning_curves : pandas.DataFrame or None
        For estimators with a skorch ``history_`` (skadapt's fine-tuners): one row per fold and
        epoch, with ``train_loss`` and, when recorded, ``valid_loss``, ``valid_acc``,
        ``train_acc``, ``lr`` (at the epoch's end), ``stage`` and ``n_trainable``.
    training : pandas.DataFrame or None
        How each fold's model was trained, for estimators that record a validation policy
        (skadapt's fine-tuners, alone, at the end of a Pipeline or inside a search): one row per
        fold with ``fold``, ``training_path`` (``"cached backbone features"`` or ``"full network
        (<why>)"``), ``head_solver`` (``"convex"`` or ``"gradient"``), ``epochs_run``,
        ``best_epoch`` (NaN when no epoch was picked), ``restored_best`` (whether the best epoch's
        weights replaced the last epoch's), ``n_validation`` (samples held out inside the fit) and
        ``policy`` (the validation policy, in words). What a fold's estimator does not record is
        NaN or None. None when no fold's estimator records a policy (plain sklearn estimators).
    estimators : list
        The fitted estimator of each fold.
    inputs : object or None
        The ``X`` that was evaluated (a reference, not a copy), for the thumbnails and texts of
        :meth:`plot_top_losses` and the HTML report.
    lr_finder : LRFinderResult or None
        A learning-rate range test run before the fits (set it: ``report.lr_finder = result``);
        its curve joins the training curves.
    estimator_name, data_name, created : str or None
        What was evaluated, on which data, and when (UTC): the HTML report's header.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skadapt.evaluation import evaluate
    >>> X, y = load_iris(return_X_y=True)
    >>> report = evaluate(LogisticRegression(max_iter=1000), X, y, cv=3)
    >>> round(float(report.to_frame().loc["accuracy", "mean"]), 2)
    0.97
    >>> int(report.confusion_matrix.to_numpy().sum())
    150
    """

    task: str
    fold_scores: pd.DataFrame
    predictions: pd.DataFrame
    classes: np.ndarray | None = None
    confusion_matrix: pd.DataFrame | None = None
    per_class: pd.DataFrame | None = None
    learning_curves: pd.DataFrame | None = None
    training: pd.DataFrame | None = None
    estimators: list = field(default_factory=list)
    inputs: Any = None
    lr_finder: Any = None
    estimator_name: str | None = None
    data_name: str | None = None
    created: str | None = None

    @property
    def n_folds(self) -> int:
        return len(self.fold_scores)

    def to_frame(self) -> pd.DataFrame:
        """Mean and standard deviation over folds of every metric and time, one row each.

        The standard deviation is numpy's (``ddof=0``), as in sklearn's examples; a metric that
        is undefined on some folds (ROC AUC on a fold missing a class) is averaged over the others.
        """
        scores = self.fold_scores
        return pd.DataFrame({"mean": scores.mean(), "std": scores.std(ddof=0)}).rename_axis(
            "metric"
        )

    def to_markdown(self) -> str:
        """The summary, how each fold trained (fine-tuners), the per-class table and confusion
        matrix as Markdown tables."""
        title = f"## Scores: mean and std over {self.n_folds} folds"
        sections = [f"{title}\n\n{_markdown_table(self.to_frame())}"]
        if self.training is not None:
            table = _markdown_table(_training_table(self.training))
            sections.append(f"## Training\n\n{table}")
        if self.per_class is not None:
            sections.append(f"## Per class\n\n{_markdown_table(self.per_class)}")
        if self.confusion_matrix is not None:
            sections.append(
                "## Confusion matrix (rows: true label, columns: predicted)\n\n"
                + _markdown_table(self.confusion_matrix)
            )
        if self.task == "regression":
            summary = _markdown_table(self._residual_summary())
            sections.append(f"## Residuals (y_true - y_pred)\n\n{summary}")
        return "\n\n".join(sections) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Every number of the report as plain Python values, ready for ``json.dumps``.

        Missing values (an undefined ROC AUC, an epoch without validation) become ``None``.
        """
        summary = self.to_frame()
        result: dict[str, Any] = {
            "task": self.task,
            "n_folds": self.n_folds,
            "summary": {metric: dict(row) for metric, row in summary.iterrows()},
            "folds": self.fold_scores.to_dict("records"),
            "predictions": self.predictions.to_dict("list"),
        }
        if self.classes is not None:
            result["classes"] = list(self.classes)
            result["confusion_matrix"] = self.confusion_matrix.to_numpy().tolist()
            result["per_class"] = {
                str(label): dict(row) for label, row in self.per_class.iterrows()
            }
        if self.learning_curves is not None:
            result["learning_curves"] = self.learning_curves.to_dict("records")
        if self.training is not None:
            result["training"] = _training_records(self.training)
        return _plain(result)

    # ------------------------------------------------------------------ interpretation
    def top_losses(self, k: int | None = 9) -> pd.DataFrame:
        """The ``k`` out-of-fold predictions with the highest loss, highest first.

        A classifier's loss is the cross-entropy ``-log p(true class)``: columns ``sample``,
        ``fold``, ``y_true``, ``y_pred``, ``p_pred`` (probability of the prediction), ``p_true``
        and ``loss``. A regressor's is the squared error (with ``residual``). Classifiers need
        ``predict_proba``. ``k=None`` ranks every prediction.
        """
        from skadapt.evaluation._interpretation import top_losses

        return top_losses(self, k)

    def most_confused(self, min_count: int = 1) -> pd.DataFrame:
        """Pairs of classes (``true``, ``predicted``) confused ``min_count`` times or more, most
        frequent first, with ``count`` and ``share_of_true`` (the share of the true class's
        samples that went that way)."""
        from skadapt.evaluation._interpretation import most_confused

        return most_confused(self, min_count)

    def calibration(self, n_bins: int = 10) -> pd.DataFrame:
        """The reliability table: predictions in ``n_bins`` equal-width bins of confidence (the
        probability of the predicted class), each bin's ``count``, mean ``confidence``,
        ``accuracy`` and ``gap`` (accuracy - confidence). Empty bins are left out."""
        from skadapt.evaluation._calibration import reliability_table

        return reliability_table(self, n_bins)

    def expected_calibration_error(self, n_bins: int = 10) -> float:
        """ECE: the bins' ``|accuracy - confidence|``, weighted by their share of predictions."""
        from skadapt.evaluation._calibration import expected_calibration_error

        return expected_calibration_error(self, n_bins)

    def plot_top_losses(self, k: int = 9, X: Any = None, ncols: int = 3):
        """A Figure of the ``k`` highest-loss samples: thumbnails for images (arrays or files),
        texts otherwise, titled true / predicted / probability / loss. ``X`` defaults to the
        evaluated ``inputs``."""
        from skadapt.evaluation._interpretation import plot_top_losses

        return plot_top_losses(self, self.inputs if X is None else X, k, ncols)

    def plot_calibration(self, n_bins: int = 10):
        """A Figure: the reliability diagram with the ECE, above the histogram of confidences."""
        from skadapt.evaluation._calibration import plot_reliability

        return plot_reliability(self, n_bins)

    def plot_per_class(self):
        """A Figure: precision, recall and F1 of every class as bars."""
        if self.per_class is None:
            raise ValueError("plot_per_class() is for classifiers: this report is a regressor's.")
        from skadapt.evaluation._plots import plot_per_class

        return plot_per_class(self)

    def plot_roc_pr(self):
        """A Figure: the ROC and precision-recall curves of a binary classifier (out of fold)."""
        from skadapt.evaluation._plots import plot_roc_pr

        return plot_roc_pr(self)

    def plot_training(self):
        """A Figure: loss, accuracy and learning rate per epoch and fold, the unfreezing epochs
        and the best (restored) epoch marked, and the learning-rate range test when set."""
        from skadapt.evaluation._curves import plot_training

        return plot_training(self)

    def plot(self):
        """A matplotlib Figure: the confusion matrix (classification) or predicted against true
        values and residuals (regression), and the learning curves when there are some.

        Needs matplotlib: ``pip install skadapt[plots]``.
        """
        from skadapt.evaluation._plots import plot_report

        return plot_report(self)

    def save(self, path: str | Path) -> Path:
        """Write ``report.html`` (tables and figures, self-contained) and ``report.json`` (the
        numbers of :meth:`to_dict`) into the directory ``path``, created if missing.

        Without matplotlib the HTML report has no figures and says how to get them.

        Returns
        -------
        pathlib.Path
            The path of ``report.html``.
        """
        directory = Path(path)
        if directory.exists() and not directory.is_dir():
            raise ValueError(
                f"save() writes report.html and report.json into a directory, but {path!s} is "
                "a file: pass a directory path."
            )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(json.dumps(self.to_dict(), indent=2))
        html_path = directory / "report.html"
        html_path.write_text(self._html())
        return html_path

    def _html(self) -> str:
        from skadapt.evaluation._report_html import report_html

        return report_html(self)

    def _residual_summary(self) -> pd.DataFrame:
        return self.predictions["residual"].describe().to_frame("residual")

    def __repr__(self) -> str:
        summary = self.to_frame()["mean"].drop(_TIMES)
        scores = ", ".join(f"{metric}={value:.4g}" for metric, value in summary.items())
        return f"EvaluationReport({self.task}, {self.n_folds} folds: {scores})"


def evaluate(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    cv: Any = 5,
    groups: Any = None,
    params: dict | None = None,
    n_jobs: int | None = None,
    data_name: str | None = None,
) -> EvaluationReport:
    """Cross-validate a classifier or regressor and report every metric that matters for it.

    Classifiers: accuracy, balanced accuracy, precision, recall and F1 (macro and weighted), ROC AUC
    where defined (an estimator with ``predict_proba``, or ``decision_function`` for two classes), a
    per-class report and the confusion matrix of the pooled test-fold predictions. Regressors: MSE,
    RMSE, MAE, R² and the residuals. Each metric comes per fold and as mean and standard deviation,
    with fit and predict times. Any skadapt fine-tuner, or a Pipeline ending in one, evaluates the
    same way, and its per-fold learning curves come with the report.

    Parameters
    ----------
    estimator : sklearn classifier or regressor
        Unfitted; each fold fits a clone.
    X : array-like, list of paths or texts, or DataFrame
    y : array-like of shape (n_samples,)
    cv : int, cross-validation splitter or iterable, default=5
        As in sklearn's ``cross_validate``: an int is stratified K-fold for classifiers, K-fold
        otherwise. Pass ``GroupKFold`` with ``groups`` or ``TimeSeriesSplit`` when the data need it.
    groups : array-like, optional
        Group labels for group-aware splitters.
    params : dict, optional
        Passed to the estimator's ``fit`` (and the splitter), as in ``cross_validate``.
    n_jobs : int, optional
        Folds fitted in parallel.
    data_name : str, optional
        What the data are, for the HTML report's header (default: their kind and size).

    Returns
    -------
    EvaluationReport
    """
    task = _task(estimator)
    y_values = np.asarray(y)
    _check_target(task, y_values)
    results = cross_validate(
        estimator,
        X,
        y,
        groups=groups,
        cv=cv,
        params=params,
        n_jobs=n_jobs,
        # Scoring here would predict each fold a second time: predictions are made once below.
        scoring=_no_scoring,
        return_estimator=True,
        return_indices=True,
        error_score="raise",
    )
    labels = unique_labels(y_values) if task == "classification" else None
    fold_rows, prediction_frames = [], []
    for fold, (fitted, test) in enumerate(zip(results["estimator"], results["indices"]["test"])):
        X_test, y_test = _safe_indexing(X, test), y_values[test]
        start = time.perf_counter()
        y_pred, proba = _predict(fitted, X_test, task)
        predict_time = time.perf_counter() - start
        metrics = (
            _classification_scores(fitted, X_test, y_test, y_pred, proba)
            if task == "classification"
            else _regression_scores(y_test, y_pred)
        )
        fold_rows.append(
            {**metrics, "fit_time": results["fit_time"][fold], "predict_time": predict_time}
        )
        frame = pd.DataFrame({"sample": test, "fold": fold, "y_true": y_test, "y_pred": y_pred})
        if proba is not None:
            frame = frame.join(_proba_frame(fitted, proba, labels))
        prediction_frames.append(frame)

    fold_scores = pd.DataFrame(fold_rows).rename_axis("fold").dropna(axis=1, how="all")
    predictions = pd.concat(prediction_frames, ignore_index=True)
    if task == "classification" and predictions.columns.str.startswith("proba_").any():
        # a fold without probabilities leaves the others' unusable: all or none
        proba_columns = [column for column in predictions if column.startswith("proba_")]
        if predictions[proba_columns].isna().any().any():
            predictions = predictions.drop(columns=proba_columns)
    report = EvaluationReport(
        task=task,
        fold_scores=fold_scores,
        predictions=predictions,
        learning_curves=_learning_curves(results["estimator"]),
        training=_training_summary(results["estimator"]),
        estimators=list(results["estimator"]),
        inputs=X,
        estimator_name=_estimator_name(estimator),
        data_name=data_name or _describe_data(X, y_values),
        created=_html.now(),
    )
    if task == "classification":
        _add_class_tables(report, labels)
    else:
        predictions["residual"] = predictions["y_true"] - predictions["y_pred"]
    return report


def _no_scoring(estimator, X, y) -> float:
    return 0.0


def _predict(fitted, X_test, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """One fold's predictions and, for classifiers with ``predict_proba``, its probabilities.

    A skadapt fine-tuner's ``predict`` is the argmax of its probabilities: it runs the network
    once, for both. Other classifiers are asked for both (their ``predict`` may differ from the
    argmax, e.g. SVC).
    """
    if task != "classification" or not hasattr(fitted, "predict_proba"):
        return np.asarray(fitted.predict(X_test)), None
    proba = np.asarray(fitted.predict_proba(X_test), dtype=float)
    if _predicts_argmax(fitted):
        return np.asarray(fitted.classes_)[proba.argmax(axis=1)], proba
    return np.asarray(fitted.predict(X_test)), proba


def _predicts_argmax(fitted) -> bool:
    classifier = sys.modules.get("skadapt.finetune._classifier")
    if classifier is None:  # never imported: no fine-tuner here (and no torch import for sklearn)
        return False
    PretrainedFineTuner = classifier.PretrainedFineTuner
    step = fitted
    while True:
        inner = getattr(step, "best_estimator_", None) or (
            getattr(step, "estimator", None) if type(step).__name__ == "FrozenEstimator" else None
        )
        if inner is None:
            break
        step = inner
    step = step.steps[-1][1] if hasattr(step, "steps") else step
    return isinstance(step, PretrainedFineTuner) and (
        type(step).predict is PretrainedFineTuner.predict
    )


def _proba_frame(fitted, proba: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """``proba_<label>`` for every label of ``y``: 0 for classes the fold's model never saw."""
    classes = list(getattr(fitted, "classes_", []))
    if len(classes) != proba.shape[1] or not np.isin(classes, labels).all():
        return pd.DataFrame({f"proba_{label}": np.nan for label in labels}, index=range(len(proba)))
    columns = {f"proba_{label}": np.zeros(len(proba)) for label in labels}
    for i, label in enumerate(classes):
        columns[f"proba_{label}"] = proba[:, i]
    return pd.DataFrame(columns)


def _estimator_name(estimator) -> str:
    if hasattr(estimator, "steps"):
        return " → ".join(type(step).__name__ for _, step in estimator.steps
                          if step not in (None, "passthrough"))
    inner = getattr(estimator, "estimator", None)
    if inner is not None and hasattr(inner, "get_params"):
        return f"{type(estimator).__name__}({_estimator_name(inner)})"
    return type(estimator).__name__


def _describe_data(X, y: np.ndarray) -> str:
    n = len(y)
    if isinstance(X, pd.DataFrame):
        what = f"a table of {X.shape[1]} columns"
    elif hasattr(X, "shape") and len(getattr(X, "shape", ())) > 1:
        what = f"an array of shape {tuple(X.shape)}"
    elif n and isinstance(_safe_indexing(X, [0])[0], str):
        first = str(_safe_indexing(X, [0])[0])
        is_file = Path(first).suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".bmp",
                                                  ".webp", ".tif", ".tiff")
        what = "image files" if is_file else "texts"
    else:
        what = type(X).__name__
    return f"{n} samples ({what})"


def _task(estimator) -> str:
    if is_classifier(estimator):
        return "classification"
    if is_regressor(estimator):
        return "regression"
    raise TypeError(
        f"evaluate() needs a classifier or a regressor, got {type(estimator).__name__}, which "
        "sklearn recognises as neither: give it ClassifierMixin or RegressorMixin, or wrap it in a "
        "Pipeline ending in one."
    )


def _check_target(task: str, y: np.ndarray) -> None:
    if y.ndim != 1:
        raise ValueError(
            "evaluate() takes one target per sample (y of shape (n_samples,)), got shape "
            f"{y.shape}."
        )
    if task == "classification" and type_of_target(y) not in ("binary", "multiclass"):
        raise ValueError(
            f"y of a classifier must hold class labels, but type_of_target(y) is "
            f"{type_of_target(y)!r}: evaluate a regressor, or bin the target."
        )


def _classification_scores(fitted, X_test, y_test, y_pred, proba=None) -> dict[str, float]:
    scores = {
        "accuracy": accuracy_score(y_test, y_pred),
        "balanced_accuracy": balanced_accuracy_score(y_test, y_pred),
    }
    for average in ("macro", "weighted"):
        for name, metric in (
            ("precision", precision_score),
            ("recall", recall_score),
            ("f1", f1_score),
        ):
            scores[f"{name}_{average}"] = metric(y_test, y_pred, average=average, zero_division=0)
    scores["roc_auc"] = _roc_auc(fitted, X_test, y_test, proba)
    return scores


def _roc_auc(fitted, X_test, y_test, proba=None) -> float:
    """ROC AUC of one fold; NaN where undefined (a single class in the fold, a class the fold's
    model never saw, no scores, or a multiclass model with no probabilities). ``proba``: the
    fold's ``predict_proba``, already computed."""
    classes = getattr(fitted, "classes_", None)
    present = np.unique(y_test)
    if classes is None or len(present) < 2 or not np.isin(present, classes).all():
        return math.nan
    if len(classes) == 2:
        if proba is not None:
            scores = proba[:, 1]
        elif hasattr(fitted, "predict_proba"):
            scores = np.asarray(fitted.predict_proba(X_test))[:, 1]
        elif hasattr(fitted, "decision_function"):
            scores = np.asarray(fitted.decision_function(X_test))
        else:
            return math.nan
        return roc_auc_score(y_test == classes[1], scores)
    if not hasattr(fitted, "predict_proba") or len(present) < len(classes):
        return math.nan
    if proba is None:
        proba = fitted.predict_proba(X_test)
    return roc_auc_score(y_test, proba, multi_class="ovr", labels=classes)


def _regression_scores(y_test, y_pred) -> dict[str, float]:
    mse = mean_squared_error(y_test, y_pred)
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": mean_absolute_error(y_test, y_pred),
        "r2": r2_score(y_test, y_pred),
    }


def _add_class_tables(report: EvaluationReport, labels: np.ndarray) -> None:
    """The confusion matrix and per-class table over every label of ``y`` (and any predicted)."""
    y_true, y_pred = report.predictions["y_true"], report.predictions["y_pred"]
    classes = unique_labels(labels, y_pred)
    report.classes = classes
    report.confusion_matrix = pd.DataFrame(
        confusion_matrix(y_true, y_pred, labels=classes),
        index=pd.Index(classes, name="true"),
        columns=pd.Index(classes, name="predicted"),
    )
    table = classification_report(
        y_true,
        y_pred,
        labels=classes,
        target_names=[str(c) for c in classes],
        output_dict=True,
        zero_division=0,
    )
    table.pop("accuracy", None)  # a single number, already in the scores
    per_class = pd.DataFrame(table).T
    per_class["support"] = per_class["support"].astype("int64")
    report.per_class = per_class


def _learning_curves(estimators) -> pd.DataFrame | None:
    """Per-fold epochs of skorch-style histories (``history_`` rows with ``train_loss``)."""
    rows = []
    for fold, fitted in enumerate(estimators):
        history = getattr(_final_step(fitted), "history_", None)
        for position, epoch in enumerate(history or []):
            if not isinstance(epoch, dict) or "train_loss" not in epoch:
                continue
            rows.append(
                {
                    "fold": fold,
                    "epoch": epoch.get("epoch", position + 1),
                    **{key: epoch.get(key, math.nan) for key in CURVE_KEYS},
                }
            )
    if not rows:
        return None
    return pd.DataFrame(rows).dropna(axis=1, how="all")


def _final_step(fitted):
    """The model that trained: a search's refitted best model, then a Pipeline's last step."""
    fitted = getattr(fitted, "best_estimator_", fitted)
    return fitted.steps[-1][1] if hasattr(fitted, "steps") else fitted


_TRAINING_COUNTS = ["epochs_run", "best_epoch", "n_validation"]


def _training_summary(estimators) -> pd.DataFrame | None:
    """Per-fold ``training_path_``, ``head_solver_`` and ``validation_`` of fine-tuners."""
    final_steps = [_final_step(fitted) for fitted in estimators]
    if not any(hasattr(step, "validation_") for step in final_steps):
        return None
    rows = []
    for fold, step in enumerate(final_steps):
        validation = getattr(step, "validation_", None) or {}
        row = {
            "fold": fold,
            "training_path": getattr(step, "training_path_", None),
            "head_solver": getattr(step, "head_solver_", None),
        }
        for key in ("epochs_run", "best_epoch", "restored_best", "n_validation", "policy"):
            value = validation.get(key)
            row[key] = math.nan if value is None and key in _TRAINING_COUNTS else value
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in _TRAINING_COUNTS:  # whole numbers stay int unless some fold lacks one
        if frame[column].notna().all():
            frame[column] = frame[column].astype("int64")
    return frame


def _training_table(training: pd.DataFrame) -> pd.DataFrame:
    """The training summary in words, one row per fold, for the Markdown and HTML reports."""

    def count(value) -> str:
        return "n/a" if value is None or pd.isna(value) else str(int(value))

    def restored(value) -> str:
        return "n/a" if value is None or pd.isna(value) else ("yes" if value else "no")

    def text(value) -> str:
        return "n/a" if value is None or pd.isna(value) else str(value)

    return pd.DataFrame(
        {
            "path": training["training_path"].map(text),
            "head solver": training["head_solver"].map(text),
            "epochs run": training["epochs_run"].map(count),
            "best epoch": training["best_epoch"].map(count),
            "best epoch restored": training["restored_best"].map(restored),
            "validation samples": training["n_validation"].map(count),
            "policy": training["policy"].map(text),
        }
    ).set_axis(pd.Index(training["fold"], name="fold"))


def _training_records(training: pd.DataFrame) -> list[dict]:
    """The training summary as records, whole numbers as ints (``_plain`` does the rest)."""
    records = training.to_dict("records")
    for record in records:
        for key in _TRAINING_COUNTS:
            value = record[key]
            if isinstance(value, float | np.floating) and float(value).is_integer():
                record[key] = int(value)
    return records


def _markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table, with the index as first column (no dependency on tabulate)."""
    header = [str(frame.index.name or "")] + [str(column) for column in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for label, row in frame.iterrows():
        cells = [str(label)] + [_format(value) for value in row]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def _format(value) -> str:
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "n/a"
        return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else f"{value:.4g}"
    return str(value)


def _plain(value):
    """numpy scalars to Python ones, NaN to None, recursively: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
