"""Step 1 of the workflow: clean a messy table column by column, and drop bad rows outside a Pipeline.

Product decisions
-----------------
- One :class:`DataCleaner` per table; inside it, one small single-column step per column
  (:class:`_ColumnCleaner`): mark missing values, parse the column's kind, correct wrong values,
  impute. What it learned is in ``report_``, a DataFrame with one line per change.
- A column's kind (number, boolean, datetime, category) is declared (``column_types``), implied by
  a parameter (``valid_ranges`` needs numbers or dates) or inferred: a text column is of a kind when
  at least ``min_parse_fraction`` of its non-missing values parse as it. The few that do not become
  missing and are counted in the record: messy data has typos, and one typo should not turn an
  income column into a category.
- Wrong values (outside ``valid_ranges``, not in ``allowed_categories``, outliers) become missing
  and are then imputed, or are clipped (``on_invalid="clip"``; categories cannot be clipped, so
  they become missing either way).
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
from collections.abc import Sequence
from numbers import Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.impute import SimpleImputer
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data
from skrub import DropUninformative

from skadapt.preprocessing._parsing import (
    KINDS,
    PARSERS,
    CategoryParser,
    infer_kind,
    mark_missing,
)
from skadapt.preprocessing._rows import clean_rows, rows_record
from skadapt.preprocessing._validation import check_known_columns, input_names, reject_sparse

__all__ = ["DataCleaner"]

_STRATEGIES = ("median", "mean", "most_frequent", "constant")
# Which imputation strategies make sense for which kind; "auto" takes the first.
_STRATEGIES_BY_KIND = {
    "number": ("median", "mean", "most_frequent", "constant"),
    "datetime": ("median", "mean", "most_frequent", "constant"),
    "boolean": ("most_frequent", "constant"),
    "category": ("most_frequent", "constant"),
}
_DEFAULT_OUTLIER_THRESHOLD = {"iqr": 1.5, "zscore": 3.0}
# How the imputation line of the record names where its missing values came from.
_SOURCE_NOUNS = {
    "missing markers": "marker{s}",
    "unparseable": "unparseable",
    "out of range": "out of range",
    "not allowed": "not allowed",
    "outliers": "outlier{s}",
}
_TEXT_DTYPE = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
_ALLOWED_VALUE_TYPES = (str, numbers.Number, np.bool_, datetime.date, np.datetime64)


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
        "imputation": [StrOptions({"auto", *_STRATEGIES}), dict, None],
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
        self.column_steps_, corrected, records = {}, {}, {}
        for name in frame.columns:
            step = self._column_cleaner(name, frame[name])
            corrected[name], counts = step.fit(frame[name])
            records[name] = step.records(counts)
            self.column_steps_[name] = step
        self.dropped_columns_ = self._columns_to_drop(corrected)
        for name, step in self.column_steps_.items():
            if name in self.dropped_columns_:
                message = f"{name}: dropped ({self.dropped_columns_[name]})"
                records[name].append({"column": name, "step": "dropped", "count": 0,
                                      "message": message})
                continue
            strategy, fill = self._imputation_for(name, step.kind)
            records[name] += step.fit_imputer(corrected[name], strategy, fill,
                                              self._indicator(name))
        self.column_kinds_ = {name: step.kind for name, step in self.column_steps_.items()}
        lines = [line for column_lines in records.values() for line in column_lines]
        self.report_ = pd.DataFrame(lines, columns=["column", "step", "count", "message"])
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
        for name, step in self.column_steps_.items():
            if name in self.dropped_columns_:
                continue
            _check_same_kind(name, step.kind, frame[name])
            corrected, _ = step.correct(frame[name])
            columns[name] = step.impute(corrected)
            if step.indicator:
                indicators[f"missingindicator_{name}"] = corrected.isna().to_numpy()
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
        kept = [name for name in self.column_steps_ if name not in self.dropped_columns_]
        indicators = [f"missingindicator_{n}" for n in kept if self.column_steps_[n].indicator]
        return np.asarray(kept + indicators, dtype=object)

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
        for name, kind in (self.column_types or {}).items():
            if kind not in KINDS:
                raise ValueError(
                    f"column_types[{name!r}] is {kind!r}; use one of {list(KINDS)}."
                )
        for name, method in named["outliers"].items() if named["outliers"] else ():
            if method not in _DEFAULT_OUTLIER_THRESHOLD:
                raise ValueError(f"outliers[{name!r}] is {method!r}; use 'iqr' or 'zscore'.")
        for name, strategy in named["imputation"].items() if named["imputation"] else ():
            if strategy is not None and strategy not in ("auto", *_STRATEGIES):
                raise ValueError(
                    f"imputation[{name!r}] is {strategy!r}; use one of "
                    f"{['auto', *_STRATEGIES]} or None."
                )

    # -- per-column decisions ------------------------------------------------------------------

    def _column_cleaner(self, name: str, raw: pd.Series) -> _ColumnCleaner:
        values = mark_missing(raw, self.missing_markers or ())[0]
        kind, reason = self._kind(name, values)
        allowed = (self.allowed_categories or {}).get(name)
        parser = CategoryParser(allowed) if kind == "category" else PARSERS[kind]()
        outlier_method = self._outlier_method(name, kind)
        threshold = self.outlier_threshold
        if outlier_method and threshold is None:
            threshold = _DEFAULT_OUTLIER_THRESHOLD[outlier_method]
        return _ColumnCleaner(
            name=name,
            kind=kind,
            kind_reason=reason,
            parser=parser,
            markers=tuple(self.missing_markers or ()),
            valid_range=_check_range(name, kind, (self.valid_ranges or {}).get(name)),
            allowed=_check_allowed(name, kind, allowed),
            outlier_method=outlier_method,
            outlier_threshold=threshold,
            on_invalid=self.on_invalid,
        )

    def _kind(self, name: str, values: pd.Series) -> tuple[str, str]:
        """The column's kind and why: declared, implied by a parameter, or inferred."""
        declared = (self.column_types or {}).get(name)
        if declared is not None:
            kind, reason = declared, "declared in column_types"
        else:
            kind, reason = infer_kind(values, self.min_parse_fraction), "inferred"
            implied = self._implied_kind(name)
            if implied is not None and implied != kind:
                kind, reason = implied, "implied by valid_ranges/outliers"
        if reason != "inferred":
            _check_parseable(name, kind, reason, values)
        return kind, reason

    def _implied_kind(self, name: str) -> str | None:
        bounds = (self.valid_ranges or {}).get(name)
        if bounds is not None:
            pair = isinstance(bounds, Sequence) and not isinstance(bounds, str)
            return "datetime" if pair and any(_is_date(b) for b in bounds) else "number"
        if isinstance(self.outliers, dict) and name in self.outliers:
            return "number"
        return None

    def _outlier_method(self, name: str, kind: str) -> str | None:
        if isinstance(self.outliers, dict):
            return self.outliers.get(name)
        return self.outliers if kind == "number" else None

    def _imputation_for(self, name: str, kind: str) -> tuple[str | None, object]:
        strategy = self.imputation
        if isinstance(strategy, dict):
            strategy = strategy.get(name, "auto")
        if strategy == "auto":
            strategy = _STRATEGIES_BY_KIND[kind][0]
        if strategy is not None and strategy not in _STRATEGIES_BY_KIND[kind]:
            raise ValueError(
                f"imputation {strategy!r} does not apply to column {name!r}, read as {kind}: "
                f"use one of {list(_STRATEGIES_BY_KIND[kind])} for it, e.g. "
                f"imputation={{{name!r}: {_STRATEGIES_BY_KIND[kind][0]!r}}}."
            )
        fill = self.fill_value.get(name) if isinstance(self.fill_value, dict) else self.fill_value
        return strategy, fill

    def _indicator(self, name: str) -> bool | None:
        """True: always add; None: add when fit saw missing values; False: never."""
        if isinstance(self.add_indicator, list | tuple):
            return name in self.add_indicator or False
        return None if self.add_indicator else False

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
                dropped[name] = f"constant: {_fill_text(values.iloc[0])}"
                continue
            if self.drop_duplicate_columns:
                key = (self.column_steps_[name].kind, _fingerprint(values))
                if key in seen and values.equals(corrected[seen[key]]):
                    dropped[name] = f"duplicate of {seen[key]!r}"
                    continue
                seen.setdefault(key, name)
        return dropped


