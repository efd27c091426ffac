"""Step 1 of the workflow: clean a messy table column by column, and drop bad rows outside a Pipeline.

Product decisions
-----------------
- One :class:`DataCleaner` per table; inside it, one ``ColumnCleaner`` (``_column_cleaner.py``)
  per column, a short list of single-column steps in the manner of skrub's ``Cleaner``: formats
  (``_formats.py``), wrong values (``_wrong_values.py``), missing values (``_imputation.py``). This
  module holds what needs the whole table: the parameters and their checks, which steps each
  column gets, the columns to drop (constant, empty, duplicate), the input checks, the output
  and ``report_``, a DataFrame with one line per change.
- Rows: a transformer in a sklearn ``Pipeline`` cannot change the number of rows, and rows must
  never be dropped at predict time. So row removal (exact duplicates, missing or invalid target)
  is separate: :func:`clean_rows` returns the kept ``X, y`` and a record of what was removed and
  why; :meth:`DataCleaner.fit_resample` does it and fits the cleaner on the kept rows (for use
  outside a Pipeline); :class:`RowCleaner` is the same as an imbalanced-learn sampler, whose
  Pipeline applies ``fit_resample`` during ``fit`` only. imbalanced-learn refuses a step that has
  both ``transform`` and ``fit_resample``, which is why ``RowCleaner`` exists beside
  ``DataCleaner``.
- Output follows input: a DataFrame gives a DataFrame with the same index (so ``y`` stays aligned);
  a numpy array gives a numpy array (numeric when every output column is).
"""

from __future__ import annotations

import datetime
import numbers
from numbers import Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data
from skrub import DropUninformative

from skadapt.preprocessing._column_cleaner import ColumnCleaner, record_line, value_text
from skadapt.preprocessing._formats import ReadFormat, column_kind
from skadapt.preprocessing._imputation import STRATEGIES, Imputation, imputation_strategy
from skadapt.preprocessing._parsing import KINDS, mark_missing
from skadapt.preprocessing._rows import clean_rows, rows_record
from skadapt.preprocessing._validation import check_known_columns, input_names, reject_sparse
from skadapt.preprocessing._wrong_values import DEFAULT_OUTLIER_THRESHOLD, wrong_value_steps

__all__ = ["DataCleaner"]

_ALLOWED_VALUE_TYPES = (str, numbers.Number, np.bool_, datetime.date, np.datetime64)
_REPORT_COLUMNS = ["column", "step", "count", "message"]


