"""A three-way train/validation/test split that keeps classes, groups or time order intact.

The split is two of sklearn's own single splits in a row: first the test part is taken from all the
data, then the validation part from what is left. Sizes are turned into absolute counts first, so
``val_size`` and ``test_size`` both refer to the whole data set, as in the seed's 70/15/15.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils import _safe_indexing, check_consistent_length, check_random_state
from sklearn.utils.multiclass import type_of_target

_CLASS_TARGETS = ("binary", "multiclass")


def train_val_test_split(
    X: Any,
    y: Any = None,
    *,
    val_size: float | int = 0.15,
    test_size: float | int = 0.15,
    stratify: bool | str | Sequence | np.ndarray = "auto",
    groups: str | Sequence | np.ndarray | None = None,
    order: str | bool | Sequence | np.ndarray | None = None,
    gap: int = 0,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Split data into train, validation and test parts with no leakage between them.

    Three modes, one per kind of data:

    - **random** (the default): shuffled; class proportions are kept in every part when ``y``
      holds class labels (``stratify="auto"``).
    - **grouped** (``groups=...``): every group (a patient, a photographer, a site) falls in one
      part only. As in sklearn's ``GroupShuffleSplit``, sizes then count groups, not samples.
    - **ordered** (``order=...``): never shuffled; train comes before validation, validation before
      test, with ``gap`` samples dropped at each boundary. Samples sharing one ``order`` value are
      never cut apart: a boundary moves forward past them.

    Parameters
    ----------
    X : array-like, list of paths or texts, or DataFrame
        The samples. Each part keeps the type of ``X`` (a list stays a list, a DataFrame keeps its
        index and columns).
    y : array-like or None
        The targets; ``None`` returns ``None`` for the three target parts.
    val_size, test_size : float or int, default=0.15
        A fraction of the whole data (``0 < size < 1``) or a number of samples (of groups with
        ``groups``). The train part is what is left.
    stratify : "auto", bool or array-like, default="auto"
        ``"auto"`` stratifies on ``y`` when it holds class labels and neither ``groups`` nor
        ``order`` is given; ``True`` requires it; ``False`` turns it off; an array stratifies on
        those labels instead of ``y``.
    groups : str or array-like, optional
        One group label per sample, or the name of a column of the DataFrame ``X``.
    order : str, True or array-like, optional
        One sortable key (a time stamp, a date, an index) per sample, or the name of a column of
        the DataFrame ``X``; ``True`` means the rows are already in order.
    gap : int, default=0
        With ``order``, the number of samples dropped between train and validation and between
        validation and test, so that features looking back in time cannot see across a boundary.
    random_state : int, RandomState or None
        Seeds the shuffling (random and grouped modes).

    Returns
    -------
    X_train, X_val, X_test, y_train, y_val, y_test

    Raises
    ------
    ValueError
        When the request cannot be met: sizes that leave no training data, a class with too few
        members to appear in all three parts, fewer groups than parts, conflicting options.

    Examples
    --------
    >>> import numpy as np
    >>> from skadapt.model_selection import train_val_test_split
    >>> X, y = np.arange(40).reshape(20, 2), np.array([0, 1] * 10)
    >>> X_train, X_val, X_test, y_train, y_val, y_test = train_val_test_split(
    ...     X, y, val_size=0.2, test_size=0.2, random_state=0)
    >>> len(X_train), len(X_val), len(X_test), int(y_test.sum())
    (12, 4, 4, 2)
    """
    n_samples = _n_samples(X)
    if y is not None:
        check_consistent_length(X, y)
    _check_gap(gap, order)
    groups = _resolve_column(X, groups, "groups")
    order = _resolve_column(X, order, "order")
    strata = _resolve_strata(y, stratify, groups, order)

    if order is not None:
        train, val, test = _ordered_indices(n_samples, order, val_size, test_size, gap)
    elif groups is not None:
        train, val, test = _grouped_indices(groups, val_size, test_size, random_state)
    else:
        train, val, test = _random_indices(n_samples, strata, val_size, test_size, random_state)

    X_parts = [_safe_indexing(X, part) for part in (train, val, test)]
    y_parts = [None if y is None else _safe_indexing(y, part) for part in (train, val, test)]
    return (*X_parts, *y_parts)


