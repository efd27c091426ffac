"""Input checks shared by the preprocessing transformers: errors that name the column and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "check_known_columns",
    "check_numeric_frame",
    "check_time_order",
    "input_names",
    "reject_sparse",
]


def input_names(estimator, n_features: int) -> list[str]:
    """The fitted input names: ``feature_names_in_``, or ``x0, x1, ...`` as sklearn generates."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return [str(name) for name in names]
    return [f"x{i}" for i in range(n_features)]


def reject_sparse(X, estimator_name: str) -> None:
    """Raise a TypeError for sparse input, which these transformers do not support."""
    if sp.issparse(X):
        raise TypeError(
            f"{estimator_name} needs dense data, but got a sparse matrix: pass X.toarray() "
            "or a pandas DataFrame instead."
        )


def check_known_columns(parameter: str, named: Iterable, columns: Iterable[str]) -> None:
    """Raise a ValueError when a parameter names columns that X does not have."""
    columns = list(columns)
    unknown = [name for name in named if name not in columns]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), [str(c) for c in columns], n=1)
        hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    raise ValueError(
        f"{parameter} names column(s) {', '.join(hints)} that X does not have. "
        f"X's columns are {columns}; fix the name or remove the entry. (For a numpy array, "
        "columns are named 'x0', 'x1', ... by position.)"
    )


def check_numeric_frame(X, estimator_name: str) -> None:
    """Raise a TypeError naming the DataFrame columns that are not numeric."""
    if not isinstance(X, pd.DataFrame):
        return
    wrong = {
        str(name): str(dtype)
        for name, dtype in X.dtypes.items()
        if not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype))
    }
    if wrong:
        listing = ", ".join(f"{name!r} ({dtype})" for name, dtype in wrong.items())
        raise TypeError(
            f"{estimator_name} needs numeric columns, but column(s) {listing} are not: encode them "
            "first (e.g. DataCleaner, then OneHotEncoder in a ColumnTransformer) or leave them out."
        )


def check_time_order(X, estimator_name: str) -> None:
    """Raise a ValueError when a DataFrame's datetime index is not in increasing time order."""
    if not isinstance(X, pd.DataFrame):
        return
    if isinstance(X.index, pd.DatetimeIndex | pd.PeriodIndex) and not X.index.is_monotonic_increasing:
        position = int(np.argmax(np.diff(X.index.asi8) < 0)) + 1
        raise ValueError(
            f"{estimator_name} reads rows in time order, but the index goes back in time at row "
            f"{position} ({X.index[position]}): sort the rows first, e.g. X.sort_index()."
        )