class _ColumnCleaner:
    """The single-column step: mark missing, parse, correct wrong values, impute."""

    def __init__(
        self,
        *,
        name,
        kind,
        kind_reason,
        parser,
        markers,
        valid_range,
        allowed,
        outlier_method,
        outlier_threshold,
        on_invalid,
    ):
        self.name = name
        self.kind = kind
        self.kind_reason = kind_reason
        self.parser = parser
        self.markers = markers
        self.valid_range = valid_range
        self.allowed = allowed
        self.outlier_method = outlier_method
        self.outlier_threshold = outlier_threshold
        self.on_invalid = on_invalid
        self.outlier_bounds = None
        self.outlier_note = ""
        self.fill = None
        self.indicator = False
        self.dtype_in = None
        self._sources = {}  # where the missing values seen in fit came from, for the record

    def fit(self, raw: pd.Series) -> tuple[pd.Series, dict]:
        """Learn the parser and outlier bounds; return the corrected column and its counts."""
        self.dtype_in = raw.dtype
        values = mark_missing(raw, self.markers)[0]
        self.parser.fit(values)
        self.outlier_bounds = None
        corrected, counts = self.correct(raw)
        if self.outlier_method:
            self.outlier_bounds, self.outlier_note = _outlier_bounds(
                corrected, self.outlier_method, self.outlier_threshold
            )
            corrected, counts = self.correct(raw)
        return corrected, counts

    def correct(self, raw: pd.Series) -> tuple[pd.Series, dict]:
        """Parse and correct wrong values (before imputation), with counts of each change."""
        marked, n_markers, n_trimmed = mark_missing(raw, self.markers)
        parsed = self.parser.transform(marked)
        values = parsed.values
        if self.kind == "number":
            values = values.astype("float32" if values.dtype == np.float32 else "float64")
        counts = {
            "markers": n_markers,
            "trimmed": n_trimmed,
            "rewritten": parsed.n_rewritten,
            "unparseable": parsed.n_unparseable,
            "examples": _examples(values, marked),
        }
        values, counts["out_of_range"] = self._apply_bounds(values, self.valid_range)
        values, counts["not_allowed"] = self._apply_allowed(values)
        values, counts["outliers"] = self._apply_bounds(values, self.outlier_bounds)
        counts["missing"] = int(values.isna().sum())
        return values, counts

    def _apply_bounds(self, values: pd.Series, bounds) -> tuple[pd.Series, int]:
        if bounds is None:
            return values, 0
        low, high = bounds
        wrong = values.notna() & ((values < low) | (values > high))
        if self.on_invalid == "clip":
            return values.clip(low, high), int(wrong.sum())
        return values.mask(wrong), int(wrong.sum())

    def _apply_allowed(self, values: pd.Series) -> tuple[pd.Series, int]:
        if self.allowed is None:
            return values, 0
        keys = values.map(str.casefold, na_action="ignore") if self.kind == "category" else values
        wrong = values.notna() & ~keys.isin(self.allowed)
        return values.mask(wrong), int(wrong.sum())

    def fit_imputer(self, corrected: pd.Series, strategy, fill_value, indicator) -> list[dict]:
        """Learn the imputation value with sklearn's SimpleImputer; return the record lines."""
        n_missing = int(corrected.isna().sum())
        self.indicator = bool(n_missing) if indicator is None else indicator
        self.fill = None
        if strategy is not None:
            imputer = SimpleImputer(strategy=strategy, fill_value=_fill_for_imputer(self.kind,
                                                                                     fill_value))
            imputer.fit(_imputer_input(self.kind, corrected))
            self.fill = _from_imputer(self.kind, imputer.statistics_[0])
        records = [self._imputation_record(strategy, n_missing)]
        if self.indicator:
            records.append(self._record("indicator", n_missing,
                                        f"adds column 'missingindicator_{self.name}'"))
        return records

    def impute(self, corrected: pd.Series) -> pd.Series:
        """Fill missing values with the learned value and give the column its final dtype."""
        values = corrected
        if self.fill is not None and values.isna().any():
            values = values.where(values.notna(), self.fill)
        return self._final_dtype(values)

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

    # -- the record ------------------------------------------------------------------------------

    def _record(self, step: str, count: int, change: str) -> dict:
        return {"column": self.name, "step": step, "count": int(count),
                "message": f"{self.name}: {change}"}

    def records(self, counts: dict) -> list[dict]:
        """Record lines for the parsing and correction steps, from the counts seen in fit."""
        action = "clipped" if self.on_invalid == "clip" else "missing"
        examples = ", ".join(repr(e) for e in counts["examples"])
        detail = self.parser.describe()
        read_as = f"read as {self.kind}" + (f", {detail}" if detail else "")
        rewritten = counts["rewritten"]
        if rewritten:
            read_as += f"; {_n(rewritten, self.parser.rewrite_noun)}"
        lines = [self._record("type", rewritten, f"{read_as} ({self.kind_reason})")]
        optional = [  # (step, count, noun, what happens)
            ("trimmed", counts["trimmed"], "value{s}", "with surrounding spaces -> trimmed"),
            ("missing markers", counts["markers"], "missing marker{s}", "-> missing"),
            ("unparseable", counts["unparseable"], "value{s}",
             f"not readable as {self.kind} (e.g. {examples}) -> missing"),
            ("out of range", counts["out_of_range"], "value{s}",
             f"out of range {_bounds_text(self.valid_range)} -> {action}"),
            ("not allowed", counts["not_allowed"], "value{s}",
             "not in allowed_categories -> missing"),
            ("outliers", counts["outliers"], "outlier{s}",
             f"outside {_bounds_text(self.outlier_bounds)} ({self.outlier_method}, "
             f"threshold {self.outlier_threshold}) -> {action}"),
        ]
        lines += [self._record(step, n, f"{_n(n, noun)} {text}")
                  for step, n, noun, text in optional if n]
        if self.outlier_note:
            lines.append(self._record("outliers", 0, self.outlier_note))
        clipped = ("out of range", "outliers") if self.on_invalid == "clip" else ()
        self._sources = {step: n for step, n, _, _ in optional
                         if n and step != "trimmed" and step not in clipped}
        return lines

    def _imputation_record(self, strategy, n_missing: int) -> dict:
        sources = ", ".join(_n(n, _SOURCE_NOUNS[step]) for step, n in self._sources.items())
        found = _n(n_missing, "missing value{s}") + (f" ({sources})" if sources else "")
        if strategy is None:
            return self._record("imputed", 0, f"{found} -> left missing (imputation=None)")
        fill = _fill_text(bool(self.fill) if self.kind == "boolean" else self.fill)
        if n_missing == 0:
            return self._record("imputed", 0, f"no missing value in fit; any at transform -> "
                                              f"{strategy} {fill}")
        return self._record("imputed", n_missing, f"{found} -> {strategy} {fill}")