def _n_samples(X) -> int:
    if isinstance(X, str) or not hasattr(X, "__len__"):
        raise TypeError(
            f"X must be an array, a list or a DataFrame of samples, got {type(X).__name__}."
        )
    return len(X)


def _check_gap(gap, order) -> None:
    if not isinstance(gap, numbers.Integral) or gap < 0:
        raise ValueError(f"gap must be a non-negative integer, got {gap!r}.")
    if gap and order is None:
        raise ValueError(
            f"gap={gap} only applies to ordered data: pass order=... as well, or gap=0."
        )


def _resolve_column(X, values, name: str):
    """A column name of a DataFrame ``X`` stands for that column's values."""
    if values is None:
        return None
    if name == "order" and values is True:
        return np.arange(len(X))
    if values is False or values is True:
        hint = (
            "pass None to leave it out" if values is False else f"pass one {name} value per sample"
        )
        raise ValueError(f"{name}={values!r} is not a valid value: {hint}.")
    if isinstance(values, str):
        if not isinstance(X, pd.DataFrame):
            raise ValueError(
                f"{name}={values!r} names a column, but X is a {type(X).__name__}, not a "
                f"DataFrame: pass one {name} value per sample instead."
            )
        if values not in X.columns:
            raise ValueError(
                f"{name}={values!r} is not a column of X; its columns are {list(X.columns)}."
            )
        values = X[values]
    values = np.asarray(values)
    if values.ndim != 1 or len(values) != len(X):
        raise ValueError(
            f"{name} must hold one value per sample ({len(X)}), got shape {values.shape}."
        )
    if pd.isna(values).any():
        raise ValueError(f"{name} has missing values: every sample needs a {name} value.")
    return values


def _resolve_strata(y, stratify, groups, order):
    """The labels to stratify on, or None."""
    ordered_or_grouped = "order" if order is not None else "groups" if groups is not None else None
    if isinstance(stratify, str):
        if stratify != "auto":
            raise ValueError(f"stratify must be 'auto', True, False or an array, got {stratify!r}.")
        if ordered_or_grouped or y is None:
            return None
        return np.asarray(y) if type_of_target(y) in _CLASS_TARGETS else None
    if stratify is False or stratify is None:
        return None
    if ordered_or_grouped:
        raise ValueError(
            f"stratify cannot be combined with {ordered_or_grouped}=...: "
            + (
                "ordered data is never shuffled. "
                if order is not None
                else "use sklearn's StratifiedGroupKFold for stratified groups. "
            )
            + "Pass stratify='auto' or False."
        )
    if stratify is True:
        if y is None or type_of_target(y) not in _CLASS_TARGETS:
            kind = "no y" if y is None else f"a {type_of_target(y)} y"
            raise ValueError(
                f"stratify=True needs class labels in y, got {kind}: pass stratify=False."
            )
        return np.asarray(y)
    return np.asarray(stratify)


def _absolute_sizes(n: int, val_size, test_size, unit: str) -> tuple[int, int]:
    """``val_size`` and ``test_size`` as counts of ``n`` units, leaving some to train on."""
    counts = [
        _count(n, size, name, unit)
        for name, size in (("val_size", val_size), ("test_size", test_size))
    ]
    if sum(counts) >= n:
        raise ValueError(
            f"val_size={val_size!r} and test_size={test_size!r} take {counts[0]} + {counts[1]} of "
            f"the {n} {unit}, leaving none to train on: make them smaller."
        )
    return counts[0], counts[1]


def _count(n: int, size, name: str, unit: str) -> int:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        if not 1 <= size < n:
            raise ValueError(
                f"{name}={size} must be between 1 and {n - 1} ({unit}), or a fraction."
            )
        return int(size)
    if isinstance(size, numbers.Real) and 0 < size < 1:
        # ceil, as sklearn does for test sizes, so a small part is never rounded away to nothing
        return math.ceil(size * n)
    raise ValueError(
        f"{name} must be a fraction between 0 and 1 or a number of {unit}, got {size!r}."
    )


