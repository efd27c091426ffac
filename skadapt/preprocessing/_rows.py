"""Rows that should not be learned from: exact duplicates, and a missing or invalid target.

A sklearn transformer cannot change the number of rows, and rows must never be dropped at predict
time (each needs a prediction). So row removal lives apart from the column cleaning:
:func:`clean_rows` returns the kept ``X, y`` and a record of what was removed and why, for use
before a Pipeline; :class:`RowCleaner` does the same as an imbalanced-learn sampler
(``fit_resample``), which imbalanced-learn's Pipeline applies during ``fit`` only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, _fit_context

from skadapt.preprocessing._parsing import mark_missing
from skadapt.preprocessing._validation import reject_sparse

__all__ = ["RowCleaner", "clean_rows", "rows_record"]


def clean_rows(
    X,
    y,
    *,
    drop_duplicates: bool = True,
    valid_target=None,
    missing_markers: Sequence[str] | None = None,
):
    """Remove duplicate rows and rows with a missing or invalid target, keeping ``X`` and ``y``
    aligned.

    A sklearn transformer cannot change the number of rows, so this runs before the Pipeline
    (or as :class:`RowCleaner` in an imbalanced-learn Pipeline, during ``fit`` only). Never
    call it on data to predict: every row there needs a prediction.

    Parameters
    ----------
    X : pandas.DataFrame or array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    drop_duplicates : bool, default=True
        Remove rows identical to an earlier row in features and target. Text is compared with
        surrounding spaces trimmed and missing-value markers unified (``"n/a"`` equals ``"NA"``).
    valid_target : (low, high) tuple or list, default=None
        Also remove rows whose target is outside this range (bounds included) or not in this list.
    missing_markers : list of str, default=None
        Extra strings that mean a missing target, beyond the built-in markers.

    Returns
    -------
    X_kept : pandas.DataFrame or ndarray
        The kept rows, in their order (a DataFrame keeps its index).
    y_kept : pandas.Series or ndarray
        The kept targets (a Series keeps its index).
    removed : pandas.DataFrame
        One row per removed row: ``row`` (index label, or position for arrays) and ``reason``.

    Examples
    --------
    >>> import pandas as pd
    >>> from skadapt.preprocessing import clean_rows
    >>> X = pd.DataFrame({"a": [1, 1, 2, 3], "b": ["x", "x ", "y", "z"]})
    >>> y = pd.Series(["cat", "cat", "n/a", "dog"])
    >>> X_kept, y_kept, removed = clean_rows(X, y)
    >>> list(y_kept)
    ['cat', 'dog']
    >>> removed
       row          reason
    0    1  duplicate of 0
    1    2  missing target
    """
    reject_sparse(X, "clean_rows")
    if not isinstance(X, pd.DataFrame) and np.ndim(X) != 2:
        raise ValueError(f"clean_rows needs a 2-D X, got shape {np.shape(X)}.")
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
    # a list keeps its element types (np.asarray would turn [1.0, "?"] into strings)
    y_values = y.to_numpy() if isinstance(y, pd.Series) else (
        y if isinstance(y, np.ndarray) else pd.Series(list(y)).to_numpy())
    if y_values.ndim != 1 or len(y_values) != len(frame):
        raise ValueError(
            f"X has {len(frame)} rows but y has shape {np.shape(y)}: pass one target per row."
        )
    target = pd.Series(y_values.astype(object), index=frame.index)
    target = mark_missing(target, missing_markers or ())[0]
    reasons = _target_problems(target, valid_target)
    if drop_duplicates:
        reasons = reasons.fillna(_duplicates(frame, target, reasons.notna(), missing_markers))
    keep = reasons.isna().to_numpy()
    labels = frame.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(frame))
    removed = pd.DataFrame(
        {"row": labels[~keep], "reason": reasons[~keep].to_numpy()}
    )
    X_kept = X.loc[keep] if isinstance(X, pd.DataFrame) else np.asarray(X)[keep]
    y_kept = y.loc[keep] if isinstance(y, pd.Series) else y_values[keep]
    return X_kept, y_kept, removed


def _target_problems(target: pd.Series, valid_target) -> pd.Series:
    reasons = pd.Series(None, index=target.index, dtype=object)
    reasons[target.isna()] = "missing target"
    numbers_ = pd.to_numeric(target, errors="coerce")
    infinite = numbers_.isin([np.inf, -np.inf])
    reasons[infinite & reasons.isna()] = "target is inf"
    if valid_target is None:
        return reasons
    unchecked = reasons.isna()
    if isinstance(valid_target, tuple):
        if len(valid_target) != 2:
            raise ValueError(f"valid_target must be a (low, high) pair, got {valid_target!r}.")
        low = -np.inf if valid_target[0] is None else valid_target[0]
        high = np.inf if valid_target[1] is None else valid_target[1]
        wrong = unchecked & ~((numbers_ >= low) & (numbers_ <= high))
        reasons[wrong] = [f"target {v!r} outside [{low}, {high}]" for v in target[wrong]]
    elif isinstance(valid_target, list):
        wrong = unchecked & ~target.isin(valid_target)
        reasons[wrong] = [f"target {v!r} not in valid_target" for v in target[wrong]]
    else:
        raise TypeError(
            f"valid_target must be a (low, high) tuple or a list of labels, got {valid_target!r}."
        )
    return reasons


def _duplicates(frame, target, already_removed, markers) -> pd.Series:
    """'duplicate of <first row>' for rows equal to an earlier kept row, None elsewhere."""
    keys = pd.DataFrame(
        {i: mark_missing(frame.iloc[:, i], markers or ())[0].to_numpy() for i in
         range(frame.shape[1])}
    )
    keys["__target__"] = target.to_numpy()
    keys.index = frame.index
    kept = keys[~already_removed.to_numpy()]
    group = kept.groupby(list(kept.columns), dropna=False, sort=False).ngroup()
    first = group.reset_index().drop_duplicates(0).set_index(0).iloc[:, 0]
    duplicated = kept.duplicated(keep="first")
    reasons = pd.Series(None, index=frame.index, dtype=object)
    reasons[duplicated[duplicated].index] = [
        f"duplicate of {_plain(first[g])!r}" for g in group[duplicated]
    ]
    return reasons


def _plain(label):
    """A numpy scalar as the Python value it holds, so messages read 'row 3', not 'np.int64(3)'."""
    return label.item() if isinstance(label, np.generic) else label


def rows_record(removed: pd.DataFrame) -> pd.DataFrame:
    """One line for a cleaner's ``report_``: how many rows were removed, by reason."""
    if removed.empty:
        message = "rows: no row removed"
    else:
        kinds = removed["reason"].str.replace(r" of .*| .*outside.*| .*not in.*", "", regex=True)
        summary = ", ".join(f"{n} {kind}" for kind, n in kinds.value_counts().items())
        message = f"rows: {len(removed)} removed ({summary})"
    return pd.DataFrame(
        [{"column": None, "step": "rows removed", "count": len(removed), "message": message}]
    )


