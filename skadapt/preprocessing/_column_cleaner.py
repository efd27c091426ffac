"""One column's cleaning: a short list of single-column steps applied in order, then imputation.

As in skrub's ``Cleaner``, :class:`~skadapt.preprocessing.DataCleaner` builds for each column a
:class:`ColumnCleaner` holding only the steps its parameters ask for, in this order:

1. formats (``_formats.py``): trim text, turn missing-value markers into missing values, parse the
   column as its kind;
2. wrong values (``_wrong_values.py``): outside ``valid_ranges``, not in ``allowed_categories``,
   outliers;
3. missing values (``_imputation.py``): fitted once the table knows which columns it keeps, since a
   dropped column is not imputed;

then the column gets its final dtype. Each step learns in ``fit_transform`` and applies what it
learned in ``transform``; what it changed in ``fit`` becomes lines of the cleaner's ``report_``,
worded by the helpers at the end of this module.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd

__all__ = ["ColumnCleaner", "ColumnStep", "count_text", "counted", "record_line", "value_text"]

_TEXT_DTYPE = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


class ColumnStep:
    """Base of the single-column steps that correct a column before imputation.

    ``fit_transform`` learns on the column seen in ``fit`` and returns it changed; ``transform``
    applies what was learned. :meth:`records` words what ``fit_transform`` changed, and
    :meth:`missing_sources` counts the values it made missing, for the imputation line.
    """

    def fit_transform(self, values: pd.Series) -> pd.Series:
        """Learn on ``values`` and return them changed."""
        raise NotImplementedError

    def transform(self, values: pd.Series) -> pd.Series:
        """Apply what ``fit_transform`` learned."""
        raise NotImplementedError

    def records(self) -> list[tuple[str, int, str]]:
        """``(step, count, change)`` lines for ``report_``, from what ``fit_transform`` saw."""
        return []

    def missing_sources(self) -> list[tuple[int, str]]:
        """``(count, noun)`` of the values this step made missing in ``fit``."""
        return []


class ColumnCleaner:
    """The single-column pipeline: correction steps in order, then imputation and the final dtype.

    Parameters
    ----------
    name : str
        The column's name, as the record and the indicator column show it.
    kind : {"number", "boolean", "datetime", "category"}
        The kind the column is read as.
    steps : list of ColumnStep
        The correction steps, applied in order.
    """

    def __init__(self, name: str, kind: str, steps: list[ColumnStep]):
        self.name = name
        self.kind = kind
        self.steps = steps
        self.imputation = None
        self.indicator = False
        self.dtype_in = None

    @property
    def indicator_name(self) -> str:
        """Name of the column that says where this one was missing or wrong."""
        return f"missingindicator_{self.name}"

    def fit_transform(self, raw: pd.Series) -> pd.Series:
        """Fit the steps in order on the column seen in ``fit``; return it corrected, not imputed."""
        self.dtype_in = raw.dtype
        values = raw
        for step in self.steps:
            values = step.fit_transform(values)
        return values

    def fit_imputation(self, imputation, corrected: pd.Series, indicator: bool | None) -> None:
        """Fit ``imputation`` (an ``Imputation`` of ``_imputation.py``) on the corrected column.

        ``indicator``: True, always add an indicator column; None, add one when ``fit`` saw missing
        values; False, never.
        """
        sources = [source for step in self.steps for source in step.missing_sources()]
        self.imputation = imputation.fit(corrected, sources)
        self.indicator = bool(self.imputation.n_missing_) if indicator is None else indicator

    def transform(self, raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
        """Return the cleaned column and where it was missing or wrong before imputation."""
        _check_same_kind(self.name, self.kind, raw)
        corrected = raw
        for step in self.steps:
            corrected = step.transform(corrected)
        return self._final_dtype(self.imputation.transform(corrected)), corrected.isna().to_numpy()

    def records(self) -> list[dict]:
        """The column's lines of ``report_``: each step's changes, then the imputation's."""
        lines = [line for step in self.steps for line in step.records()]
        if self.imputation is not None:
            lines += self.imputation.records()
            if self.indicator:
                lines.append(("indicator", self.imputation.n_missing_,
                              f"adds column '{self.indicator_name}'"))
        return [record_line(self.name, *line) for line in lines]

    def _final_dtype(self, values: pd.Series) -> pd.Series:
        if self.kind == "number":
            if pd.api.types.is_float_dtype(self.dtype_in):
                return values.astype(self.dtype_in)
            whole = values.notna().all() and (values == np.round(values)).all()
            if pd.api.types.is_integer_dtype(self.dtype_in) and whole:
                return values.astype(self.dtype_in)
            return values.astype("float64")
        if self.kind == "boolean":
            return values.astype(bool) if values.notna().all() else values.astype("boolean")
        if self.kind == "datetime":
            return values.astype("datetime64[ns]")
        return values.astype(_TEXT_DTYPE)


def _check_same_kind(name: str, kind: str, values: pd.Series) -> None:
    """At transform, a typed column must still fit the kind learned in fit (text always may)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        compatible = kind in ("datetime", "category")
    elif pd.api.types.is_numeric_dtype(values):
        compatible = kind in ("number", "boolean", "category")
    else:
        return
    if not compatible:
        raise TypeError(
            f"Column {name!r} was read as {kind} in fit, but now has dtype {values.dtype}: pass "
            "the column as it was in fit (or as text), or refit the cleaner."
        )


# -- the wording of report_ -----------------------------------------------------------------------


def record_line(column: str, step: str, count: int, change: str) -> dict:
    """One line of ``report_``: the column, the step, how many values, and the message."""
    return {"column": column, "step": step, "count": int(count), "message": f"{column}: {change}"}


def counted(step: str, count: int, noun: str, change: str) -> list[tuple[str, int, str]]:
    """The record line of a change seen ``count`` times in ``fit``; none when it was not seen."""
    return [(step, count, f"{count_text(count, noun)} {change}")] if count else []


def count_text(count: int, noun: str) -> str:
    """'1 value', '3 values': ``noun`` marks where the plural goes with ``{s}``."""
    return f"{count} " + noun.replace("{s}", "" if count == 1 else "s")


def value_text(value) -> str:
    """A value as the record shows it: numbers as ``%g``, text quoted, others as ``str``."""
    if isinstance(value, Real) and not isinstance(value, bool | np.bool_):
        return f"{float(value):g}"
    return repr(value) if isinstance(value, str) else str(value)
