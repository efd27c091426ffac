"""Several evaluations side by side: a summary chart with error bars over folds, and a table.

:func:`compare` takes named :class:`~skadapt.evaluation.EvaluationReport` objects (the approaches
of an experiment) or a fitted sklearn search (its best settings, from ``cv_results_``'s per-split
scores) and returns a :class:`ReportComparison`, which draws the chart and writes the page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from skadapt.evaluation import _html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_TIMES = ("fit_time", "predict_time")
_PREFERRED = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "r2", "rmse", "mae")


@dataclass(repr=False)
class ReportComparison:
    """Evaluations side by side, from :func:`compare`.

    Attributes
    ----------
    fold_scores : dict of str to pandas.DataFrame
        Per name, one row per fold and one column per metric (and ``fit_time``).
    metrics : list of str
        The metrics compared in the chart and the table, in that order.
    reports : dict of str to EvaluationReport
        The reports compared (empty for a search).
    source : str
        What was compared, in words, for the page's header.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from skadapt.evaluation import compare, evaluate
    >>> X, y = load_iris(return_X_y=True)
    >>> comparison = compare({"logistic": evaluate(LogisticRegression(max_iter=1000), X, y, cv=3),
    ...                       "tree": evaluate(DecisionTreeClassifier(random_state=0), X, y, cv=3)})
    >>> comparison.to_frame().loc["logistic", "accuracy"].round(2)
    np.float64(0.97)
    """

    fold_scores: dict[str, pd.DataFrame]
    metrics: list[str]
    reports: dict[str, Any] = field(default_factory=dict)
    source: str = "evaluation reports"

    def to_frame(self) -> pd.DataFrame:
        """One row per name: ``<metric>`` (mean over folds) and ``<metric>_std`` (numpy's std)
        for each metric, then the number of folds and the mean fit time when known."""
        rows = {}
        for name, scores in self.fold_scores.items():
            row = {}
            for metric in self.metrics:
                values = scores[metric] if metric in scores else pd.Series(dtype=float)
                row[metric] = values.mean()
                row[f"{metric}_std"] = values.std(ddof=0)
            row["n_folds"] = len(scores)
            if "fit_time" in scores:
                row["fit_time_s"] = scores["fit_time"].mean()
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("name")

    def plot(self) -> Figure:
        """Grouped bars of each metric's mean per name, error bars of one standard deviation over
        folds, and each fold's score as a dot."""
        from skadapt.evaluation._plots import new_grid

        names = list(self.fold_scores)
        n_metrics = len(self.metrics)
        figure, axes = new_grid(1, 1, panel=(max(6.0, 1.0 + 1.3 * n_metrics * max(1, len(names)) / 2),
                                            4.2))
        ax = axes[0, 0]
        width = 0.8 / max(len(names), 1)
        positions = np.arange(n_metrics)
        rng = np.random.default_rng(0)
        for i, name in enumerate(names):
            scores = self.fold_scores[name]
            means = [scores[m].mean() if m in scores else np.nan for m in self.metrics]
            stds = [scores[m].std(ddof=0) if m in scores else np.nan for m in self.metrics]
            x = positions - 0.4 + width * (i + 0.5)
            ax.bar(x, means, width=width * 0.9, yerr=stds, capsize=4, color=f"C{i % 10}",
                   alpha=0.85, label=name)
            for j, metric in enumerate(self.metrics):
                if metric in scores:
                    values = scores[metric].dropna().to_numpy()
                    jitter = rng.uniform(-width * 0.2, width * 0.2, len(values))
                    ax.plot(x[j] + jitter, values, ".", color="black", markersize=4)
        ax.set_xticks(positions, self.metrics)
        ax.set_ylabel("score")
        ax.set_title(f"Mean over folds ± 1 std (dots: single folds), {len(names)} {self.source}",
                     fontsize=10)
        ax.legend(fontsize="small", loc="best")
        ax.grid(axis="y", alpha=0.3)
        return figure

    def to_html(self, *, title: str | None = None, intro: str = "",
                links: Mapping[str, str] | None = None) -> str:
        """The comparison page: header, chart, table (mean ± std), links to each report.

        ``intro`` is plain text (escaped); ``links`` maps names to the relative URL of their own
        report.
        """
        from skadapt import __version__

        table = self._display_table()
        sections = [("Summary", self._chart_html() + _html.table(table))]
        if links:
            items = "".join(f"<li><a href='{html.escape(href, quote=True)}'>{html.escape(name)}"
                            "</a></li>" for name, href in links.items())
            sections.append(("Reports", f"<ul>{items}</ul>"))
        meta = [("compared", f"{len(self.fold_scores)} {self.source}: "
                             + ", ".join(self.fold_scores)),
                ("metrics", ", ".join(self.metrics)),
                ("written", _html.now()), ("skadapt", __version__)]
        intro_html = _html.paragraph(intro) if intro else ""
        return _html.page(title or "Comparison", meta, sections, intro=intro_html)

    def save(self, path: str | Path, *, title: str | None = None, intro: str = "",
             links: Mapping[str, str] | None = None) -> Path:
        """Write the page of :meth:`to_html` to ``path`` (a file name ending in ``.html``; a
        directory gets ``comparison.html``). Returns the file's path."""
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / "comparison.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_html(title=title, intro=intro, links=links))
        return path

    def _display_table(self) -> pd.DataFrame:
        frame = self.to_frame()
        shown = pd.DataFrame(index=frame.index)
        for metric in self.metrics:
            shown[metric] = [f"{_html.number(m)} ± {_html.number(s)}" if pd.notna(m) else "n/a"
                             for m, s in zip(frame[metric], frame[f"{metric}_std"])]
        shown["folds"] = frame["n_folds"]
        if "fit_time_s" in frame:
            shown["fit time per fold (s)"] = frame["fit_time_s"]
        return shown

    def _chart_html(self) -> str:
        try:
            figure = self.plot()
        except ImportError as error:
            return _html.paragraph(f"No chart: {error}", css="note")
        from skadapt.evaluation._plots import figure_to_png

        return _html.figure(figure_to_png(figure), "comparison chart",
                            "Mean over folds, ± one standard deviation; dots are single folds.")

    def __repr__(self) -> str:
        return f"ReportComparison({', '.join(self.fold_scores)}; metrics: {', '.join(self.metrics)})"


def compare(reports: Mapping[str, Any] | Any, metrics: Sequence[str] | None = None, *,
            top: int = 5) -> ReportComparison:
    """Put several evaluations side by side.

    Parameters
    ----------
    reports : dict of str to EvaluationReport, or a fitted GridSearchCV / RandomizedSearchCV
        Named reports of :func:`evaluate` (one per approach, all of the same task), or a fitted
        search: its ``top`` best settings by rank, with their per-split test scores.
    metrics : list of str, optional
        The metrics to show. Default: accuracy, balanced accuracy, F1 (macro) and ROC AUC for
        classifiers, R², RMSE and MAE for regressors (those every report has); for a search,
        its scorers.
    top : int, default=5
        How many of a search's settings to show.

    Returns
    -------
    ReportComparison

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from skadapt.evaluation import compare
    >>> X, y = load_iris(return_X_y=True)
    >>> search = GridSearchCV(KNeighborsClassifier(), {"n_neighbors": [1, 5, 15]}, cv=3).fit(X, y)
    >>> list(compare(search, top=2).to_frame().columns[:2])
    ['score', 'score_std']
    """
    if hasattr(reports, "cv_results_"):
        return _from_search(reports, metrics, top)
    if not isinstance(reports, Mapping) or not reports:
        raise TypeError(
            "compare() takes a dict of named EvaluationReport objects ({'name': evaluate(...)}) "
            f"or a fitted search, got {type(reports).__name__}."
        )
    from skadapt.evaluation._report import EvaluationReport

    for name, report in reports.items():
        if not isinstance(report, EvaluationReport):
            raise TypeError(f"compare(): {name!r} is a {type(report).__name__}, not an "
                            "EvaluationReport: pass the result of evaluate().")
    tasks = {report.task for report in reports.values()}
    if len(tasks) > 1:
        raise ValueError("compare() puts reports of one task side by side, got both "
                         "classifiers and regressors: compare each task on its own.")
    common = set.intersection(*(set(r.fold_scores.columns) for r in reports.values()))
    if metrics is None:
        metrics = [m for m in _PREFERRED if m in common]
    else:
        missing = {name: sorted(set(metrics) - set(r.fold_scores.columns))
                   for name, r in reports.items() if set(metrics) - set(r.fold_scores.columns)}
        if missing:
            raise ValueError(f"compare(): metrics missing from some reports: {missing}; each "
                             f"report has {sorted(common - set(_TIMES))}.")
    return ReportComparison({str(name): report.fold_scores for name, report in reports.items()},
                            list(metrics), dict(reports), source="evaluation reports")


def _from_search(search, metrics, top: int) -> ReportComparison:
    results = pd.DataFrame(search.cv_results_)
    scorers = sorted({column[len("rank_test_"):] for column in results
                      if column.startswith("rank_test_")})
    if metrics is None:
        metrics = scorers
    unknown = set(metrics) - set(scorers)
    if unknown:
        raise ValueError(f"compare(): the search has no scorer {sorted(unknown)}; its scorers "
                         f"are {scorers}.")
    refit = search.refit if isinstance(search.refit, str) else metrics[0]
    n_splits = search.n_splits_
    ranked = results.sort_values(f"rank_test_{refit}", kind="stable").head(top)
    fold_scores = {}
    for _, row in ranked.iterrows():
        name = ", ".join(f"{key}={value!r}" for key, value in row["params"].items()) or "default"
        fold_scores[f"#{int(row[f'rank_test_{refit}'])}: {name}"] = pd.DataFrame(
            {metric: [row[f"split{i}_test_{metric}"] for i in range(n_splits)]
             for metric in metrics}
            | {"fit_time": [row["mean_fit_time"]] * n_splits})
    return ReportComparison(fold_scores, list(metrics),
                            source=f"settings of {type(search).__name__}")