class RowCleaner(BaseEstimator):
    """Remove duplicate rows and rows with a missing or invalid target: an imbalanced-learn sampler.

    In an ``imblearn.pipeline.Pipeline``, ``fit_resample`` runs during ``fit`` only, so rows are
    removed from the training data and never at predict time. Put it before a
    :class:`DataCleaner`. Outside a Pipeline, :func:`clean_rows` does the same.

    Parameters
    ----------
    drop_duplicates : bool, default=True
        Remove rows identical to an earlier row in features and target.
    valid_target : (low, high) tuple or list, default=None
        Also remove rows whose target is outside this range or not in this list.
    missing_markers : list of str, default=None
        Extra strings that mean a missing target.

    Attributes
    ----------
    removed_rows_ : pandas.DataFrame
        The rows removed by the last ``fit_resample`` and why.

    Examples
    --------
    >>> import numpy as np
    >>> from skadapt.preprocessing import RowCleaner
    >>> X = np.array([[1, 2], [1, 2], [3, 4]])
    >>> X_kept, y_kept = RowCleaner().fit_resample(X, np.array([0, 0, 1]))
    >>> X_kept.shape, y_kept.tolist()
    ((2, 2), [0, 1])
    """

    _parameter_constraints = {
        "drop_duplicates": ["boolean"],
        "valid_target": [tuple, list, None],
        "missing_markers": [list, tuple, None],
    }

    def __init__(self, *, drop_duplicates=True, valid_target=None, missing_markers=None):
        self.drop_duplicates = drop_duplicates
        self.valid_target = valid_target
        self.missing_markers = missing_markers

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_resample(self, X, y):
        """Return the kept rows of ``X`` and ``y``; record the removed ones in ``removed_rows_``.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        X_kept, y_kept
            The kept rows, aligned (DataFrame and Series keep their index).
        """
        X_kept, y_kept, self.removed_rows_ = clean_rows(
            X,
            y,
            drop_duplicates=self.drop_duplicates,
            valid_target=self.valid_target,
            missing_markers=self.missing_markers,
        )
        return X_kept, y_kept

    def fit(self, X, y):
        """Find the rows to remove (as ``fit_resample``, returning ``self``)."""
        self.fit_resample(X, y)
        return self
