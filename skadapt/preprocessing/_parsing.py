"""Single-column parsers: text that means a number, a boolean, a date or a category.

Each parser is a small single-column step with ``fit(values)`` and ``transform(values)``; the
``DataCleaner`` picks one per column. ``values`` is a pandas Series that already went through
:func:`mark_missing` (surrounding spaces stripped, missing markers turned into NaN).

``transform`` returns a :class:`Parsed`: the typed column plus two counts for the cleaner's record,
the values that could not be parsed (they become missing) and the values whose text was rewritten
(``"1,234.5"`` -> ``1234.5``, ``" PARIS "`` -> ``"Paris"``).

Where a well-kept library does the job, it does it here: pandas parses numbers
(``pd.to_numeric``) and dates (``pd.to_datetime`` with explicit formats), and skrub's ``ToDatetime``
infers a column's date format. What is ours: the thousands-separator and percent handling (skrub's
``ToFloat`` drops every comma, so ``"1,2"`` would read as 12), yes/no booleans, dates in several
formats in one column (``ToDatetime`` accepts one format per column), and categories that differ only
by case.
"""

from __future__ import annotations

import datetime
import numbers
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format
from skrub import ToDatetime
from skrub.core import RejectColumn

__all__ = [
    "KINDS",
    "MISSING_MARKERS",
    "BooleanParser",
    "CategoryParser",
    "DateParser",
    "NumberParser",
    "Parsed",
    "PARSERS",
    "infer_kind",
    "mark_missing",
]

KINDS = ("number", "boolean", "datetime", "category")

# Compared after stripping and case-folding, so "N/A", " na " and "NULL" all count.
MISSING_MARKERS = frozenset(
    {"", "na", "n/a", "n.a.", "nan", "null", "none", "nil", "?", "-", "--", "#n/a", "<na>", "nat"}
)

TRUE_WORDS = frozenset({"yes", "y", "true", "t", "1"})
FALSE_WORDS = frozenset({"no", "n", "false", "f", "0"})

# 1,234 or 1,234,567.89: commas only where they group thousands, so "1,2" stays unparseable.
_GROUPED_THOUSANDS = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?"
# Dates are guessed on at most this many distinct values (the formats, not the values, matter).
_DATE_SAMPLE = 500
# pandas' "%Y-%d-%m" guess for ISO dates with dayfirst=True is never what a table means.
_UNLIKELY_FORMATS = frozenset({"%Y-%d-%m", "%Y-%d-%m %H:%M:%S", "%Y-%d-%m %H:%M"})
# Formats are skipped when they explain fewer than this fraction of values (noise, not a format).
_MIN_FORMAT_SHARE = 0.01


class Parsed(NamedTuple):
    """A parsed column and the counts the cleaner's record shows."""

    values: pd.Series
    n_unparseable: int
    n_rewritten: int


def mark_missing(values: pd.Series, extra_markers=()) -> tuple[pd.Series, int, int]:
    """Strip surrounding spaces from text and turn missing-value markers into NaN.

    Returns the column (object dtype when it holds text), how many markers it held and how many
    values lost surrounding spaces. Non-text columns are returned unchanged.
    """
    if not _holds_text(values):
        return values, 0, 0
    markers = MISSING_MARKERS | {str(marker).strip().casefold() for marker in extra_markers}
    values = values.astype(object)
    text = values[_is_text(values)]
    stripped = text.str.strip()
    is_marker = stripped.str.casefold().isin(markers)
    cleaned = values.copy()
    cleaned[stripped.index] = stripped.where(~is_marker, np.nan)
    cleaned = cleaned.where(cleaned.notna(), np.nan)  # None and pd.NA -> NaN, one missing value
    n_trimmed = int(((stripped != text) & ~is_marker).sum())
    return cleaned, int(is_marker.sum()), n_trimmed


def infer_kind(values: pd.Series, min_fraction: float) -> str:
    """Say what a column holds: ``"number"``, ``"boolean"``, ``"datetime"`` or ``"category"``.

    Typed columns keep their type. In a text column a kind wins when at least ``min_fraction``
    of the non-missing values parse as it, tried in the order boolean, number, date (``"1"``/``"0"``
    columns are booleans, as the spec lists them; any other digit makes the column numbers).
    """
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime"
    if isinstance(values.dtype, pd.CategoricalDtype):
        return "category"
    present = values.dropna()
    if present.empty:
        return "number"
    as_numbers = NumberParser().transform(present).values.dropna()
    kinds = ("boolean", "number", "datetime")
    if not as_numbers.isin([0.0, 1.0]).all():
        kinds = ("number", "datetime")
    for kind in kinds:
        if PARSERS[kind]().fit(present).parse_fraction(present) >= min_fraction:
            return kind
    return "category"


