"""PretrainedFineTuner as an sklearn estimator: learning, clone, search, CV, pipelines, persistence."""

import io
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from skadapt import PretrainedFineTuner, PretrainedFineTunerRegressor
from tests.finetune.conftest import TinyCNN, color_task

FAST = dict(max_epochs=4, batch_size=16, lr=1e-2, random_state=0)


def _mlp(n_in=6, n_out=5):
    """A user's own tabular network: a fresh instance, so the 'pretrained' state is its init."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(n_in, 32), nn.ReLU(), nn.Linear(32, n_out))


def _tabular(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)) * [1, 10, 100, 1, 1, 1] + [0, 50, -300, 0, 0, 0]
    y = np.where(X[:, 0] + X[:, 1] / 10 > 5, "high", "low")
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]), y


def test_learns_an_image_task_with_string_labels(images):
    X, y = images
    clf = PretrainedFineTuner(TinyCNN, freeze="none", image_size=None, validation_fraction=0.1,
                              **FAST).fit(X, y)
    assert set(clf.classes_) == {"blue", "red"}
    X_test, y_test = color_task(n=64, seed=1)
    assert clf.score(X_test, y_test) > 0.9
    proba = clf.predict_proba(X_test)
    assert proba.shape == (64, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(clf.predict(X_test)) <= {"blue", "red"}
    assert {"train_loss", "valid_loss", "valid_acc", "lr"} <= set(clf.history[-1])


def test_fit_is_reproducible_with_random_state(images):
    X, y = images
    a = PretrainedFineTuner(TinyCNN, freeze="none", **FAST).fit(X, y).predict_proba(X)
    b = PretrainedFineTuner(TinyCNN, freeze="none", **FAST).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_get_params_set_params_and_clone_keep_every_parameter():
    clf = PretrainedFineTuner("resnet18", weights=None, freeze=2, unfreeze_at=3, unfreeze=1,
                              layer_decay=0.8, train_bn=True, image_size=64, lr=3e-4,
                              optimizer__weight_decay=0.05)
    params = clf.get_params()
    for name in ("model", "weights", "head", "freeze", "unfreeze_at", "unfreeze", "train_bn",
                 "image_size", "mean", "std", "augment", "lr", "max_epochs", "batch_size",
                 "random_state", "device", "layer_decay", "backbone_lr_mult", "unfreeze_lr",
                 "unfreeze_every", "optimizer__weight_decay"):
        assert name in params, name
    twin = clone(clf)
    assert twin.get_params()["freeze"] == 2 and twin.optimizer__weight_decay == 0.05
    twin.set_params(freeze="none", unfreeze_at=None)
    assert (twin.freeze, twin.unfreeze_at) == ("none", None)
    assert clf.freeze == 2


def test_grid_search_over_freezing_schedule_and_learning_rate(tiny_checkpoint, images):
    X, y = images
    net = PretrainedFineTuner(TinyCNN, weights=str(tiny_checkpoint), validation_fraction=None,
                              max_epochs=3, batch_size=16, random_state=0)
    grid = GridSearchCV(net, {"freeze": ["backbone", "none"], "lr": [1e-2, 1e-3],
                              "unfreeze_at": [None, 1]}, cv=StratifiedKFold(3), error_score="raise")
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 8
    assert grid.best_score_ > 0.8
    assert grid.best_estimator_.score(*color_task(n=64, seed=2)) > 0.8


def test_cross_validate_with_stratified_kfold(images):
    X, y = images
    scores = cross_validate(PretrainedFineTuner(TinyCNN, freeze="none", **FAST), X, y,
                            cv=StratifiedKFold(3, shuffle=True, random_state=0))
    assert scores["test_score"].mean() > 0.85


def test_inside_a_pipeline_with_a_user_pretrained_tabular_mlp():
    X, y = _tabular()
    pipe = make_pipeline(StandardScaler(), PretrainedFineTuner(_mlp(), freeze="none", **FAST))
    pipe.fit(X.iloc[:150], y[:150])
    assert pipe.score(X.iloc[150:], y[150:]) > 0.85
    assert pipe[-1].n_features_in_ == 6


def test_regressor_learns_and_keeps_target_shape():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    y = X @ np.array([1.0, -1.0, 0.5, 0.0, 2.0, 0.0])
    reg = PretrainedFineTunerRegressor(_mlp(n_out=1), freeze="none", max_epochs=30, lr=1e-2,
                                       batch_size=32, random_state=0)
    reg.fit(X[:200], y[:200])
    assert reg.predict(X[200:]).shape == (100,)
    assert reg.score(X[200:], y[200:]) > 0.8
    two = PretrainedFineTunerRegressor(_mlp(n_out=1), freeze="none", max_epochs=2, random_state=0)
    assert two.fit(X, np.c_[y, -y]).predict(X[:3]).shape == (3, 2)


def test_joblib_round_trip_gives_identical_predictions(images, tmp_path):
    X, y = images
    clf = PretrainedFineTuner(TinyCNN, freeze=1, **FAST).fit(X, y)
    joblib.dump(clf, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    assert loaded.get_params()["device"] == "auto"
    # one copy of the weights: the resolved network and the BatchNorm policy point into module_
    assert loaded.network_.module is loaded.module_
    in_module = {id(m) for m in loaded.module_.modules()}
    assert loaded.inference_modules_ and all(id(m) in in_module for m in loaded.inference_modules_)


def test_a_model_saved_for_cuda_loads_and_predicts_on_a_cpu_only_machine(images):
    """A pickle whose device is 'cuda' (as after training on a GPU) loads where CUDA is absent."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the test is about machines without it")
    X, y = images
    clf = PretrainedFineTuner(TinyCNN, freeze="none", **{**FAST, "max_epochs": 1}).fit(X, y)
    clf.device = "cuda"
    buffer = io.BytesIO()
    joblib.dump(clf, buffer)
    buffer.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = joblib.load(buffer)
    assert next(loaded.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_predict_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        PretrainedFineTuner(TinyCNN).predict(np.zeros((2, 3, 8, 8), dtype=np.float32))


@pytest.mark.parametrize("y, message", [
    (np.array(["a"] * 10), "single class"),
    (np.array(["a", None] * 5, dtype=object), "missing labels"),
    (np.array(["a", "b"] * 4), "X has 10 samples but y has 8"),
])
def test_bad_targets_get_clear_errors(y, message):
    X = np.zeros((10, 3, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        PretrainedFineTuner(TinyCNN).fit(X, y)


def test_small_folds_fall_back_to_a_random_validation_split():
    X = np.random.default_rng(0).normal(size=(12, 3, 8, 8)).astype(np.float32)
    y = np.array(["a"] * 11 + ["b"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PretrainedFineTuner(TinyCNN, max_epochs=1, validation_fraction=0.25,
                            head_solver="gradient").fit(X, y)
    assert any("could not stratify" in str(w.message) for w in caught)


def _write_images(folder, n=24, size=20):
    """PNG photos of two colours, plus one file that is not an image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(n):
        label = "red" if i % 2 else "blue"
        pixels = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
        pixels[..., 0 if label == "red" else 2] += 150
        path = folder / f"{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
        labels.append(label)
    bad = folder / "broken.png"
    bad.write_text("not an image")
    return paths, np.array(labels), str(bad)


def test_image_files_with_a_bad_file_skipped_in_fit_and_refused_in_predict(tmp_path):
    paths, labels, bad = _write_images(tmp_path)
    clf = PretrainedFineTuner(TinyCNN, image_size=16, freeze="none", on_bad_image="skip",
                              validation_fraction=None, **FAST)
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        clf.fit([*paths, bad], [*labels, "red"])
    assert clf.input_kind_ == "files"
    assert clf.score(paths, labels) > 0.9
    with pytest.raises(ValueError, match="broken.png"):
        clf.predict([bad])


def test_early_stopping_restores_the_best_epoch_on_a_large_enough_split():
    from skorch.callbacks import Callback

    class WeightsAtEpochEnd(Callback):
        """The module's state dict at the end of each epoch (1-based), taken after the epoch's last
        training step: validation changes no weight, and the epoch that stops the fit never reaches
        the callbacks' on_epoch_end that follow skorch's EarlyStopping (it raises)."""

        def initialize(self):
            self.states_ = {}
            return self

        def on_batch_end(self, net, training=False, **kwargs):
            if training:
                self.states_[len(net.history)] = {
                    key: value.detach().clone() for key, value in net.module_.state_dict().items()}

    X, y = color_task(n=400, size=8)
    weights = WeightsAtEpochEnd()
    clf = PretrainedFineTuner(TinyCNN, freeze="none", patience=2, max_epochs=30, lr=0.5,
                              validation_fraction=0.25, batch_size=64, random_state=0,
                              callbacks=[("weights", weights)]).fit(X, y)
    losses = clf.history[:, "valid_loss"]
    assert len(losses) < 30  # stopped early
    best = int(np.argmin(losses))
    assert len(losses) - 1 - best == 2  # the best epoch is not the last
    assert clf.validation_ == {
        "n_validation": 100, "early_stopping": True, "patience": 2, "epochs_run": len(losses),
        "best_epoch": best + 1, "restored_best": True, "policy": clf.validation_plan_.reason}
    # the fitted weights are exactly the best epoch's, and not the last epoch's
    assert sorted(weights.states_) == list(range(1, len(losses) + 1))
    final = clf.module_.state_dict()
    best_state, last_state = weights.states_[best + 1], weights.states_[len(losses)]
    assert all(torch.equal(final[key], best_state[key]) for key in final)
    assert not all(torch.equal(final[key], last_state[key]) for key in final)


@pytest.mark.parametrize("fraction", ["auto", 0.1])
def test_a_small_validation_split_never_picks_the_epoch(fraction, images):
    """24 validation samples cannot tell epochs apart: the fit runs its whole schedule, and its
    final weights are those of the last epoch (with "auto" the split is not even held out)."""
    X, y = images
    clf = PretrainedFineTuner(TinyCNN, freeze="none", max_epochs=6, lr=0.5, batch_size=16,
                              validation_fraction=fraction, patience=1, random_state=0).fit(X, y)
    assert len(clf.history) == 6 and not clf.validation_["restored_best"]
    assert not clf.validation_["early_stopping"]
    reference = PretrainedFineTuner(TinyCNN, freeze="none", max_epochs=6, lr=0.5, batch_size=16,
                                    validation_fraction=None, random_state=0).fit(X, y)
    if fraction == "auto":  # exactly the fit on all the data
        np.testing.assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))
        assert "valid_loss" not in clf.history[-1]
    else:
        assert clf.validation_["n_validation"] == 10 and "valid_loss" in clf.history[-1]


def test_random_search_over_the_model_name():
    from sklearn.model_selection import RandomizedSearchCV

    X, y = color_task(n=32, size=32)
    net = PretrainedFineTuner("resnet18", weights=None, max_epochs=1, batch_size=16,
                              validation_fraction=None, random_state=0)
    search = RandomizedSearchCV(net, {"model": ["resnet18", "mobilenet_v3_small"],
                                      "layer_decay": [0.5, 1.0]}, n_iter=2, cv=2, random_state=0,
                                error_score="raise")
    search.fit(X, y)
    assert {p["model"] for p in search.cv_results_["params"]} <= {"resnet18", "mobilenet_v3_small"}
    assert search.best_estimator_.predict(X).shape == (32,)


def test_predicting_on_another_kind_of_input_names_both_kinds(images, tmp_path):
    X, y = images
    clf = PretrainedFineTuner(TinyCNN, freeze="none", **{**FAST, "max_epochs": 1}).fit(X, y)
    paths, _, _ = _write_images(tmp_path, n=2)
    with pytest.raises(ValueError, match="X holds image files but this model was fitted on numeric"):
        clf.predict(paths)


def test_frozen_backbone_trains_the_head_on_cached_features_with_the_same_result(
        tiny_checkpoint, images):
    X, y = images
    params = dict(weights=str(tiny_checkpoint), freeze="backbone", head_solver="gradient", **FAST)
    cached = PretrainedFineTuner(TinyCNN, **params).fit(X, y)
    full = PretrainedFineTuner(TinyCNN, feature_cache=False, **params).fit(X, y)
    assert cached.training_path_ == "cached backbone features"
    assert full.training_path_ == "full network (feature_cache=False)"
    np.testing.assert_allclose(cached.predict_proba(X), full.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(cached.history[:, "train_loss"], full.history[:, "train_loss"],
                               rtol=1e-4)


@pytest.mark.parametrize("params, why", [
    (dict(freeze="none"), "the backbone trains"),
    (dict(unfreeze_at=1), "the backbone trains"),
    (dict(augment=True), "augmentation is on"),
])
def test_the_cache_is_not_used_when_the_backbone_trains_or_inputs_are_random(params, why, images):
    X, y = images
    clf = PretrainedFineTuner(TinyCNN, **{**FAST, "max_epochs": 2, **params}).fit(X, y)
    assert clf.training_path_.startswith("full network") and why in clf.training_path_


def test_decoding_image_files_once_per_fit_changes_nothing_without_augmentation(tmp_path):
    paths, labels, _ = _write_images(tmp_path)
    params = dict(image_size=16, freeze="none", augment=False, **FAST)
    cached = PretrainedFineTuner(TinyCNN, **params).fit(paths, labels)
    decoded = PretrainedFineTuner(TinyCNN, image_cache_mb=0, **params).fit(paths, labels)
    np.testing.assert_allclose(cached.predict_proba(paths), decoded.predict_proba(paths), atol=1e-6)


# --------------------------------------------------------------------------- issue 13: shapes
def test_arrays_of_the_wrong_channels_or_rank_fail_clearly_at_fit_and_predict(images):
    X, y = images
    gray = X[:, :1]
    with pytest.raises(ValueError, match=r"X has 1 channel, the network's first layer expects 3: "
                                         r"repeat the gray channel"):
        PretrainedFineTuner(TinyCNN, **FAST).fit(gray, y)
    with pytest.raises(ValueError, match=r"X has shape \(96, 768\), but the network's first "
                                         r"layer is a Conv2d"):
        PretrainedFineTuner(TinyCNN, **FAST).fit(X.reshape(len(X), -1), y)
    clf = PretrainedFineTuner(TinyCNN, freeze="none", max_epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="X has 1 channel, the network's first layer expects 3"):
        clf.predict(gray)
    with pytest.raises(ValueError, match=r"X has 4 channels.*expects 3"):
        clf.predict_proba(np.concatenate([X, X[:, :1]], axis=1))


def test_inception_v3_fits_224_pixel_arrays_without_its_auxiliary_head():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3, 224, 224)).astype(np.float32)
    y = np.array([0, 1, 0, 1])
    clf = PretrainedFineTuner("inception_v3", freeze=3, max_epochs=1, batch_size=4,
                              random_state=0, validation_fraction=None).fit(X, y)
    assert clf.module_.AuxLogits is None
    assert clf.predict(X).shape == (4,)
