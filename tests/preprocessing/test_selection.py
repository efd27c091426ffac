"""FeatureSelector: each method finds the informative features; names come out right."""

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_selection import SelectFromModel, SelectKBest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from skadapt.preprocessing import FeatureSelector


def _classification(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=["a", "b", "n1", "n2", "n3", "n4"])
    y = np.where(2 * X["a"] - 1.5 * X["b"] + rng.normal(0, 0.3, n) > 0, "yes", "no")
    return X, y


def _regression(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=["a", "b", "n1", "n2", "n3"])
    return X, 3 * X["a"] - 2 * X["b"] + rng.normal(0, 0.3, n)


FAST_FOREST = {"random_state": 0}


@pytest.mark.parametrize("method", ["model", "target_correlation", "anova", "mutual_info"])
@pytest.mark.parametrize("data", [_classification, _regression])
def test_each_method_keeps_the_two_informative_features(method, data):
    X, y = data()
    selector = FeatureSelector(method, k=2, random_state=0).fit(X, y)
    assert sorted(selector.get_feature_names_out()) == ["a", "b"]
    assert selector.transform(X).shape == (len(X), 2)


def test_chi2_on_non_negative_features():
    X, y = _classification()
    X = pd.DataFrame(MinMaxScaler().fit_transform(X), columns=X.columns)
    assert sorted(FeatureSelector("chi2", k=2).fit(X, y).get_feature_names_out()) == ["a", "b"]


def test_multiclass_target_correlation_uses_one_vs_rest():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = np.select([X[:, 1] < -0.5, X[:, 1] > 0.5], ["low", "high"], "mid")
    assert FeatureSelector("target_correlation", k=1).fit(X, y).get_feature_names_out() == ["x1"]


def test_collinearity_keeps_the_more_useful_of_a_correlated_pair():
    X, y = _classification()
    rng = np.random.default_rng(1)
    X["a_twin"] = X["a"] + rng.normal(0, 0.3, len(X))  # r ~ 0.96 with a, noisier: less useful
    selector = FeatureSelector("collinearity").fit(X, y)
    names = list(selector.get_feature_names_out())
    assert "a" in names and "a_twin" not in names and len(names) == X.shape[1] - 1
    assert FeatureSelector("collinearity", k=2).fit(X, y).get_feature_names_out().tolist() == [
        "a", "b"
    ]


def test_collinearity_runs_without_a_target():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "twice_a": [2.0, 4.0, 6.0, 8.0],
                      "c": [1.0, -1.0, 1.0, -1.0]})
    assert FeatureSelector("collinearity").fit(X).get_feature_names_out().tolist() == ["a", "c"]


def test_without_k_or_threshold_features_scoring_above_the_mean_are_kept():
    X, y = _classification()
    selector = FeatureSelector("anova").fit(X, y)
    assert isinstance(selector.selector_, SelectFromModel)
    assert sorted(selector.get_feature_names_out()) == ["a", "b"]
    np.testing.assert_array_equal(selector.get_support(), selector.scores_ >= selector.scores_.mean())


def test_k_alone_uses_select_k_best_and_threshold_uses_select_from_model():
    X, y = _classification()
    assert isinstance(FeatureSelector("anova", k=3).fit(X, y).selector_, SelectKBest)
    scores = FeatureSelector("anova", k=6).fit(X, y).scores_
    limit = np.sort(scores)[-3]  # the third best score: three features reach it
    assert FeatureSelector("anova", threshold=limit).fit(X, y).get_support().sum() == 3
    assert FeatureSelector("anova", threshold=limit, k=2).fit(X, y).get_support().sum() == 2


def test_k_larger_than_the_number_of_features_keeps_them_all():
    X, y = _classification()
    selector = FeatureSelector("anova", k=50).fit(X, y)
    assert selector.k_ == 6 and selector.get_support().all()


def test_a_given_estimator_is_used_for_model_importance():
    X, y = _regression()
    selector = FeatureSelector("model", k=2, estimator=LinearRegression()).fit(X, y)
    assert sorted(selector.get_feature_names_out()) == ["a", "b"]
    np.testing.assert_allclose(selector.scores_[:2], [3, 2], atol=0.1)


def test_names_follow_the_previous_pipeline_step():
    X, y = _classification()
    pipe = make_pipeline(StandardScaler(), FeatureSelector("anova", k=2)).fit(X.to_numpy(), y)
    assert sorted(pipe.get_feature_names_out()) == ["x0", "x1"]
    pipe.set_output(transform="pandas").fit(X, y)
    assert sorted(pipe.transform(X).columns) == ["a", "b"]


def test_the_method_itself_can_be_searched():
    X, y = _classification()
    search = GridSearchCV(
        make_pipeline(FeatureSelector(random_state=0), LogisticRegression()),
        {"featureselector__method": ["anova", "collinearity"], "featureselector__k": [1, 2]},
        cv=KFold(3),
    ).fit(X, y)
    assert search.best_params_["featureselector__k"] == 2
    assert search.best_params_["featureselector__method"] == "anova"  # collinearity keeps a, n1


# -- errors ----------------------------------------------------------------------------------


def test_chi2_with_negative_features_names_the_feature_and_the_fix():
    X, y = _classification()
    with pytest.raises(ValueError, match="feature 'a' has negative values.*MinMaxScaler"):
        FeatureSelector("chi2").fit(X, y)


def test_chi2_needs_classes():
    with pytest.raises(ValueError, match="chi2' needs a classification target"):
        FeatureSelector("chi2").fit(*_regression())


def test_text_columns_are_named():
    X = pd.DataFrame({"a": [1.0, 2.0], "city": ["Paris", "Lyon"]})
    with pytest.raises(TypeError, match="'city' \\(str\\) are not"):
        FeatureSelector().fit(X, [0, 1])


def test_missing_y_and_unknown_method():
    X, _ = _classification()
    with pytest.raises(ValueError, match="requires y"):
        FeatureSelector("anova").fit(X)
    with pytest.raises(ValueError, match="'method' parameter"):
        FeatureSelector("lasso").fit(X, np.arange(len(X)) % 2)
