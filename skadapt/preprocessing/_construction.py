"""Features for ordered data (time series): differences, lags and rolling-window statistics.

Product decisions
-----------------
- No look-ahead: the output at row ``t`` uses only rows ``<= t`` of the ``X`` passed in. Rows must
  be in time order (a DataFrame with a datetime index that goes back in time is refused).
- Stateless in time: ``fit`` learns only the columns; ``transform`` computes each block from its
  own rows. So nothing of a test fold can reach training, and a transformed training fold does
  not depend on what follows it. The price: the first rows of every block have no history.
- Those first rows are NaN (``n_history_`` of them at most): a lag of 3 has no value for rows
  0-2, a 7-row window none for rows 0-5. They are not dropped, because a transformer cannot
  change the number of rows; follow with a ``SimpleImputer`` or use a model that accepts NaN
  (``HistGradientBoostingRegressor``). See docs/preparing-data.md.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from skadapt.preprocessing._validation import (
    check_known_columns,
    check_numeric_frame,
    check_time_order,
    input_names,
    reject_sparse,
)

__all__ = ["Differencer", "LagFeatures"]

STATISTICS = ("mean", "std", "min", "max", "sum", "median")


class _OrderedTransformer(TransformerMixin, BaseEstimator):
    """Shared input handling: numeric, dense, finite or NaN, rows in time order."""

    def _validate(self, X, *, reset: bool) -> np.ndarray:
        name = type(self).__name__
        reject_sparse(X, name)
        check_numeric_frame(X, name)
        check_time_order(X, name)
        return validate_data(
            self, X, reset=reset, dtype=(np.float64, np.float32), ensure_all_finite="allow-nan"
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class Differencer(_OrderedTransformer):
    """Difference each column: ``order`` times with lag 1, then once with ``seasonal_lag``.

    ``order=1`` gives ``x[t] - x[t-1]``; ``order=2`` the difference of that; ``seasonal_lag=12``
    then gives ``d[t] - d[t-12]``. The first ``order + seasonal_lag`` rows have no history and
    are NaN (see the module notes: nothing is carried over from ``fit``).

    Parameters
    ----------
    order : int, default=1
        Number of lag-1 differences (``d``); 0 for none.
    seasonal_lag : int, default=None
        Lag of one extra seasonal difference (``s``), e.g. 7 for daily data with a weekly cycle.

    Attributes
    ----------
    n_history_ : int
        Rows at the start of each transformed block that are NaN: ``order + seasonal_lag``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from skadapt.preprocessing import Differencer
    >>> X = np.array([[1.0], [4.0], [9.0], [16.0]])
    >>> Differencer(order=1).fit_transform(X).ravel()
    array([nan,  3.,  5.,  7.])
    >>> Differencer(order=2).fit_transform(X).ravel()
    array([nan, nan,  2.,  2.])
    """

    _parameter_constraints = {
        "order": [Interval(Integral, 0, None, closed="left")],
        "seasonal_lag": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, order=1, seasonal_lag=None):
        self.order = order
        self.seasonal_lag = seasonal_lag

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the columns (nothing from the values: differencing needs no statistics).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric columns, rows in time order.
        y : None
            Ignored.

        Returns
        -------
        self : Differencer
        """
        if self.order == 0 and self.seasonal_lag is None:
            raise ValueError(
                "Differencer(order=0, seasonal_lag=None) would change nothing: set order >= 1 "
                "or a seasonal_lag."
            )
        self._validate(X, reset=True)
        self.n_history_ = self.order + (self.seasonal_lag or 0)
        return self

    def transform(self, X):
        """Difference each column; the first ``n_history_`` rows are NaN.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_diff : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self, "n_history_")
        values = pd.DataFrame(self._validate(X, reset=False))
        for _ in range(self.order):
            values = values - values.shift(1)
        if self.seasonal_lag:
            values = values - values.shift(self.seasonal_lag)
        return values.to_numpy()

    def get_feature_names_out(self, input_features=None):
        """``<column>_diff<order>``, with ``_sdiff<seasonal_lag>`` for the seasonal difference.

        Parameters
        ----------
        input_features : array-like of str, default=None

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self, "n_history_")
        names = _check_feature_names_in(self, input_features)
        suffix = (f"_diff{self.order}" if self.order else "") + (
            f"_sdiff{self.seasonal_lag}" if self.seasonal_lag else ""
        )
        return np.asarray([f"{name}{suffix}" for name in names], dtype=object)