class DataCleaner(TransformerMixin, BaseEstimator):
    """Clean a messy table: formats, wrong values, missing values, useless columns.

    Column by column, ``fit`` learns and ``transform`` applies:

    1. **formats**: surrounding spaces are trimmed and missing-value markers (``""``, ``"NA"``,
       ``"n/a"``, ``"null"``, ``"?"``, ``"-"``, ... in any case) become missing; numbers stored as
       text (``"1,234.5"``, ``" 42 "``, ``"3.1e2"``, ``"12%"`` -> 0.12), booleans as text
       (yes/no, Y/N, true/false, 1/0) and dates as text (one column may mix formats) get a proper
       dtype; categories that differ only by case or spaces become one.
    2. **wrong values**: values outside ``valid_ranges``, not in ``allowed_categories`` or, when
       asked, outliers by IQR or z-score become missing (then imputed) or are clipped.
    3. **missing values**: imputed per column with the statistic learned in ``fit`` (sklearn's
       ``SimpleImputer``), optionally with an indicator column.
    4. **columns**: constant and duplicate columns are dropped when asked.

    Rows (duplicates, missing or invalid target) are removed only by :meth:`fit_resample`,
    :func:`clean_rows` or :class:`RowCleaner`, never by ``transform``.

    Parameters
    ----------
    column_types : dict of str -> {"number", "boolean", "datetime", "category"}, default=None
        Kinds to use instead of inferring them, e.g. ``{"zip": "category"}``.
    missing_markers : list of str, default=None
        Extra strings that mean "missing", beyond the built-in markers (compared without case
        and surrounding spaces).
    min_parse_fraction : float in (0, 1], default=0.9
        A text column is read as numbers, booleans or dates when at least this fraction of its
        non-missing values parse; the rest become missing (and are counted in ``report_``).
    valid_ranges : dict of str -> (low, high), default=None
        Valid range per number or date column, bounds included; ``None`` leaves a side open.
        E.g. ``{"age": (0, 120), "signup": ("2020-01-01", None)}``.
    allowed_categories : dict of str -> list, default=None
        Allowed values per column, e.g. ``{"color": ["red", "green"]}``; matched without case,
        and written as given here.
    outliers : {"iqr", "zscore"} or dict of str -> {"iqr", "zscore"}, default=None
        Flag outliers in every number column, or in the named ones. Bounds are learned in
        ``fit``: ``[Q1 - t * IQR, Q3 + t * IQR]`` or ``mean +- t * std``.
    outlier_threshold : float, default=None
        ``t`` above; ``None`` means 1.5 for IQR and 3.0 for z-score.
    on_invalid : {"missing", "clip"}, default="missing"
        What wrong numbers and dates become: missing (then imputed) or clipped to the range or
        outlier bound. Wrong categories always become missing.
    imputation : {"auto", "median", "mean", "most_frequent", "constant"}, dict or None, \
            default="auto"
        Strategy per column. ``"auto"``: median for numbers and dates, most frequent for
        booleans and categories. A dict sets some columns (value ``None``: leave missing) and
        the others get ``"auto"``. ``None`` leaves every missing value in place.
    fill_value : scalar or dict of str -> scalar, default=None
        Value for the ``"constant"`` strategy (``None``: 0 for numbers, ``"missing_value"`` for
        categories, as in ``SimpleImputer``).
    add_indicator : bool or list of str, default=False
        Add a ``missingindicator_<column>`` column (True where the value was missing or wrong)
        for every column that had missing values in ``fit``, or for the listed columns.
    drop_constant : bool, default=False
        Drop columns with a single value and no missing value, and columns with no value at
        all (skrub's ``DropUninformative`` rule). Without it, a column with no value at all is
        an error.
    drop_duplicate_columns : bool, default=False
        Drop a column identical to an earlier one (after parsing, before imputation).
    drop_duplicate_rows : bool, default=True
        Used by :meth:`fit_resample`: remove exact duplicate rows (same features and target).
    valid_target : (low, high) tuple or list, default=None
        Used by :meth:`fit_resample`: rows whose target is outside this range or not in this
        list are removed, as are rows with a missing target.

    Attributes
    ----------
    column_kinds_ : dict of str -> str
        The kind each input column was read as.
    dropped_columns_ : dict of str -> str
        Dropped columns and why.
    report_ : pandas.DataFrame
        What ``fit`` learned and ``transform`` will change: columns ``column``, ``step``,
        ``count`` (values concerned in the data passed to ``fit``) and ``message``.
    removed_rows_ : pandas.DataFrame
        After :meth:`fit_resample` only: the removed rows (``row``: index label, or position
        for arrays) and ``reason``.
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` was a DataFrame with string column names.

    See Also
    --------
    clean_rows : Remove duplicate rows and rows with a missing or invalid target.
    skrub.Cleaner : The cleaner whose single-column design this one follows and extends.

    Examples
    --------
    >>> import pandas as pd
    >>> from skadapt.preprocessing import DataCleaner
    >>> X = pd.DataFrame({"age": ["34", " 41 ", "n/a", "250"],
    ...                   "member": ["yes", "No", "Y", "n"],
    ...                   "city": ["Paris", "paris ", "Lyon", "PARIS"]})
    >>> cleaner = DataCleaner(valid_ranges={"age": (0, 120)})
    >>> cleaner.fit_transform(X)
        age  member   city
    0  34.0    True  Paris
    1  41.0   False  Paris
    2  37.5    True   Lyon
    3  37.5   False  Paris
    >>> print(cleaner.report_.loc[cleaner.report_["step"] == "imputed", "message"].iloc[0])
    age: 2 missing values (1 marker, 1 out of range) -> median 37.5
    """

    _parameter_constraints = {
        "column_types": [dict, None],
        "missing_markers": [list, tuple, None],
        "min_parse_fraction": [Interval(Real, 0, 1, closed="right")],
        "valid_ranges": [dict, None],
        "allowed_categories": [dict, None],
        "outliers": [StrOptions({"iqr", "zscore"}), dict, None],
        "outlier_threshold": [Interval(Real, 0, None, closed="neither"), None],
        "on_invalid": [StrOptions({"missing", "clip"})],
        "imputation": [StrOptions({"auto", *STRATEGIES}), dict, None],
        "fill_value": "no_validation",
        "add_indicator": ["boolean", list, tuple],
        "drop_constant": ["boolean"],
        "drop_duplicate_columns": ["boolean"],
        "drop_duplicate_rows": ["boolean"],
        "valid_target": [tuple, list, None],
    }

    def __init__(
        self,
        *,
        column_types=None,
        missing_markers=None,
        min_parse_fraction=0.9,
        valid_ranges=None,
        allowed_categories=None,
        outliers=None,
        outlier_threshold=None,
        on_invalid="missing",
        imputation="auto",
        fill_value=None,
        add_indicator=False,
        drop_constant=False,
        drop_duplicate_columns=False,
        drop_duplicate_rows=True,
        valid_target=None,
    ):
        self.column_types = column_types
        self.missing_markers = missing_markers
        self.min_parse_fraction = min_parse_fraction
        self.valid_ranges = valid_ranges
        self.allowed_categories = allowed_categories
        self.outliers = outliers
        self.outlier_threshold = outlier_threshold
        self.on_invalid = on_invalid
        self.imputation = imputation
        self.fill_value = fill_value
        self.add_indicator = add_indicator
        self.drop_constant = drop_constant
        self.drop_duplicate_columns = drop_duplicate_columns
        self.drop_duplicate_rows = drop_duplicate_rows
        self.valid_target = valid_target

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn each column's kind, corrections, imputation values and which columns to drop.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            The table to clean.
        y : None
            Ignored; rows are only removed by :meth:`fit_resample`.

        Returns
        -------
        self : DataCleaner
        """
        self.__dict__.pop("removed_rows_", None)  # a record from an earlier fit_resample is stale
        frame = self._check_input(X, reset=True)
        self._check_parameters(list(frame.columns))
        self.column_steps_, corrected = {}, {}
        for name in frame.columns:
            self.column_steps_[name] = self._column_cleaner(name, frame[name])
            corrected[name] = self.column_steps_[name].fit_transform(frame[name])
        self.dropped_columns_ = self._columns_to_drop(corrected)
        lines = []
        for name, column in self.column_steps_.items():
            if name in self.dropped_columns_:
                reason = self.dropped_columns_[name]
                lines += [*column.records(), record_line(name, "dropped", 0, f"dropped ({reason})")]
                continue
            column.fit_imputation(self._imputation(name, column.kind), corrected[name],
                                  self._indicator(name))
            lines += column.records()
        self.column_kinds_ = {name: column.kind for name, column in self.column_steps_.items()}
        self.report_ = pd.DataFrame(lines, columns=_REPORT_COLUMNS)
        return self

    def transform(self, X):
        """Clean ``X`` with what ``fit`` learned; never drops or reorders rows.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            The same columns as in ``fit``.

        Returns
        -------
        X_clean : pandas.DataFrame or ndarray of shape (n_samples, n_features_out)
            A DataFrame (same index) for DataFrame input, else an array.
        """
        check_is_fitted(self, "column_steps_")
        frame = self._check_input(X, reset=False)
        columns, indicators = {}, {}
        for name, column in self._kept_columns().items():
            columns[name], missing = column.transform(frame[name])
            if column.indicator:
                indicators[column.indicator_name] = missing
        result = pd.DataFrame({**columns, **indicators}, index=frame.index)
        return result if isinstance(X, pd.DataFrame) else _to_array(result)

    def fit_resample(self, X, y):
        """Remove bad rows, fit on the rest and return the cleaned ``X`` with its aligned ``y``.

        Removes exact duplicate rows (``drop_duplicate_rows``) and rows whose target is missing
        or invalid (``valid_target``), as :func:`clean_rows` does; then fits the cleaner on the
        kept rows and transforms them. At predict time use :meth:`transform`, which keeps every
        row. The removed rows are in ``removed_rows_``.

        This is the imbalanced-learn protocol, for use outside a Pipeline: imbalanced-learn's
        Pipeline refuses a step with both ``transform`` and ``fit_resample``; there, put a
        :class:`RowCleaner` before the ``DataCleaner``.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        X_clean : pandas.DataFrame or ndarray
            The kept rows, cleaned.
        y_kept : pandas.Series or ndarray
            The kept targets, in the same order (a Series keeps its index).
        """
        X_kept, y_kept, removed = clean_rows(
            X,
            y,
            drop_duplicates=self.drop_duplicate_rows,
            valid_target=self.valid_target,
            missing_markers=self.missing_markers,
        )
        X_clean = self.fit(X_kept).transform(X_kept)
        self.removed_rows_ = removed
        self.report_ = pd.concat([rows_record(removed), self.report_], ignore_index=True)
        return X_clean, y_kept

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: the kept input columns, then the indicator columns.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Must match ``feature_names_in_`` when given.

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self, "column_steps_")
        _check_feature_names_in(self, input_features)
        kept = self._kept_columns()
        indicators = [column.indicator_name for column in kept.values() if column.indicator]
        return np.asarray(list(kept) + indicators, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- input and parameters ------------------------------------------------------------------

    def _check_input(self, X, *, reset: bool) -> pd.DataFrame:
        """Validate ``X`` and return it as a DataFrame whose columns carry the fitted names."""
        reject_sparse(X, "DataCleaner")
        if isinstance(X, pd.DataFrame):
            _check_frame_names(self, X, reset=reset)
            frame = X
        else:
            array = validate_data(self, X, reset=reset, dtype=None, ensure_all_finite=False)
            frame = pd.DataFrame(array)
        if frame.shape[0] == 0:
            raise ValueError("DataCleaner got 0 rows: pass at least one row.")
        if frame.columns.duplicated().any():
            duplicated = list(frame.columns[frame.columns.duplicated()])
            raise ValueError(
                f"X has duplicated column names {duplicated}: rename them so each is unique."
            )
        frame = frame.set_axis(input_names(self, frame.shape[1]), axis=1)
        for name in frame.columns:
            _check_column_values(name, frame[name])
        return frame

    def _check_parameters(self, columns: list[str]) -> None:
        named = {
            "column_types": self.column_types,
            "valid_ranges": self.valid_ranges,
            "allowed_categories": self.allowed_categories,
            "outliers": self.outliers if isinstance(self.outliers, dict) else None,
            "imputation": self.imputation if isinstance(self.imputation, dict) else None,
            "fill_value": self.fill_value if isinstance(self.fill_value, dict) else None,
            "add_indicator": self.add_indicator if isinstance(self.add_indicator, list | tuple)
            else None,
        }
        for parameter, value in named.items():
            if value is not None:
                check_known_columns(parameter, value, columns)
        _check_choices("column_types", self.column_types, KINDS, f"one of {list(KINDS)}")
        _check_choices("outliers", named["outliers"], DEFAULT_OUTLIER_THRESHOLD, "'iqr' or 'zscore'")
        _check_choices("imputation", named["imputation"], (None, "auto", *STRATEGIES),
                       f"one of {['auto', *STRATEGIES]} or None")

    # -- per-column decisions ------------------------------------------------------------------

    def _column_cleaner(self, name: str, raw: pd.Series) -> ColumnCleaner:
        """The column's kind and the steps its parameters ask for, in the order they run."""
        kind, reason = column_kind(
            name,
            mark_missing(raw, self.missing_markers or ())[0],
            column_types=self.column_types,
            valid_ranges=self.valid_ranges,
            outliers=self.outliers,
            min_parse_fraction=self.min_parse_fraction,
        )
        allowed = (self.allowed_categories or {}).get(name)
        read = ReadFormat(kind, reason, self.missing_markers or (), allowed)
        wrong_values = wrong_value_steps(
            name,
            kind,
            valid_range=(self.valid_ranges or {}).get(name),
            allowed=allowed,
            outliers=self.outliers,
            outlier_threshold=self.outlier_threshold,
            on_invalid=self.on_invalid,
        )
        return ColumnCleaner(name, kind, [read, *wrong_values])

    def _imputation(self, name: str, kind: str) -> Imputation:
        strategy = imputation_strategy(name, kind, self.imputation)
        fill = self.fill_value.get(name) if isinstance(self.fill_value, dict) else self.fill_value
        return Imputation(kind, strategy, fill)

    def _indicator(self, name: str) -> bool | None:
        """True: always add; None: add when fit saw missing values; False: never."""
        if isinstance(self.add_indicator, list | tuple):
            return name in self.add_indicator or False
        return None if self.add_indicator else False

    def _kept_columns(self) -> dict[str, ColumnCleaner]:
        return {name: column for name, column in self.column_steps_.items()
                if name not in self.dropped_columns_}

    def _columns_to_drop(self, corrected: dict[str, pd.Series]) -> dict[str, str]:
        dropped, seen = {}, {}
        for name, values in corrected.items():
            if values.isna().all():
                if not self.drop_constant:
                    raise ValueError(
                        f"Column {name!r} has no value left after cleaning (all missing, "
                        "unparseable or invalid): drop it from X, fix its values, or pass "
                        "drop_constant=True to drop such columns."
                    )
                dropped[name] = "no value at all"
                continue
            if self.drop_constant and _is_constant(values):
                dropped[name] = f"constant: {value_text(values.iloc[0])}"
                continue
            if self.drop_duplicate_columns:
                key = (self.column_steps_[name].kind, _fingerprint(values))
                if key in seen and values.equals(corrected[seen[key]]):
                    dropped[name] = f"duplicate of {seen[key]!r}"
                    continue
                seen.setdefault(key, name)
        return dropped


