"""Wrong values, a column's second cleaning step: outside a valid range, not allowed, outliers.

Product decisions
-----------------
- Wrong values (outside ``valid_ranges``, not in ``allowed_categories``, outliers) become missing
  and are then imputed, or are clipped (``on_invalid="clip"``; categories cannot be clipped, so
  they become missing either way).
- Outlier bounds are learned in ``fit``, on the values left after the range and category checks:
  ``[Q1 - t * IQR, Q3 + t * IQR]`` or ``mean +- t * std``. A spread of 0 in ``fit`` means no
  outlier check, and the record says so.

:func:`wrong_value_steps` checks the parameters for one column and returns the steps they ask for,
in the order they run: :class:`ValidRange`, :class:`AllowedValues`, :class:`Outliers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import numpy as np
import pandas as pd

from skadapt.preprocessing._column_cleaner import ColumnStep, counted, value_text

__all__ = ["DEFAULT_OUTLIER_THRESHOLD", "AllowedValues", "Outliers", "ValidRange", "wrong_value_steps"]

# The outlier methods, and the threshold each takes when ``outlier_threshold`` is None.
DEFAULT_OUTLIER_THRESHOLD = {"iqr": 1.5, "zscore": 3.0}


def wrong_value_steps(
    name: str,
    kind: str,
    *,
    valid_range,
    allowed,
    outliers,
    outlier_threshold: float | None,
    on_invalid: str,
) -> list[ColumnStep]:
    """The wrong-value steps that the parameters ask for on one column, in the order they run.

    Parameters
    ----------
    name : str
        The column's name, for the errors.
    kind : {"number", "boolean", "datetime", "category"}
        The kind the column is read as.
    valid_range : (low, high) or None
        This column's entry of ``valid_ranges``.
    allowed : list or None
        This column's entry of ``allowed_categories``.
    outliers, outlier_threshold, on_invalid
        The :class:`~skadapt.preprocessing.DataCleaner` parameters of those names.

    Returns
    -------
    steps : list of ColumnStep
    """
    method = outliers.get(name) if isinstance(outliers, dict) else (
        outliers if kind == "number" else None)
    bounds = _check_range(name, kind, valid_range)
    allowed = _check_allowed(name, kind, allowed)
    steps = []
    if bounds is not None:
        steps.append(ValidRange(bounds, on_invalid))
    if allowed is not None:
        steps.append(AllowedValues(allowed, kind))
    if method:
        threshold = DEFAULT_OUTLIER_THRESHOLD[method] if outlier_threshold is None \
            else outlier_threshold
        steps.append(Outliers(method, threshold, on_invalid))
    return steps


class _WrongValues(ColumnStep):
    """Base of the wrong-value steps: learn (when there is something to learn), correct, count."""

    def fit_transform(self, values: pd.Series) -> pd.Series:
        """Learn on ``values``, correct them and count the wrong ones for the record."""
        self._fit(values)
        values, self.n_wrong_ = self._correct(values)
        return values

    def transform(self, values: pd.Series) -> pd.Series:
        """Correct the wrong values."""
        return self._correct(values)[0]

    def _fit(self, values: pd.Series) -> None:
        pass

    def _correct(self, values: pd.Series) -> tuple[pd.Series, int]:
        raise NotImplementedError


class _OutsideBounds(_WrongValues):
    """Values outside ``bounds`` (included) become missing or are clipped."""

    noun = ""  # how the imputation line names the values this step made missing

    def __init__(self, on_invalid: str):
        self.on_invalid = on_invalid
        self.bounds = None

    @property
    def _action(self) -> str:
        return "clipped" if self.on_invalid == "clip" else "missing"

    def _correct(self, values: pd.Series) -> tuple[pd.Series, int]:
        if self.bounds is None:
            return values, 0
        low, high = self.bounds
        wrong = values.notna() & ((values < low) | (values > high))
        if self.on_invalid == "clip":
            return values.clip(low, high), int(wrong.sum())
        return values.mask(wrong), int(wrong.sum())

    def missing_sources(self) -> list[tuple[int, str]]:
        """The wrong values, unless they were clipped."""
        return [] if self.on_invalid == "clip" else [(self.n_wrong_, self.noun)]


class ValidRange(_OutsideBounds):
    """Numbers or dates outside ``valid_ranges`` become missing or are clipped."""

    noun = "out of range"

    def __init__(self, bounds: tuple, on_invalid: str):
        super().__init__(on_invalid)
        self.bounds = bounds

    def records(self) -> list[tuple[str, int, str]]:
        """How many values were out of range, and what became of them."""
        return counted("out of range", self.n_wrong_, "value{s}",
                       f"out of range {_bounds_text(self.bounds)} -> {self._action}")


class Outliers(_OutsideBounds):
    """Numbers outside bounds learned in ``fit`` (IQR or z-score) become missing or are clipped."""

    noun = "outlier{s}"

    def __init__(self, method: str, threshold: float, on_invalid: str):
        super().__init__(on_invalid)
        self.method = method
        self.threshold = threshold
        self.note = ""

    def _fit(self, values: pd.Series) -> None:
        self.bounds, self.note = _outlier_bounds(values, self.method, self.threshold)

    def records(self) -> list[tuple[str, int, str]]:
        """How many outliers, and what became of them; or why there was no outlier check."""
        lines = counted("outliers", self.n_wrong_, "outlier{s}",
                        f"outside {_bounds_text(self.bounds)} ({self.method}, "
                        f"threshold {self.threshold}) -> {self._action}")
        return lines + ([("outliers", 0, self.note)] if self.note else [])


class AllowedValues(_WrongValues):
    """Values not in ``allowed_categories`` (categories: without case) become missing."""

    def __init__(self, allowed: set, kind: str):
        self.allowed = allowed
        self.kind = kind

    def _correct(self, values: pd.Series) -> tuple[pd.Series, int]:
        keys = values.map(str.casefold, na_action="ignore") if self.kind == "category" else values
        wrong = values.notna() & ~keys.isin(self.allowed)
        return values.mask(wrong), int(wrong.sum())

    def records(self) -> list[tuple[str, int, str]]:
        """How many values were not allowed."""
        return counted("not allowed", self.n_wrong_, "value{s}",
                       "not in allowed_categories -> missing")

    def missing_sources(self) -> list[tuple[int, str]]:
        """The values that were not allowed."""
        return [(self.n_wrong_, "not allowed")]


# -- the parameters, checked and read for one column ----------------------------------------------


def _check_range(name: str, kind: str, bounds):
    if bounds is None:
        return None
    if kind not in ("number", "datetime"):
        raise ValueError(
            f"valid_ranges[{name!r}] applies to numbers or dates, but the column is read as "
            f"{kind}: use allowed_categories for it, or column_types to read it as numbers."
        )
    if not isinstance(bounds, Sequence) or isinstance(bounds, str) or len(bounds) != 2:
        raise TypeError(
            f"valid_ranges[{name!r}] must be a (low, high) pair, got {bounds!r}; use None for an "
            "open side, e.g. (0, None)."
        )
    convert = _as_number if kind == "number" else _as_timestamp
    low, high = (convert(name, b) for b in bounds)
    low = -np.inf if low is None and kind == "number" else low
    high = np.inf if high is None and kind == "number" else high
    low = pd.Timestamp.min if low is None else low
    high = pd.Timestamp.max if high is None else high
    if low > high:
        raise ValueError(f"valid_ranges[{name!r}] has low > high: {bounds!r}.")
    return low, high


def _as_number(name: str, bound):
    if bound is None:
        return None
    if isinstance(bound, bool) or not isinstance(bound, Real):
        raise TypeError(
            f"valid_ranges[{name!r}] bound {bound!r} is not a number, but the column is read as "
            "numbers: give numbers or None."
        )
    return float(bound)


def _as_timestamp(name: str, bound):
    if bound is None:
        return None
    try:
        return pd.Timestamp(bound)
    except (TypeError, ValueError):
        raise TypeError(
            f"valid_ranges[{name!r}] bound {bound!r} is not a date, but the column is read as "
            "dates: give dates such as '2020-01-31' or None."
        ) from None


def _check_allowed(name: str, kind: str, allowed):
    if allowed is None:
        return None
    if isinstance(allowed, str) or not isinstance(allowed, Sequence | set | frozenset):
        raise TypeError(
            f"allowed_categories[{name!r}] must be a list of values, got {allowed!r}."
        )
    if kind == "category":
        return {str(a).strip().casefold() for a in allowed}
    if kind == "number":
        return {_as_number(name, a) for a in allowed}
    raise ValueError(
        f"allowed_categories[{name!r}] applies to categories or numbers, but the column is read "
        f"as {kind}: remove it, or use valid_ranges for dates."
    )


def _outlier_bounds(values: pd.Series, method: str, threshold: float):
    present = values.dropna().astype("float64")
    if present.empty:
        return None, ""
    if method == "iqr":
        q1, q3 = present.quantile([0.25, 0.75])
        spread, low, high = q3 - q1, q1, q3
    else:
        spread = present.std(ddof=0)
        low = high = present.mean()
    if spread == 0:
        return None, f"no outlier check: the {method} spread is 0 in fit"
    return (low - threshold * spread, high + threshold * spread), ""


def _bounds_text(bounds) -> str:
    if bounds is None:
        return ""
    open_ends = {pd.Timestamp.min: "-inf", pd.Timestamp.max: "inf"}
    texts = [open_ends.get(b, None) if isinstance(b, pd.Timestamp) else None for b in bounds]
    low, high = (text or value_text(b) for text, b in zip(texts, bounds))
    return f"[{low}, {high}]"
