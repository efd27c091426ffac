"""Differencer and LagFeatures: right values, no look-ahead, no leak across TimeSeriesSplit folds."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.model_selection import TimeSeriesSplit, cross_validate
from sklearn.pipeline import make_pipeline

from skadapt.preprocessing import Differencer, LagFeatures


def _series(n=60, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    index = pd.date_range("2024-01-01", periods=n, freq="D")
    return pd.DataFrame({"sales": 10 + 0.5 * t + 3 * np.sin(t / 3) + rng.normal(0, 0.5, n),
                         "price": rng.normal(5, 1, n)}, index=index)


def test_differencer_values_and_history():
    X = np.array([[1.0], [4.0], [9.0], [16.0], [25.0]])
    np.testing.assert_allclose(Differencer(order=1).fit_transform(X).ravel(),
                               [np.nan, 3, 5, 7, 9])
    np.testing.assert_allclose(Differencer(order=2).fit_transform(X).ravel(),
                               [np.nan, np.nan, 2, 2, 2])
    seasonal = Differencer(order=0, seasonal_lag=2).fit(X)
    np.testing.assert_allclose(seasonal.transform(X).ravel(), [np.nan, np.nan, 8, 12, 16])
    assert Differencer(order=1, seasonal_lag=7).fit(X).n_history_ == 8


def test_differencer_names_and_pandas_output():
    X = _series()
    out = Differencer(order=1, seasonal_lag=7).set_output(transform="pandas").fit_transform(X)
    assert list(out.columns) == ["sales_diff1_sdiff7", "price_diff1_sdiff7"]
    assert out.index.equals(X.index)
    expected = X["sales"].diff().diff(7)
    np.testing.assert_allclose(out["sales_diff1_sdiff7"], expected)


def test_lag_features_match_pandas_shift_and_trailing_rolling():
    X = _series()
    lags = LagFeatures(lags=(1, 3), windows=(4,), statistics=("mean", "max"), columns=["sales"])
    out = lags.set_output(transform="pandas").fit_transform(X)
    assert list(out.columns) == ["sales", "price", "sales_lag1", "sales_lag3",
                                 "sales_roll4_mean", "sales_roll4_max"]
    np.testing.assert_allclose(out["sales_lag3"], X["sales"].shift(3))
    np.testing.assert_allclose(out["sales_roll4_max"], X["sales"].rolling(4).max())
    assert lags.n_history_ == 3
    assert out.iloc[:3].isna().any(axis=1).all() and not out.iloc[3:].isna().any().any()


def test_keep_original_false_and_float32_kept():
    X = np.arange(10, dtype=np.float32).reshape(5, 2)
    out = LagFeatures(lags=(2,), keep_original=False).fit_transform(X)
    assert out.dtype == np.float32 and out.shape == (5, 2)
    np.testing.assert_allclose(out[2:], X[:3])


@pytest.mark.parametrize(
    "transformer",
    [Differencer(order=1, seasonal_lag=3), LagFeatures(lags=(1, 2), windows=(5,),
                                                        statistics=("mean", "std"))],
)
def test_no_look_ahead_row_t_uses_only_rows_up_to_t(transformer):
    X = _series()
    full = transformer.fit(X).transform(X)
    for t in range(len(X)):
        np.testing.assert_allclose(transformer.transform(X.iloc[: t + 1])[-1], full[t])
    poisoned = X.copy()
    poisoned.iloc[40:] = 1e9  # changing the future does not change the past
    np.testing.assert_allclose(transformer.transform(poisoned)[:40], full[:40])


class _CenteredMean(TransformerMixin, BaseEstimator):
    """A leaky feature, for contrast: a centred window reads the rows after t."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return pd.DataFrame(X).rolling(5, center=True, min_periods=1).mean().to_numpy()


def _fold_coefficients(X, y, train, test):
    pipe = make_pipeline(LagFeatures(lags=(1, 2), windows=(3,)), SimpleImputer(), Ridge())
    result = cross_validate(pipe, X, y, cv=[(train, test)], return_estimator=True)
    return result["estimator"][0][-1].coef_, result["test_score"][0]


def test_nothing_from_a_test_fold_leaks_into_training_in_cross_validate():
    X = _series(90)
    y = X["sales"].shift(-1).ffill().to_numpy()  # tomorrow's sales
    for train, test in TimeSeriesSplit(n_splits=4).split(X):
        poisoned = X.copy()
        poisoned.iloc[test] *= 1000  # whatever the test fold holds...
        clean_coef, clean_score = _fold_coefficients(X, y, train, test)
        poisoned_coef, poisoned_score = _fold_coefficients(poisoned, y, train, test)
        np.testing.assert_array_equal(clean_coef, poisoned_coef)  # ...training is the same
        assert poisoned_score != pytest.approx(clean_score)  # (the poison did reach the test)


@pytest.mark.parametrize(("transformer", "leaks"), [(LagFeatures(lags=(1,), windows=(5,)), False),
                                                   (_CenteredMean(), True)])
def test_features_computed_before_splitting_leak_only_if_they_look_ahead(transformer, leaks):
    X = _series(90)
    for train, test in TimeSeriesSplit(n_splits=4).split(X):
        poisoned = X.copy()
        poisoned.iloc[test] *= 1000
        clean = transformer.fit(X).transform(X)[train]
        after_poison = transformer.fit(poisoned).transform(poisoned)[train]
        assert np.allclose(clean, after_poison, equal_nan=True) != leaks


def test_rows_out_of_time_order_are_refused():
    X = _series().iloc[::-1]
    with pytest.raises(ValueError, match="goes back in time.*sort_index"):
        LagFeatures().fit(X)


def test_text_columns_and_unknown_columns_are_named():
    X = _series().assign(shop=["a", "b"] * 30)
    with pytest.raises(TypeError, match="'shop' \\(str\\)"):
        Differencer().fit(X)
    with pytest.raises(ValueError, match="'sale' \\(did you mean 'sales'\\?\\)"):
        LagFeatures(columns=["sale"]).fit(_series())


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"lags": (0,)}, "lags must be whole numbers >= 1"),
        ({"statistics": ("mode",)}, "statistics \\['mode'\\] are unknown"),
        ({"lags": (), "keep_original": False}, "would output nothing"),
    ],
)
def test_bad_lag_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        LagFeatures(**params).fit(_series())


def test_differencer_that_changes_nothing_is_refused():
    with pytest.raises(ValueError, match="would change nothing"):
        Differencer(order=0).fit(_series())