# -- helpers --------------------------------------------------------------------------------------


def _check_frame_names(estimator, X: pd.DataFrame, *, reset: bool) -> None:
    try:
        validate_data(estimator, X, reset=reset, skip_check_array=True)
    except ValueError as error:
        if reset or "feature names" not in str(error):
            raise
        raise ValueError(
            f"{error}\nPass a DataFrame with exactly the columns seen in fit, in the same order, "
            "e.g. X[cleaner.feature_names_in_]."
        ) from None


def _check_column_values(name: str, values: pd.Series) -> None:
    """Reject values that no step can read, and inf, naming the column."""
    if pd.api.types.is_complex_dtype(values):
        raise TypeError(f"Column {name!r} holds complex numbers, which DataCleaner cannot clean.")
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        n_inf = int(np.isinf(values.to_numpy(dtype="float64", na_value=np.nan)).sum())
        if n_inf:
            raise ValueError(
                f"Column {name!r} contains inf ({n_inf} values): replace them with NaN "
                "(X.replace([np.inf, -np.inf], np.nan)) to have them imputed, or with a number."
            )
    if pd.api.types.is_object_dtype(values):
        present = values.dropna()
        wrong = present[~present.map(lambda v: isinstance(v, _ALLOWED_VALUE_TYPES)).astype(bool)]
        if not wrong.empty:
            raise TypeError(
                f"Column {name!r} holds a value of type {type(wrong.iloc[0]).__name__} "
                f"({wrong.iloc[0]!r}): DataCleaner reads text, numbers, booleans and dates; "
                "convert or drop that column first."
            )


def _check_choices(parameter: str, per_column: dict | None, choices, use: str) -> None:
    """Raise a ValueError for a per-column value of ``parameter`` that is not in ``choices``."""
    for name, value in (per_column or {}).items():
        if value not in choices:
            raise ValueError(f"{parameter}[{name!r}] is {value!r}; use {use}.")


def _is_constant(values: pd.Series) -> bool:
    return DropUninformative(drop_if_constant=True, drop_null_fraction=None).fit(values).drop_


def _fingerprint(values: pd.Series) -> int:
    return int(pd.util.hash_pandas_object(values, index=False).sum())


def _to_array(frame: pd.DataFrame) -> np.ndarray:
    """A numeric array when every column is numeric (booleans count as numbers), else object."""
    numeric = [d for d in frame.dtypes if pd.api.types.is_numeric_dtype(d)]
    if len(numeric) < frame.shape[1]:
        return frame.to_numpy(dtype=object)
    not_bool = [d for d in numeric if not pd.api.types.is_bool_dtype(d)]
    dtype = np.result_type(*[np.dtype(d) for d in not_bool]) if not_bool else np.float64
    return frame.to_numpy(dtype=dtype, na_value=np.nan)
