"""Missing values, a column's last cleaning step: imputed with a statistic learned in ``fit``.

Product decisions
-----------------
- sklearn's ``SimpleImputer`` learns the statistic, so ``"median"``, ``"mean"``,
  ``"most_frequent"`` and ``"constant"`` mean what they mean there; dates are imputed as numbers
  of nanoseconds and booleans as 0/1.
- Not every strategy fits every kind: booleans and categories take ``"most_frequent"`` or
  ``"constant"`` only. ``"auto"`` is the first that fits: median for numbers and dates, most
  frequent for booleans and categories.
- The record says where the missing values came from (markers, unparseable, wrong values), so a
  reader sees what the imputed values stand for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer

from skadapt.preprocessing._column_cleaner import count_text, value_text

__all__ = ["STRATEGIES", "Imputation", "imputation_strategy"]

STRATEGIES = ("median", "mean", "most_frequent", "constant")
# Which imputation strategies make sense for which kind; "auto" takes the first.
_STRATEGIES_BY_KIND = {
    "number": ("median", "mean", "most_frequent", "constant"),
    "datetime": ("median", "mean", "most_frequent", "constant"),
    "boolean": ("most_frequent", "constant"),
    "category": ("most_frequent", "constant"),
}


def imputation_strategy(name: str, kind: str, imputation) -> str | None:
    """The strategy for one column, from the ``imputation`` parameter; None leaves it missing.

    Raises a ValueError when the strategy does not apply to the column's kind.
    """
    strategy = imputation.get(name, "auto") if isinstance(imputation, dict) else imputation
    if strategy == "auto":
        strategy = _STRATEGIES_BY_KIND[kind][0]
    if strategy is not None and strategy not in _STRATEGIES_BY_KIND[kind]:
        raise ValueError(
            f"imputation {strategy!r} does not apply to column {name!r}, read as {kind}: "
            f"use one of {list(_STRATEGIES_BY_KIND[kind])} for it, e.g. "
            f"imputation={{{name!r}: {_STRATEGIES_BY_KIND[kind][0]!r}}}."
        )
    return strategy


class Imputation:
    """Fill a column's missing values with the value learned in ``fit``.

    Parameters
    ----------
    kind : {"number", "boolean", "datetime", "category"}
        The kind the column is read as.
    strategy : {"median", "mean", "most_frequent", "constant"} or None
        As in ``SimpleImputer``; None leaves missing values in place.
    fill_value : scalar, default=None
        The value for ``"constant"`` (None: ``SimpleImputer``'s default).
    """

    def __init__(self, kind: str, strategy: str | None, fill_value=None):
        self.kind = kind
        self.strategy = strategy
        self.fill_value = fill_value

    def fit(self, corrected: pd.Series, sources: list[tuple[int, str]]) -> Imputation:
        """Learn the fill value on the corrected column.

        ``sources`` are ``(count, noun)`` pairs saying where the missing values came from, for the
        record.
        """
        self.n_missing_ = int(corrected.isna().sum())
        self.sources_ = ", ".join(count_text(n, noun) for n, noun in sources if n)
        self.fill_ = None
        if self.strategy is not None:
            imputer = SimpleImputer(strategy=self.strategy,
                                    fill_value=_fill_for_imputer(self.kind, self.fill_value))
            imputer.fit(_imputer_input(self.kind, corrected))
            self.fill_ = _from_imputer(self.kind, imputer.statistics_[0])
        return self

    def transform(self, corrected: pd.Series) -> pd.Series:
        """Fill the missing values with the learned value."""
        if self.fill_ is not None and corrected.isna().any():
            return corrected.where(corrected.notna(), self.fill_)
        return corrected

    def records(self) -> list[tuple[str, int, str]]:
        """The ``imputed`` line: how many values were missing, from where, and what fills them."""
        found = count_text(self.n_missing_, "missing value{s}") + (
            f" ({self.sources_})" if self.sources_ else "")
        if self.strategy is None:
            return [("imputed", 0, f"{found} -> left missing (imputation=None)")]
        fill = value_text(bool(self.fill_) if self.kind == "boolean" else self.fill_)
        if self.n_missing_ == 0:
            return [("imputed", 0, f"no missing value in fit; any at transform -> "
                                   f"{self.strategy} {fill}")]
        return [("imputed", self.n_missing_, f"{found} -> {self.strategy} {fill}")]


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
    if kind in ("number", "boolean"):
        return float(statistic)
    if kind == "datetime":
        return pd.Timestamp(int(round(float(statistic))), unit="ns")
    return statistic