# -- helpers of the column step -------------------------------------------------------------


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


def _examples(parsed: pd.Series, values: pd.Series, n: int = 3) -> list:
    unread = values[values.notna() & parsed.isna()]
    return list(pd.unique(unread.to_numpy(dtype=object)))[:n]


def _imputer_input(kind: str, values: pd.Series) -> np.ndarray:
    if kind == "datetime":
        numbers_ = values.to_numpy("datetime64[ns]").astype("int64").astype("float64")
        numbers_[values.isna().to_numpy()] = np.nan
        return numbers_.reshape(-1, 1)
    if kind == "category":
        return values.astype(object).where(values.notna(), np.nan).to_numpy().reshape(-1, 1)
    return values.to_numpy(dtype="float64", na_value=np.nan).reshape(-1, 1)


def _fill_for_imputer(kind: str, fill_value):
    if fill_value is None:
        return None
    if kind == "datetime":
        return float(pd.Timestamp(fill_value).as_unit("ns").value)
    if kind == "boolean":
        return float(bool(fill_value))
    return fill_value


def _from_imputer(kind: str, statistic):
    if kind == "datetime":
        return pd.Timestamp(int(round(float(statistic))), unit="ns")
    if kind == "boolean":
        return float(statistic)
    if kind == "number":
        return float(statistic)
    return statistic


def _fill_text(fill) -> str:
    if isinstance(fill, Real) and not isinstance(fill, bool | np.bool_):
        return f"{float(fill):g}"
    return repr(fill) if isinstance(fill, str) else str(fill)


def _n(count: int, noun: str) -> str:
    """'1 value', '3 values': ``noun`` marks where the plural goes with ``{s}``."""
    return f"{count} " + noun.replace("{s}", "" if count == 1 else "s")


def _bounds_text(bounds) -> str:
    if bounds is None:
        return ""
    open_ends = {pd.Timestamp.min: "-inf", pd.Timestamp.max: "inf"}
    texts = [open_ends.get(b, None) if isinstance(b, pd.Timestamp) else None for b in bounds]
    low, high = (text or _fill_text(b) for text, b in zip(texts, bounds))
    return f"[{low}, {high}]"


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
