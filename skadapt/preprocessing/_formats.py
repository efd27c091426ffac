"""Formats, a column's first cleaning step: which kind it is read as, and the step that reads it.

Product decisions
-----------------
- A column's kind (number, boolean, datetime, category) is declared (``column_types``), implied by
  a parameter (``valid_ranges`` needs numbers or dates, ``outliers`` numbers) or inferred: a text
  column is of a kind when at least ``min_parse_fraction`` of its non-missing values parse as it.
  The few that do not become missing and are counted in the record: messy data has typos, and one
  typo should not turn an income column into a category.
- A declared or implied kind that reads none of the column's values is an error that names the
  parameter, not a column of missing values.

:func:`column_kind` decides the kind; :class:`ReadFormat` is the single-column step that trims
surrounding spaces, turns missing-value markers into missing values and parses the column as its
kind, with the parsers of ``_parsing.py``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import numpy as np
import pandas as pd

from skadapt.preprocessing._column_cleaner import ColumnStep, count_text, counted
from skadapt.preprocessing._parsing import PARSERS, CategoryParser, infer_kind, mark_missing

__all__ = ["ReadFormat", "column_kind"]


def column_kind(
    name: str,
    values: pd.Series,
    *,
    column_types: dict | None,
    valid_ranges: dict | None,
    outliers,
    min_parse_fraction: float,
) -> tuple[str, str]:
    """The kind a column is read as and why: declared, implied by a parameter, or inferred.

    Parameters
    ----------
    name : str
        The column's name.
    values : pandas.Series
        The column, its missing-value markers already turned into missing values.
    column_types, valid_ranges, outliers, min_parse_fraction
        The :class:`~skadapt.preprocessing.DataCleaner` parameters of those names.

    Returns
    -------
    kind : str
    reason : str
        ``"declared in column_types"``, ``"implied by valid_ranges/outliers"`` or ``"inferred"``.
    """
    declared = (column_types or {}).get(name)
    if declared is not None:
        kind, reason = declared, "declared in column_types"
    else:
        kind, reason = infer_kind(values, min_parse_fraction), "inferred"
        implied = _implied_kind(name, valid_ranges, outliers)
        if implied is not None and implied != kind:
            kind, reason = implied, "implied by valid_ranges/outliers"
    if reason != "inferred":
        _check_parseable(name, kind, reason, values)
    return kind, reason


def _implied_kind(name: str, valid_ranges: dict | None, outliers) -> str | None:
    bounds = (valid_ranges or {}).get(name)
    if bounds is not None:
        pair = isinstance(bounds, Sequence) and not isinstance(bounds, str)
        return "datetime" if pair and any(_is_date(b) for b in bounds) else "number"
    if isinstance(outliers, dict) and name in outliers:
        return "number"
    return None


def _is_date(bound) -> bool:
    """A date, or text that reads as one: such bounds make a range of dates."""
    if isinstance(bound, datetime.date | np.datetime64):
        return True
    if not isinstance(bound, str):
        return False
    try:
        pd.Timestamp(bound)
    except ValueError:
        return False
    return True


def _check_parseable(name: str, kind: str, reason: str, values: pd.Series) -> None:
    present = values.dropna()
    if present.empty or kind == "category":
        return
    parser = PARSERS[kind]().fit(present)
    if parser.parse_fraction(present) == 0:
        examples = ", ".join(repr(v) for v in present.unique()[:3])
        raise ValueError(
            f"Column {name!r} must be read as {kind} ({reason}), but none of its values parse "
            f"as {kind} (e.g. {examples}): fix the values, or the parameter that names it."
        )


class ReadFormat(ColumnStep):
    """Trim text, turn missing-value markers into missing values and parse the column as ``kind``.

    Parameters
    ----------
    kind : {"number", "boolean", "datetime", "category"}
        The kind to read the column as.
    reason : str
        Why it is that kind, for the record.
    markers : sequence of str
        Extra missing-value markers, beyond the built-in ones.
    allowed : list, default=None
        For categories: the allowed values, whose spelling wins over the column's.
    """

    def __init__(self, kind: str, reason: str, markers=(), allowed=None):
        self.kind = kind
        self.reason = reason
        self.markers = tuple(markers)
        self.parser = CategoryParser(allowed) if kind == "category" else PARSERS[kind]()

    def fit_transform(self, values: pd.Series) -> pd.Series:
        """Learn the parser (date formats, category spellings) and return the parsed column."""
        marked, self.n_markers_, self.n_trimmed_ = mark_missing(values, self.markers)
        self.parser.fit(marked)
        parsed = self.parser.transform(marked)
        self.n_rewritten_, self.n_unparseable_ = parsed.n_rewritten, parsed.n_unparseable
        typed = self._typed(parsed.values)
        self.examples_ = _examples(typed, marked)
        return typed

    def transform(self, values: pd.Series) -> pd.Series:
        """Trim, mark missing and parse as learned in ``fit_transform``."""
        return self._typed(self.parser.transform(mark_missing(values, self.markers)[0]).values)

    def _typed(self, values: pd.Series) -> pd.Series:
        if self.kind == "number":
            return values.astype("float32" if values.dtype == np.float32 else "float64")
        return values

    def records(self) -> list[tuple[str, int, str]]:
        """The kind read (always), then trimmed values, markers and unparseable values."""
        detail = self.parser.describe()
        read_as = f"read as {self.kind}" + (f", {detail}" if detail else "")
        if self.n_rewritten_:
            read_as += f"; {count_text(self.n_rewritten_, self.parser.rewrite_noun)}"
        examples = ", ".join(repr(e) for e in self.examples_)
        return [
            ("type", self.n_rewritten_, f"{read_as} ({self.reason})"),
            *counted("trimmed", self.n_trimmed_, "value{s}", "with surrounding spaces -> trimmed"),
            *counted("missing markers", self.n_markers_, "missing marker{s}", "-> missing"),
            *counted("unparseable", self.n_unparseable_, "value{s}",
                     f"not readable as {self.kind} (e.g. {examples}) -> missing"),
        ]

    def missing_sources(self) -> list[tuple[int, str]]:
        """Markers and unparseable values."""
        return [(self.n_markers_, "marker{s}"), (self.n_unparseable_, "unparseable")]


def _examples(parsed: pd.Series, values: pd.Series, n: int = 3) -> list:
    unread = values[values.notna() & parsed.isna()]
    return list(pd.unique(unread.to_numpy(dtype=object)))[:n]