class LagFeatures(_OrderedTransformer):
    """Add lagged values and trailing rolling-window statistics of columns.

    For row ``t``: ``<col>_lag<k>`` is the value at ``t - k``, and ``<col>_roll<w>_<stat>`` is
    the statistic of rows ``t - w + 1`` to ``t`` (the window ends at the current row; combine
    with a lag to end it earlier). Rows without full history are NaN.

    Parameters
    ----------
    lags : sequence of int, default=(1,)
        Lags to add, each >= 1.
    windows : sequence of int, default=()
        Rolling-window lengths, each >= 1.
    statistics : sequence of {"mean", "std", "min", "max", "sum", "median"}, default=("mean",)
        Statistics computed over each window.
    columns : list of str, default=None
        Columns to build features from; ``None``: all. (For arrays: ``"x0"``, ``"x1"``, ...)
    keep_original : bool, default=True
        Keep the input columns first in the output.

    Attributes
    ----------
    n_history_ : int
        Rows at the start of each transformed block with at least one NaN feature.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> import pandas as pd
    >>> from skadapt.preprocessing import LagFeatures
    >>> X = pd.DataFrame({"sales": [10.0, 12.0, 11.0, 15.0]})
    >>> lags = LagFeatures(lags=(1,), windows=(2,)).set_output(transform="pandas")
    >>> lags.fit_transform(X)
       sales  sales_lag1  sales_roll2_mean
    0   10.0         NaN               NaN
    1   12.0        10.0              11.0
    2   11.0        12.0              11.5
    3   15.0        11.0              13.0
    """

    _parameter_constraints = {
        "lags": [list, tuple],
        "windows": [list, tuple],
        "statistics": [list, tuple],
        "columns": [list, tuple, None],
        "keep_original": ["boolean"],
    }

    def __init__(
        self, lags=(1,), windows=(), statistics=("mean",), columns=None, keep_original=True
    ):
        self.lags = lags
        self.windows = windows
        self.statistics = statistics
        self.columns = columns
        self.keep_original = keep_original

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the columns (nothing from the values).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric columns, rows in time order.
        y : None
            Ignored.

        Returns
        -------
        self : LagFeatures
        """
        _check_positive_ints("lags", self.lags)
        _check_positive_ints("windows", self.windows)
        unknown = [s for s in self.statistics if s not in STATISTICS]
        if unknown:
            raise ValueError(f"statistics {unknown} are unknown; use some of {list(STATISTICS)}.")
        if not (self.lags or self.windows or self.keep_original):
            raise ValueError("LagFeatures with no lags, no windows and keep_original=False "
                             "would output nothing: add lags or windows.")
        if self.windows and not self.statistics:
            raise ValueError("windows need at least one statistic, e.g. statistics=('mean',).")
        X = self._validate(X, reset=True)
        names = input_names(self, X.shape[1])
        if self.columns is not None:
            check_known_columns("columns", self.columns, names)
        self.n_history_ = max([*self.lags, *(w - 1 for w in self.windows), 0])
        return self

    def transform(self, X):
        """Add the lag and window features; the first ``n_history_`` rows hold NaN.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_lags : ndarray of shape (n_samples, n_features_out)
        """
        check_is_fitted(self, "n_history_")
        X = self._validate(X, reset=False)
        frame = pd.DataFrame(X, columns=input_names(self, X.shape[1]))
        blocks = [frame] if self.keep_original else []
        source = frame[self._columns(frame.columns)]
        for lag in self.lags:
            blocks.append(source.shift(lag))
        for window in self.windows:
            rolling = source.rolling(window, min_periods=window)
            blocks += [getattr(rolling, stat)() for stat in self.statistics]
        return pd.concat(blocks, axis=1).to_numpy(dtype=X.dtype)

    def get_feature_names_out(self, input_features=None):
        """Input columns (if kept), then ``<col>_lag<k>``, then ``<col>_roll<w>_<stat>``.

        Parameters
        ----------
        input_features : array-like of str, default=None

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self, "n_history_")
        names = list(_check_feature_names_in(self, input_features))
        source = [n for n, own in zip(names, input_names(self, len(names)))
                  if own in self._columns(input_names(self, len(names)))]
        out = list(names) if self.keep_original else []
        out += [f"{name}_lag{lag}" for lag in self.lags for name in source]
        out += [f"{name}_roll{window}_{stat}" for window in self.windows
                for stat in self.statistics for name in source]
        return np.asarray(out, dtype=object)

    def _columns(self, names) -> list[str]:
        return list(names) if self.columns is None else [n for n in names if n in self.columns]


def _check_positive_ints(parameter: str, values) -> None:
    wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, Integral) or v < 1]
    if wrong:
        raise ValueError(f"{parameter} must be whole numbers >= 1, got {wrong}.")