def _holds_text(values: pd.Series) -> bool:
    return (
        pd.api.types.is_object_dtype(values)
        or pd.api.types.is_string_dtype(values)
        or isinstance(values.dtype, pd.CategoricalDtype)
    )


def _is_text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: isinstance(v, str)).astype(bool)


class _Parser:
    """Base of the single-column parsers: ``fit`` learns, ``transform`` parses."""

    kind = ""

    def fit(self, values: pd.Series) -> _Parser:
        return self

    def transform(self, values: pd.Series) -> Parsed:
        raise NotImplementedError

    def parse_fraction(self, values: pd.Series) -> float:
        """Fraction of the non-missing values that parse."""
        present = values.dropna()
        if present.empty:
            return 0.0
        return 1.0 - self.transform(present).n_unparseable / len(present)

    rewrite_noun = "text value{s} converted"

    def describe(self) -> str:
        """Details for the cleaner's record ("" when the kind says it all)."""
        return ""


class NumberParser(_Parser):
    """Numbers, also stored as text: ``"1,234.5"``, ``" 42 "``, ``"3.1e2"``, ``"12%"`` (-> 0.12).

    Numeric columns pass through with their dtype. Text that does not read as a finite number
    (``"abc"``, ``"1,2"``, ``"inf"``) becomes NaN and is counted as unparseable.
    """

    kind = "number"

    def transform(self, values: pd.Series) -> Parsed:
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            return Parsed(values, 0, 0)
        values = values.astype(object)
        parsed = pd.Series(np.nan, index=values.index, dtype="float64")
        is_text = _is_text(values)
        others = values[~is_text].dropna()
        parsed[others.index] = [_number_or_nan(v) for v in others]
        text = values[is_text]
        parsed[text.index] = _parse_number_text(text)
        n_unparseable = int(parsed[values.notna()].isna().sum())
        return Parsed(parsed, n_unparseable, int(text.size - parsed[text.index].isna().sum()))


def _number_or_nan(value) -> float:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, numbers.Real) and np.isfinite(value):
        return float(value)
    return np.nan


def _parse_number_text(text: pd.Series) -> pd.Series:
    text = text.astype(str).str.strip()
    percent = text.str.endswith("%")
    text = text.str.removesuffix("%").str.strip()
    grouped = text.str.fullmatch(_GROUPED_THOUSANDS)
    text = text.where(~grouped, text.str.replace(",", "", regex=False))
    numbers_ = pd.to_numeric(text, errors="coerce").astype("float64")
    numbers_[percent] = numbers_[percent] / 100
    return numbers_.where(np.isfinite(numbers_), np.nan)


class BooleanParser(_Parser):
    """Booleans, also as text: yes/no, y/n, true/false, t/f, 1/0 (any case) and 0/1 numbers.

    The output is float 1.0/0.0 with NaN for missing, so it can be imputed; the cleaner casts it to
    ``bool`` (or pandas' nullable ``boolean`` while values are missing) at the end.
    """

    kind = "boolean"

    def transform(self, values: pd.Series) -> Parsed:
        if pd.api.types.is_bool_dtype(values):
            return Parsed(values.astype("float64"), 0, 0)
        values = values.astype(object)
        parsed = values.map(_boolean_or_nan, na_action="ignore").astype("float64")
        n_unparseable = int(parsed[values.notna()].isna().sum())
        n_read_from_text = int((_is_text(values) & parsed.notna()).sum())
        return Parsed(parsed, n_unparseable, n_read_from_text)


def _boolean_or_nan(value) -> float:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, numbers.Real) and value in (0, 1):
        return float(value)
    if isinstance(value, str):
        word = value.strip().casefold()
        if word in TRUE_WORDS:
            return 1.0
        if word in FALSE_WORDS:
            return 0.0
    return np.nan


