"""compare_models: score, parameters, size and latency of candidates, and the best within budget."""

import time

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from skadapt.finetune import PretrainedFineTuner
from skadapt.model_selection import compare_models
from skadapt.model_selection._budget import n_parameters
from tests.finetune.conftest import TinyCNN, color_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COLUMNS = ["score_mean", "score_std", "n_parameters", "size_mb", "latency_ms", "fit_time_s",
           "within_budget"]


class SlowClassifier(ClassifierMixin, BaseEstimator):
    """Predicts the majority class, taking ``delay`` seconds per predict call."""

    def __init__(self, delay=0.02):
        self.delay = delay

    def fit(self, X, y):
        self.dummy_ = DummyClassifier().fit(X, y)
        self.classes_ = self.dummy_.classes_
        return self

    def predict(self, X):
        time.sleep(self.delay)
        return self.dummy_.predict(X)



@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=200, n_features=10, n_informative=5, random_state=0)


@pytest.fixture(scope="module")
def table(data):
    X, y = data
    candidates = {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression()),
        "stump": DecisionTreeClassifier(max_depth=1, random_state=0),
        "knn": KNeighborsClassifier(),
        "slow": SlowClassifier(delay=0.02),
    }
    return compare_models(candidates, X, y, cv=3, latency_batch_size=20, n_repeats=3)


def test_candidates_are_sorted_by_cross_validated_score(table, data):
    assert list(table.columns) == COLUMNS and table.index.name == "model"
    assert sorted(table.index) == ["knn", "logistic", "slow", "stump"]
    assert table.score_mean.is_monotonic_decreasing
    assert table.index[-1] == "slow"  # the majority class scores about 0.5
    assert table.loc["slow", "score_mean"] == pytest.approx(0.5, abs=0.05)
    assert (table.fit_time_s > 0).all()


def test_parameters_count_linear_coefficients_and_nothing_for_trees(table):
    assert table.loc["logistic", "n_parameters"] == 10 + 1  # coef_ and intercept_
    assert table.n_parameters.isna()[["stump", "knn", "slow"]].all()
    assert str(table.n_parameters.dtype) == "Int64"


def test_size_is_what_joblib_writes(table):
    assert (table.size_mb > 0).all()
    # k-NN keeps its training data (2/3 of 200 rows x 10 floats): larger than 11 coefficients
    assert table.loc["knn", "size_mb"] > table.loc["logistic", "size_mb"]
    assert table.loc["knn", "size_mb"] * 1e6 > 133 * 10 * 8


def test_latency_is_measured_per_sample(table):
    # 20 ms per call of 20 samples: at least 1 ms per sample, however fast the machine
    assert table.loc["slow", "latency_ms"] >= 1.0
    assert table.loc["slow", "latency_ms"] > 5 * table.loc["logistic", "latency_ms"]


def test_no_budget_keeps_every_candidate_and_names_the_best(table):
    assert table.within_budget.all()
    assert table.attrs["best"] == table.index[0]
    assert table.attrs["budget"] == {"max_latency_ms": None, "max_size_mb": None}


def test_the_best_within_budget_is_reported(data):
    X, y = data
    candidates = {"knn": KNeighborsClassifier(n_neighbors=3), "slow": SlowClassifier(0.02),
                  "stump": DecisionTreeClassifier(max_depth=1, random_state=0)}
    table = compare_models(candidates, X, y, cv=3, max_latency_ms=0.5, max_size_mb=0.005,
                           latency_batch_size=20, n_repeats=3)
    # k-NN scores best but its stored data exceed 5 kB; the slow one is over the latency budget
    assert table.index[0] == "knn" and not table.loc["knn", "within_budget"]
    assert not table.loc["slow", "within_budget"]
    assert table.loc["stump", "within_budget"] and table.attrs["best"] == "stump"


def test_a_budget_nothing_meets_warns_and_reports_no_best(data):
    X, y = data
    with pytest.warns(UserWarning, match="no candidate fits the budget"):
        table = compare_models({"stump": DecisionTreeClassifier(max_depth=1)}, X, y, cv=3,
                               max_size_mb=1e-6)
    assert table.attrs["best"] is None and not table.within_budget.any()


def test_scoring_and_group_aware_cv_are_passed_to_sklearn(data):
    X, y = data
    groups = np.arange(len(y)) % 10
    table = compare_models({"logistic": LogisticRegression()}, X, y, cv=GroupKFold(5),
                           groups=groups, scoring="neg_log_loss", n_repeats=1)
    assert table.loc["logistic", "score_mean"] < 0  # a negated loss, not an accuracy


def test_candidates_are_cloned_not_fitted(data):
    X, y = data
    model = LogisticRegression()
    compare_models({"logistic": model}, X, y, cv=2, n_repeats=1)
    assert not hasattr(model, "coef_")


def test_a_tiny_fine_tuner_is_measured_like_any_estimator():
    X, y = color_task(n=48, size=16)
    tuner = PretrainedFineTuner(TinyCNN(), freeze="none", max_epochs=1, batch_size=16,
                                validation_fraction=None, random_state=0)
    table = compare_models({"tiny_cnn": tuner, "majority": DummyClassifier()}, X, y, cv=2,
                           latency_batch_size=16, n_repeats=2)
    expected = sum(p.numel() for name, p in TinyCNN(n_classes=2).named_parameters())
    assert table.loc["tiny_cnn", "n_parameters"] == expected  # the 2-class head included
    assert table.loc["tiny_cnn", "size_mb"] * 1e6 > 4 * expected  # float32 weights and more
    assert table.loc["tiny_cnn", "latency_ms"] > 0


def test_n_parameters_looks_inside_pipelines():
    X, y = make_classification(n_samples=30, n_features=4, random_state=0)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    assert n_parameters(pipeline) == 5
    assert n_parameters(DecisionTreeClassifier().fit(X, y)) is None


@pytest.mark.parametrize(
    ("candidates", "kwargs", "error", "message"),
    [
        ({}, {}, TypeError, "non-empty dict"),
        ([LogisticRegression()], {}, TypeError, "non-empty dict"),
        ({1: LogisticRegression()}, {}, TypeError, "name each candidate"),
        ({"scaler": StandardScaler()}, {}, TypeError, "'scaler'.*without fit and predict"),
        ({"lr": LogisticRegression()}, {"max_latency_ms": 0}, ValueError, "max_latency_ms=0"),
        ({"lr": LogisticRegression()}, {"max_size_mb": "1"}, ValueError, "max_size_mb='1'"),
        ({"lr": LogisticRegression()}, {"n_repeats": 0}, ValueError, "n_repeats=0"),
        ({"lr": LogisticRegression()}, {"scoring": ["accuracy", "f1"]}, ValueError,
         "one scorer"),
    ],
)
def test_bad_arguments_say_what_to_fix(data, candidates, kwargs, error, message):
    X, y = data
    with pytest.raises(error, match=message):
        compare_models(candidates, X, y, **kwargs)