def _random_indices(n, strata, val_size, test_size, random_state):
    n_val, n_test = _absolute_sizes(n, val_size, test_size, "samples")
    if strata is not None:
        _check_strata(strata, n_val, n_test)
        splitter = StratifiedShuffleSplit
    else:
        splitter = ShuffleSplit
    rng = check_random_state(random_state)
    try:
        rest, test = next(
            splitter(1, test_size=n_test, random_state=rng).split(np.arange(n), strata)
        )
        rest_strata = None if strata is None else strata[rest]
        train, val = next(splitter(1, test_size=n_val, random_state=rng).split(rest, rest_strata))
    except ValueError as error:
        # sklearn's message names the class counts; say which option gets around it
        raise ValueError(
            f"Cannot stratify this split: {error} Pass stratify=False, or merge rare classes."
        ) from error
    return rest[train], rest[val], test


def _check_strata(strata, n_val: int, n_test: int) -> None:
    if len(strata) and pd.isna(strata).any():
        raise ValueError("The labels to stratify on have missing values: drop those samples first.")
    classes, counts = np.unique(strata, return_counts=True)
    rare = [(label, count) for label, count in zip(classes.tolist(), counts.tolist()) if count < 3]
    if rare:
        examples = ", ".join(f"{label!r} ({count})" for label, count in rare[:5])
        raise ValueError(
            f"Cannot stratify: every class needs at least 3 samples, one per part, but "
            f"{len(rare)} class(es) have fewer: {examples}. Merge or drop rare classes, or pass "
            "stratify=False."
        )
    smallest = min(n_val, n_test)
    if smallest < len(classes):
        raise ValueError(
            f"Cannot stratify {len(classes)} classes into a part of {smallest} samples: every "
            "class needs a place in each part. Make val_size and test_size larger, or pass "
            "stratify=False."
        )


def _grouped_indices(groups, val_size, test_size, random_state):
    unique_groups = np.unique(groups)
    if len(unique_groups) < 3:
        raise ValueError(
            f"A grouped split needs at least 3 distinct groups, one per part, but groups has "
            f"{len(unique_groups)}: {unique_groups.tolist()}."
        )
    n_val, n_test = _absolute_sizes(len(unique_groups), val_size, test_size, "groups")
    rng = check_random_state(random_state)
    positions = np.arange(len(groups))
    rest, test = next(
        GroupShuffleSplit(1, test_size=n_test, random_state=rng).split(positions, groups=groups)
    )
    train, val = next(
        GroupShuffleSplit(1, test_size=n_val, random_state=rng).split(rest, groups=groups[rest])
    )
    return rest[train], rest[val], test


def _ordered_indices(n, order, val_size, test_size, gap):
    n_val, n_test = _absolute_sizes(n, val_size, test_size, "samples")
    n_train = n - n_val - n_test - 2 * gap
    if n_train < 1:
        raise ValueError(
            f"gap={gap} drops {2 * gap} samples and the validation and test parts take "
            f"{n_val + n_test} of {n}: none is left to train on. Make gap or the sizes smaller."
        )
    try:
        sorted_positions = np.argsort(order, kind="stable")
    except TypeError as error:
        raise TypeError(
            f"order values cannot be sorted: {error}. Pass numbers, dates or strings."
        ) from error
    keys = np.asarray(order)[sorted_positions]

    train_end = _past_ties(keys, n_train)
    val_start = train_end + gap
    val_end = _past_ties(keys, min(val_start + n_val, n))
    test_start = val_end + gap
    parts = (
        sorted_positions[:train_end],
        sorted_positions[val_start:val_end],
        sorted_positions[test_start:],
    )
    empty = [name for name, part in zip(("validation", "test"), parts[1:]) if len(part) == 0]
    if empty:
        raise ValueError(
            f"The {' and '.join(empty)} part(s) came out empty: many samples share the order value "
            f"at a boundary, and one order value is never cut apart. Make val_size and test_size "
            "larger, or gap smaller."
        )
    return parts


def _past_ties(keys: np.ndarray, boundary: int) -> int:
    """Move ``boundary`` forward past samples equal to the last one before it."""
    if boundary <= 0 or boundary >= len(keys):
        return boundary
    return int(np.searchsorted(keys, keys[boundary - 1], side="right"))