class DateParser(_Parser):
    """Dates stored as text, in one format or several within the column.

    ``fit`` asks skrub's ``ToDatetime`` for the column's format; when the column mixes formats
    (``ToDatetime`` takes one per column), it guesses each distinct value's format with pandas and
    keeps the fewest formats that read the most values: for ``"02/03/2024"`` next to
    ``"23/02/2024"``, day-first wins, and when every value is ambiguous month-first wins, as in
    skrub. ``transform`` tries the learned formats in that order; text that none reads becomes NaT.
    """

    kind = "datetime"

    def fit(self, values: pd.Series) -> DateParser:
        self.formats_ = []
        if pd.api.types.is_datetime64_any_dtype(values):
            return self
        text = values.dropna()
        text = text[_is_text(text)]
        if text.empty:
            return self
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self.formats_ = [ToDatetime().fit(text.reset_index(drop=True)).format_]
        except RejectColumn:
            self.formats_ = _cover_with_formats(pd.Series(text.unique()))
        return self

    def transform(self, values: pd.Series) -> Parsed:
        if pd.api.types.is_datetime64_any_dtype(values):
            return Parsed(values, 0, 0)
        values = values.astype(object)
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        is_text = _is_text(values)
        others = values[~is_text].dropna()
        parsed[others.index] = [_date_or_nat(v) for v in others]
        text = values[is_text]
        for date_format in self.formats_:
            todo = text[parsed[text.index].isna()]
            if todo.empty:
                break
            parsed[todo.index] = _to_datetime(todo, date_format)
        n_unparseable = int(parsed[values.notna()].isna().sum())
        return Parsed(parsed, n_unparseable, int(text.size - parsed[text.index].isna().sum()))

    def describe(self) -> str:
        if not self.formats_:
            return ""
        return "formats " + ", ".join(repr(f) for f in self.formats_)


def _date_or_nat(value):
    if isinstance(value, datetime.date | np.datetime64):
        return pd.Timestamp(value)
    return pd.NaT


def _to_datetime(text: pd.Series, date_format: str) -> pd.Series:
    parsed = pd.to_datetime(text, format=date_format, errors="coerce")
    if getattr(parsed.dt, "tz", None) is not None:  # one time zone for the column: UTC, naive
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def _cover_with_formats(distinct: pd.Series) -> list[str]:
    """The fewest guessed formats that read the most distinct values, greedily."""
    sample = distinct.sample(min(len(distinct), _DATE_SAMPLE), random_state=0)
    candidates = []
    for dayfirst in (False, True):  # month-first candidates come first: they win ties
        for value in sample:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                guessed = guess_datetime_format(value, dayfirst=dayfirst)
            if guessed and guessed not in candidates and guessed not in _UNLIKELY_FORMATS:
                candidates.append(guessed)
    reads = {f: _to_datetime(sample, f).notna().to_numpy() for f in candidates}
    chosen, covered = [], np.zeros(len(sample), dtype=bool)
    while reads:
        best = max(reads, key=lambda f: (reads[f] & ~covered).sum())
        best_reads = reads.pop(best)
        if (best_reads & ~covered).sum() < max(1, _MIN_FORMAT_SHARE * len(sample)):
            break
        chosen.append(best)
        covered |= best_reads
    return chosen


class CategoryParser(_Parser):
    """Categories: spellings that differ only by case or surrounding spaces become one.

    ``fit`` maps each case-folded value to its most frequent spelling (ties: the first seen),
    or to the spelling in ``allowed`` when the user declared the allowed categories.
    Values unseen in ``fit`` keep their (stripped) spelling. Non-text values become text, so
    encoders never see mixed types.
    """

    kind = "category"

    def __init__(self, allowed=None):
        self.allowed = allowed

    def fit(self, values: pd.Series) -> CategoryParser:
        text = _as_text(values).dropna()
        counts = text.value_counts(sort=False)
        first_seen = {spelling: i for i, spelling in enumerate(text.unique())}
        spellings = sorted(counts.index, key=lambda v: (-counts[v], first_seen[v]))
        self.spelling_ = {}
        for spelling in spellings:
            self.spelling_.setdefault(spelling.casefold(), spelling)
        if self.allowed is not None:
            self.spelling_.update({str(a).strip().casefold(): str(a).strip() for a in self.allowed})
        return self

    def transform(self, values: pd.Series) -> Parsed:
        original = _as_text(values)
        present = original.dropna()
        unified = present.map(lambda v: self.spelling_.get(v.casefold(), v))
        parsed = pd.Series(np.nan, index=values.index, dtype=object)
        parsed[present.index] = unified
        raw = values.astype(object)[present.index]
        rewritten = int((unified != raw.map(lambda v: v if isinstance(v, str) else None)).sum())
        return Parsed(parsed, 0, rewritten)

    rewrite_noun = "value{s} respelled to a common case"


def _as_text(values: pd.Series) -> pd.Series:
    values = values.astype(object)
    return values.map(lambda v: str(v).strip(), na_action="ignore")


PARSERS = {
    "number": NumberParser,
    "boolean": BooleanParser,
    "datetime": DateParser,
    "category": CategoryParser,
}
