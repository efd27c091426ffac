"""What a fit on cached features no longer pays again and again: the cacheability check runs once
per network and input, and head-only training leaves the frozen backbone alone."""

import numpy as np
import pytest
import torch

from skadapt import PretrainedFineTuner
from skadapt.finetune import _cached_head
from skadapt.finetune._cached_head import clear_cacheability_memo
from tests.finetune.conftest import FunctionalDropout, TinyCNN, color_task

SETTINGS = dict(freeze="backbone", head_solver="gradient", lr=0.05, max_epochs=1, batch_size=8,
                validation_fraction=None, random_state=0)


@pytest.fixture
def checks(monkeypatch):
    """The networks the cacheability check ran on."""
    clear_cacheability_memo()
    ran = []
    check = _cached_head.why_cache_not_applicable

    def counting(network, example_input=None):
        ran.append(network)
        return check(network, example_input)

    monkeypatch.setattr(_cached_head, "why_cache_not_applicable", counting)
    yield ran
    clear_cacheability_memo()


def _checkpoint(path, seed):
    torch.manual_seed(seed)
    torch.save(TinyCNN().state_dict(), path)
    return path


def test_the_cacheability_check_runs_once_per_network_and_input(tmp_path, checks):
    X, y = color_task(n=16, size=8)
    first = _checkpoint(tmp_path / "a.pt", 0)
    fits = [PretrainedFineTuner(TinyCNN(), weights=first, **SETTINGS).fit(X, y) for _ in range(2)]
    assert len(checks) == 1
    assert all(fit.training_path_ == "cached backbone features" for fit in fits)
    np.testing.assert_array_equal(fits[0].predict_proba(X), fits[1].predict_proba(X))
    PretrainedFineTuner(TinyCNN(), weights=_checkpoint(tmp_path / "b.pt", 1), **SETTINGS).fit(X, y)
    assert len(checks) == 2, "other weights: checked again"
    PretrainedFineTuner(TinyCNN(), weights=first, **SETTINGS).fit(X[:, :, :6, :6], y)
    assert len(checks) == 3, "other input shape: checked again"


def test_an_architecture_the_cache_does_not_fit_is_still_refused_every_fit(checks):
    X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    y = np.arange(16) % 2
    model = FunctionalDropout()
    for _ in range(2):
        fit = PretrainedFineTuner(model, **SETTINGS).fit(X, y)
        assert fit.training_path_.startswith("full network (the backbone computes differently")
    assert len(checks) == 1


def test_frozen_parts_are_in_inference_mode_after_a_head_only_fit(tmp_path):
    X, y = color_task(n=16, size=8)
    fit = PretrainedFineTuner(TinyCNN(), weights=_checkpoint(tmp_path / "a.pt", 0),
                              **SETTINGS).fit(X, y)
    assert fit.used_feature_cache_ and fit.inference_modules_
    assert not any(sub.training for part in fit.inference_modules_ for sub in part.modules())


def test_a_cached_fit_fingerprints_its_backbone_once(tmp_path, monkeypatch):
    """The cacheability memo's key and the features' cache key share one fingerprint."""
    from skadapt.finetune import _cached_features

    calls = []

    def counting(module, exclude=()):
        calls.append(module)
        return fingerprint(module, exclude)

    fingerprint = _cached_head.module_fingerprint
    monkeypatch.setattr(_cached_head, "module_fingerprint", counting)
    monkeypatch.setattr(_cached_features, "module_fingerprint", counting)
    X, y = color_task(n=16, size=8)
    fit = PretrainedFineTuner(TinyCNN(), weights=_checkpoint(tmp_path / "a.pt", 0),
                              **SETTINGS).fit(X, y)
    assert fit.used_feature_cache_ and len(calls) == 1
    fit.predict(X)  # predicting checks the backbone again (it may have changed since)
    assert len(calls) == 2


def test_the_epoch_table_is_built_only_when_printed(monkeypatch, capsys):
    from skorch.callbacks import PrintLog

    tables = []
    table = PrintLog.table
    monkeypatch.setattr(PrintLog, "table", lambda self, row: tables.append(row) or table(self, row))
    X, y = color_task(n=16, size=8)
    settings = {**SETTINGS, "freeze": "none", "max_epochs": 2}
    PretrainedFineTuner(TinyCNN(), verbose=0, **settings).fit(X, y)
    assert tables == [] and capsys.readouterr().out == ""
    PretrainedFineTuner(TinyCNN(), verbose=1, **settings).fit(X, y)
    assert len(tables) == 2 and "train_loss" in capsys.readouterr().out


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_cached_features_are_read_a_batch_at_a_time_with_the_same_result(tmp_path, monkeypatch,
                                                                          class_weight):
    """A batch of cached features is one index operation, not a sample at a time: same batches,
    same random numbers, same fit as a DataLoader collating samples (a collate_fn of the user's)."""
    from torch.utils.data import default_collate

    from skadapt.finetune._feature_batches import FeatureBatches

    X, y = color_task(n=40, size=8)
    y = np.r_[np.zeros(30, int), np.ones(10, int)]  # unbalanced: class weights matter
    weights = _checkpoint(tmp_path / "a.pt", 0)
    settings = {**SETTINGS, "max_epochs": 3, "class_weight": class_weight,
                "validation_fraction": 0.25}
    single = []
    item = FeatureBatches.__getitem__
    monkeypatch.setattr(FeatureBatches, "__getitem__",
                        lambda self, index: single.append(index) or item(self, index))
    batched = PretrainedFineTuner(TinyCNN(), weights=weights, **settings).fit(X, y)
    assert batched.used_feature_cache_ and single == []
    by_sample = PretrainedFineTuner(TinyCNN(), weights=weights,
                                    iterator_train__collate_fn=default_collate,
                                    iterator_valid__collate_fn=default_collate, **settings).fit(X, y)
    assert len(single) > len(X)
    uncached = PretrainedFineTuner(TinyCNN(), weights=weights, feature_cache=False,
                                   **settings).fit(X, y)
    for other in (by_sample, uncached):
        for key in ("train_loss", "valid_loss"):
            assert other.history[-1, key] == pytest.approx(batched.history[-1, key], rel=1e-5)
        np.testing.assert_allclose(other.predict_proba(X), batched.predict_proba(X), rtol=1e-5)
