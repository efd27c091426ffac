"""Feature selection with one ``method`` parameter, so a search can choose the method itself.

Product decisions
-----------------
- Every method is sklearn's own machinery: ``SelectFromModel`` on a random forest ("model"),
  ``SelectKBest`` on a scoring function (chi2, ANOVA F, mutual information, correlation with the
  target), or ``SelectFromModel`` on those scores when a ``threshold`` is asked for. Only the
  removal of features correlated with each other ("collinearity") has no sklearn counterpart.
- ``k`` and ``threshold`` mean the same for every score-based method: keep at most ``k`` features,
  the best scored, among those scoring at least ``threshold`` (a number, or ``"mean"``,
  ``"median"``, ``"1.5*mean"`` as in ``SelectFromModel``). With neither, features scoring at least
  the mean are kept. A ``k`` larger than the number of features keeps them all (``k_`` says how
  many were asked for in effect), so one grid can serve inputs of different widths.
- Names of the selected features come from ``get_feature_names_out`` (``SelectorMixin``), never
  from ``X.columns[...]``; inside a Pipeline they follow the previous step's names.
"""

from __future__ import annotations

from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.feature_selection import (
    SelectFromModel,
    SelectKBest,
    SelectorMixin,
    chi2,
    f_classif,
    f_regression,
    mutual_info_classif,
    mutual_info_regression,
    r_regression,
)
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from skadapt.preprocessing._validation import check_numeric_frame, input_names, reject_sparse

__all__ = ["FeatureSelector"]

METHODS = ("model", "target_correlation", "collinearity", "chi2", "anova", "mutual_info")
_CLASSIFICATION_TARGETS = ("binary", "multiclass")


