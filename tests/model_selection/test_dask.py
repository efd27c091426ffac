"""Searches of skadapt estimators on a Dask cluster, through joblib's Dask backend: the same
scores as one process, and with a shared ``cache_dir`` the frozen backbone runs about once per
sample over the whole search.

One ``distributed.LocalCluster`` with 2 worker processes serves the module (no dashboard, no
network beyond this host's loopback).
"""

import numpy as np
import pytest
from joblib import parallel_config
from scipy.stats import loguniform
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, cross_validate

from skadapt.finetune import PretrainedFineTuner, PretrainedFineTunerRegressor
from tests.model_selection import dask_helpers
from tests.model_selection.dask_helpers import classification_data, make_network, regression_data

dask = pytest.importorskip("dask", reason="needs dask: pip install 'skadapt[dask]'")
distributed = pytest.importorskip("distributed", reason="needs dask: pip install 'skadapt[dask]'")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def client(one_torch_thread):
    # Workers forked from this process start with torch and skadapt imported (spawned ones take
    # seconds each to import them); the tasks still travel to them pickled.
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        yield client


def _tuner(**params):
    params = {"freeze": "backbone", "max_epochs": 2, "batch_size": 16, **params}
    return PretrainedFineTuner(make_network(), device="cpu", random_state=0, **params)


def _split_scores(results, n_splits):
    return np.array([results[f"split{i}_test_score"] for i in range(n_splits)])


def _on_dask(run):
    with parallel_config(backend="dask"):
        return run()


def test_grid_search_on_the_cluster_scores_as_one_process(client):
    X, y = classification_data(60)
    # a frozen backbone (convex head on cached features) and a whole network trained by skorch
    grid = {"head_C": [0.1, 1.0], "freeze": ["backbone", "none"]}
    local = GridSearchCV(_tuner(), grid, cv=3, n_jobs=1).fit(X, y)
    spread = _on_dask(lambda: GridSearchCV(_tuner(), grid, cv=3, n_jobs=-1).fit(X, y))
    assert spread.cv_results_["params"] == local.cv_results_["params"]
    np.testing.assert_array_equal(spread.cv_results_["mean_test_score"],
                                  local.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(_split_scores(spread.cv_results_, 3),
                                  _split_scores(local.cv_results_, 3))
    assert spread.best_params_ == local.best_params_
    # the fits ran on the workers, not here
    assert sum(client.run(dask_helpers.forward_samples).values()) > 0


def test_randomized_search_on_the_cluster_scores_as_one_process(client):
    X, y = classification_data(48, seed=1)
    space = {"head_C": loguniform(1e-2, 1e2)}

    def search(n_jobs):
        return RandomizedSearchCV(_tuner(), space, n_iter=3, cv=2, random_state=0,
                                  n_jobs=n_jobs).fit(X, y)

    local, spread = search(1), _on_dask(lambda: search(-1))
    assert spread.cv_results_["params"] == local.cv_results_["params"]
    np.testing.assert_array_equal(_split_scores(spread.cv_results_, 2),
                                  _split_scores(local.cv_results_, 2))


def test_cross_validate_on_the_cluster_scores_as_one_process(client):
    X, y = regression_data(48, seed=2)
    regressor = PretrainedFineTunerRegressor(make_network(1), freeze="none", max_epochs=2,
                                             batch_size=16, device="cpu", random_state=0)
    folds = KFold(3, shuffle=True, random_state=0)
    local = cross_validate(regressor, X, y, cv=folds, n_jobs=1)
    spread = _on_dask(lambda: cross_validate(regressor, X, y, cv=folds, n_jobs=-1))
    np.testing.assert_array_equal(spread["test_score"], local["test_score"])


def test_a_shared_cache_dir_runs_the_backbone_about_once_per_sample(client, tmp_path):
    """8 settings x 5 folds on 2 workers: the samples through the backbone, counted by a layer in
    it and summed over the workers and this process (the refit), stay within 1.5 passes over X.
    The count includes each fit's check of 2 samples that the cached features are the training
    ones (``_cacheability``): 41 fits x 4 samples here."""
    cache_dir = str(tmp_path / "cache")
    X, y = classification_data(600, seed=3)
    client.run(dask_helpers.reset, cache_dir)
    dask_helpers.reset(cache_dir)
    grid = {"head_C": [0.01, 0.1, 1.0, 10.0], "head_solver": ["convex", "gradient"]}
    search = GridSearchCV(_tuner(cache_dir=cache_dir, batch_size=128), grid, cv=5, n_jobs=-1)
    _on_dask(lambda: search.fit(X, y))
    assert search.best_estimator_.used_feature_cache_
    workers = client.run(dask_helpers.forward_samples)
    assert len(workers) == 2 and all(count > 0 for count in workers.values())  # both worked
    passes = (sum(workers.values()) + dask_helpers.forward_samples()) / len(X)
    assert passes <= 1.5, f"{passes:.2f} backbone passes per sample"
    # the cache's own account: every sample's features computed once, by one of the workers
    stats = client.run(dask_helpers.cache_stats, cache_dir).values()
    assert sum(worker["computed"] for worker in stats) == len(X)
    assert dask_helpers.cache_stats(cache_dir)["computed"] == 0  # the refit found them all