class FeatureSelector(SelectorMixin, BaseEstimator):
    """Select features by one of six methods, chosen by the ``method`` parameter.

    Parameters
    ----------
    method : {"model", "target_correlation", "collinearity", "chi2", "anova", "mutual_info"}, \
            default="model"
        - ``"model"``: importance in a random forest (or ``estimator``), via ``SelectFromModel``.
        - ``"target_correlation"``: absolute Pearson correlation with the target (for a
          multiclass target, the largest over one-vs-rest indicators).
        - ``"collinearity"``: drop features whose absolute correlation with an already kept
          feature exceeds ``threshold`` (default 0.9); features are considered from the most to
          the least correlated with the target, so of a correlated pair the more useful stays.
        - ``"chi2"``: chi-square statistic (classification; features must be non-negative, such
          as counts or one-hot columns).
        - ``"anova"``: ANOVA F statistic (``f_classif``; ``f_regression`` for a continuous
          target).
        - ``"mutual_info"``: mutual information with the target.
    k : int, default=None
        Keep at most ``k`` features, the best scored (for "collinearity": the ``k`` most
        correlated with the target among the decorrelated ones). ``None``: no limit.
    threshold : float or str, default=None
        Keep features scoring at least this: a number or ``"mean"``, ``"median"``,
        ``"1.25*mean"``... as in ``SelectFromModel``. ``None``: ``"mean"`` when ``k`` is None,
        no threshold otherwise. For "collinearity": the largest allowed absolute correlation
        between kept features (default 0.9).
    estimator : estimator, default=None
        For ``method="model"``: an estimator with ``feature_importances_`` or ``coef_`` after
        fit. ``None``: a 100-tree random forest (classifier or regressor, from the target).
    task : {"auto", "classification", "regression"}, default="auto"
        Which scoring functions and forest to use; ``"auto"`` reads it from ``y``.
    random_state : int, RandomState instance or None, default=None
        Seed of the random forest and of the mutual information estimate.

    Attributes
    ----------
    scores_ : ndarray of shape (n_features_in_,)
        The score of each input feature for the chosen method (importances for "model",
        absolute correlation with the target for "collinearity").
    selector_ : SelectFromModel, SelectKBest or None
        The fitted sklearn selector (None for "collinearity").
    support_ : ndarray of bool of shape (n_features_in_,)
        Which input features are kept.
    k_ : int or None
        ``k`` as applied (no larger than the number of features).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from skadapt.preprocessing import FeatureSelector
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(200, 4)), columns=["a", "b", "noise1", "noise2"])
    >>> y = (X["a"] + X["b"] > 0).astype(int)
    >>> selector = FeatureSelector(method="anova", k=2).fit(X, y)
    >>> selector.get_feature_names_out()
    array(['a', 'b'], dtype=object)
    """

    _parameter_constraints = {
        "method": [StrOptions(set(METHODS))],
        "k": [Interval(Integral, 1, None, closed="left"), None],
        "threshold": [Interval(Real, None, None, closed="neither"), str, None],
        "estimator": [HasMethods(["fit"]), None],
        "task": [StrOptions({"auto", "classification", "regression"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        method="model",
        *,
        k=None,
        threshold=None,
        estimator=None,
        task="auto",
        random_state=None,
    ):
        self.method = method
        self.k = k
        self.threshold = threshold
        self.estimator = estimator
        self.task = task
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Score the features and decide which to keep.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric features (encode categories first).
        y : array-like of shape (n_samples,)
            The target; optional only for ``method="collinearity"``.

        Returns
        -------
        self : FeatureSelector
        """
        reject_sparse(X, "FeatureSelector")
        check_numeric_frame(X, "FeatureSelector")
        if y is None and self.method != "collinearity":
            raise ValueError(
                f"FeatureSelector(method={self.method!r}) requires y to be passed, but the target "
                "y is None: pass y to fit, or use method='collinearity', which can run without it."
            )
        if y is None:
            X = validate_data(self, X, dtype=(np.float64, np.float32))
        else:
            X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        self.k_ = None if self.k is None else min(self.k, X.shape[1])
        if self.method == "collinearity":
            self.selector_ = None
            self.support_, self.scores_ = self._decorrelate(X, y)
            return self
        self.selector_ = self._make_selector(X, y).fit(X, y)
        self.support_ = self.selector_.get_support()
        self.scores_ = _scores_of(self.selector_)
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    # -- the methods -----------------------------------------------------------------------------

    def _task(self, y) -> str:
        if self.task != "auto":
            return self.task
        kind = type_of_target(y, input_name="y", raise_unknown=True)
        if kind in _CLASSIFICATION_TARGETS:
            return "classification"
        if kind in ("continuous", "continuous-multioutput"):
            return "regression"
        raise ValueError(
            f"FeatureSelector cannot tell the task from a {kind!r} target: pass "
            "task='classification' or task='regression'."
        )

    def _make_selector(self, X, y):
        task = self._task(y)
        if self.method == "model":
            return SelectFromModel(
                self._forest(task), threshold=self._threshold(), max_features=self.k_
            )
        score_func = self._score_function(task, X)
        if self.threshold is None and self.k_ is not None:
            return SelectKBest(score_func, k=self.k_)
        return SelectFromModel(
            _ScoreImportance(score_func), threshold=self._threshold(), max_features=self.k_
        )

    def _threshold(self):
        if self.threshold is not None:
            return self.threshold
        return -np.inf if self.k_ is not None else "mean"

    def _forest(self, task: str):
        if self.estimator is not None:
            return clone(self.estimator)
        forest = RandomForestClassifier if task == "classification" else RandomForestRegressor
        return forest(n_estimators=100, random_state=self.random_state)

    def _score_function(self, task: str, X):
        classification = task == "classification"
        if self.method == "chi2":
            if not classification:
                raise ValueError(
                    "method='chi2' needs a classification target; for a continuous target use "
                    "method='anova' or 'mutual_info'."
                )
            self._check_non_negative(X)
            return chi2
        if self.method == "anova":
            return f_classif if classification else f_regression
        if self.method == "mutual_info":
            score = mutual_info_classif if classification else mutual_info_regression
            return partial(score, random_state=self.random_state)
        return partial(_abs_target_correlation, classification=classification)

    def _check_non_negative(self, X) -> None:
        negative = np.flatnonzero((X < 0).any(axis=0))
        if negative.size:
            name = input_names(self, X.shape[1])[negative[0]]
            raise ValueError(
                f"method='chi2' needs non-negative features (counts, frequencies, one-hot), but "
                f"feature {name!r} has negative values: scale with MinMaxScaler instead of "
                "StandardScaler, or use method='anova'."
            )

    def _decorrelate(self, X, y):
        """Keep features in order of target correlation, skipping those too close to a kept one."""
        limit = 0.9 if self.threshold is None else self.threshold
        if isinstance(limit, str):
            raise ValueError(
                f"method='collinearity' takes a number as threshold (the largest allowed "
                f"absolute correlation between kept features), got {limit!r}."
            )
        n_features = X.shape[1]
        if y is None:
            relevance = np.zeros(n_features)
        else:
            relevance = _abs_target_correlation(X, y, self._task(y) == "classification")
        with np.errstate(divide="ignore", invalid="ignore"):
            between = np.abs(np.corrcoef(X, rowvar=False).reshape(n_features, n_features))
        between = np.nan_to_num(between, nan=0.0)  # a constant feature correlates with nothing
        kept = []
        for feature in np.argsort(-relevance, kind="stable"):
            if all(between[feature, other] <= limit for other in kept):
                kept.append(feature)
        kept = kept[: self.k_] if self.k_ is not None else kept
        support = np.zeros(n_features, dtype=bool)
        support[kept] = True
        return support, relevance


class _ScoreImportance(BaseEstimator):
    """A univariate scoring function seen as an estimator with ``feature_importances_``.

    It lets ``SelectFromModel`` apply its thresholds ("mean", "1.5*median", ...) and
    ``max_features`` to chi2, ANOVA, mutual information or correlation scores.
    """

    def __init__(self, score_func):
        self.score_func = score_func

    def fit(self, X, y):
        scores = self.score_func(X, y)
        scores = scores[0] if isinstance(scores, tuple) else scores
        self.feature_importances_ = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0)
        return self


def _abs_target_correlation(X, y, classification: bool) -> np.ndarray:
    """|Pearson r| of each feature with the target; for classes, the max over one-vs-rest."""
    if not classification:
        targets = np.asarray(y, dtype=float).reshape(-1, 1)
    else:
        classes, codes = np.unique(y, return_inverse=True)
        targets = np.eye(len(classes))[codes]
        targets = targets[:, 1:] if len(classes) == 2 else targets
    with np.errstate(divide="ignore", invalid="ignore"):
        correlations = [np.abs(r_regression(X, target)) for target in targets.T]
    return np.nan_to_num(np.max(correlations, axis=0), nan=0.0)


def _scores_of(selector) -> np.ndarray:
    if isinstance(selector, SelectKBest):
        return np.nan_to_num(np.asarray(selector.scores_, dtype=float), nan=0.0)
    estimator = selector.estimator_
    if hasattr(estimator, "feature_importances_"):
        return np.asarray(estimator.feature_importances_, dtype=float)
    return np.abs(np.atleast_2d(estimator.coef_)).sum(axis=0)
