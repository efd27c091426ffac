"""A fitted fine-tuner saved and loaded predicts exactly as before."""

import json

import numpy as np
import pytest
import safetensors.torch
import torch
from sklearn.base import clone

import skadapt
from skadapt import PretrainedFineTuner, PretrainedFineTunerRegressor
from skadapt.networks import Preprocessing
from tests.persistence._modules import TinyNet


def _round_trip(estimator, tmp_path):
    return skadapt.load(skadapt.save(estimator, tmp_path / "model"))


def test_the_folder_holds_weights_config_and_manifest(fitted, tmp_path):
    folder = skadapt.save(fitted, tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "manifest.json",
                                                        "weights.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["estimator"] == "PretrainedFineTuner"
    assert config["params"]["model"] == {"$class": "tests.persistence._modules:TinyNet"}
    assert {"skadapt", "torch", "scikit-learn"} <= set(config["versions"])
    assert config["fitted"]["classes_"] == {"$array": ["neg", "pos"], "dtype": "<U3"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert set(manifest["files"]) == {"config.json", "weights.safetensors"}
    assert all(len(digest) == 64 for digest in manifest["files"].values())
    saved = safetensors.torch.load_file(folder / "weights.safetensors")
    assert set(saved) == set(fitted.module_.state_dict())


def test_a_classifier_round_trips_with_identical_predictions(fitted, data, tmp_path):
    X, _ = data
    loaded = _round_trip(fitted, tmp_path)
    assert type(loaded) is PretrainedFineTuner
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    assert loaded.classes_.dtype == fitted.classes_.dtype
    for name in ("n_features_in_", "input_kind_", "training_path_", "used_feature_cache_",
                 "head_solver_", "frozen_", "validation_", "validation_plan_"):
        assert getattr(loaded, name) == getattr(fitted, name), name
    assert len(loaded.history_) == len(fitted.history_)
    assert loaded.get_params()["model"] is TinyNet
    assert clone(loaded).get_params()["lr"] == fitted.lr


def test_the_cached_feature_path_and_convex_head_round_trip(data, tmp_path):
    X, y = data
    clf = PretrainedFineTuner(TinyNet, random_state=0).fit(X, y)  # frozen backbone, convex head
    assert clf.used_feature_cache_ and clf.head_solver_ == "convex"
    loaded = _round_trip(clf, tmp_path)
    assert loaded.frozen_ == clf.frozen_ and loaded.used_feature_cache_
    assert loaded.head_solution_ == clf.head_solution_
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("labels", ["int32", "bool", "object"])
def test_labels_keep_their_dtype(data, tmp_path, labels):
    X, y = data
    y = {"int32": (y == "pos").astype(np.int32) + 3, "bool": y == "pos",
         "object": y.astype(object)}[labels]
    clf = PretrainedFineTuner(TinyNet, random_state=0).fit(X, y)
    loaded = _round_trip(clf, tmp_path)
    assert loaded.classes_.dtype == np.dtype(labels)
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_a_module_instance_is_rebuilt_from_its_class(data, tmp_path):
    X, y = data
    clf = PretrainedFineTuner(TinyNet(), freeze="none", max_epochs=1, random_state=0).fit(X, y)
    loaded = _round_trip(clf, tmp_path)
    assert type(loaded.model) is TinyNet
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_a_regressor_round_trips_with_identical_predictions(data, tmp_path, n_outputs):
    X, _ = data
    y = X[:, :n_outputs] * 2.0 if n_outputs > 1 else X[:, 0] * 2.0
    reg = PretrainedFineTunerRegressor(TinyNet, freeze="none", max_epochs=2,
                                       random_state=0).fit(X, y)
    loaded = _round_trip(reg, tmp_path)
    assert type(loaded) is PretrainedFineTunerRegressor
    assert (loaded.n_outputs_, loaded.y_ndim_) == (reg.n_outputs_, reg.y_ndim_)
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.predict(X).shape == reg.predict(X).shape


def test_a_torchvision_name_round_trips(tmp_path):
    X = np.random.default_rng(0).normal(size=(6, 3, 32, 32)).astype("float32")
    y = np.array([0, 1, 2] * 2)
    clf = PretrainedFineTuner("resnet18", weights=None, freeze="none", max_epochs=1,
                              mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), random_state=0).fit(X, y)
    loaded = _round_trip(clf, tmp_path)
    assert loaded.model == "resnet18" and loaded.mean == (0.5, 0.5, 0.5)
    assert loaded.network_.preprocessing == clf.network_.preprocessing
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_the_pretrained_weights_are_not_read_when_loading(data, tmp_path):
    # fitted from a checkpoint: loading builds the architecture and never opens the checkpoint
    X, y = data
    checkpoint = tmp_path / "source.safetensors"
    safetensors.torch.save_file(TinyNet().state_dict(), checkpoint)
    clf = PretrainedFineTuner(TinyNet, weights=str(checkpoint), freeze="none", max_epochs=1,
                              random_state=0).fit(X, y)
    folder = skadapt.save(clf, tmp_path / "model")
    checkpoint.unlink()
    loaded = skadapt.load(folder)
    assert loaded.weights == str(checkpoint)  # the parameter as given, for clone and refits
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_the_network_preprocessing_is_restored(fitted, tmp_path):
    # pretrained weights may bring their own resize and normalization: saved, not rebuilt
    custom = Preprocessing(resize_size=40, crop_size=32, mean=(0.1, 0.2, 0.3),
                           std=(0.4, 0.5, 0.6), interpolation="bicubic")
    original = fitted.network_.preprocessing
    fitted.network_.preprocessing = custom
    try:
        loaded = _round_trip(fitted, tmp_path)
    finally:
        fitted.network_.preprocessing = original
    assert loaded.network_.preprocessing == custom


def test_parameters_of_every_kind_round_trip(data, tmp_path):
    X, y = data
    clf = PretrainedFineTuner(TinyNet, freeze="none", max_epochs=1, random_state=0,
                              class_weight={"pos": 2.0},
                              criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.SGD,
                              optimizer__momentum=0.9, cache_dir=tmp_path / "cache").fit(X, y)
    loaded = _round_trip(clf, tmp_path)
    params = loaded.get_params(deep=False)
    assert params["class_weight"] == {"pos": 2.0}
    assert params["criterion"] is torch.nn.CrossEntropyLoss
    assert params["optimizer"] is torch.optim.SGD and params["optimizer__momentum"] == 0.9
    assert params["cache_dir"] == tmp_path / "cache"
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_overwrite_replaces_a_saved_model(fitted, tmp_path):
    skadapt.save(fitted, tmp_path / "model")
    with pytest.raises(skadapt.PersistenceError, match="already exists.*overwrite=True"):
        skadapt.save(fitted, tmp_path / "model")
    skadapt.save(fitted, tmp_path / "model", overwrite=True)
    assert skadapt.load(tmp_path / "model").classes_.tolist() == ["neg", "pos"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a CPU-only machine")
def test_a_model_saved_for_a_gpu_loads_on_the_cpu(fitted, data, tmp_path):
    # the weights file is always written from CPU copies; the device parameter falls back
    from tests.persistence.conftest import edit_config

    X, _ = data
    folder = skadapt.save(fitted, tmp_path / "model")
    edit_config(folder, lambda c: c["params"].update(device="cuda"))
    with pytest.warns(UserWarning, match="device='cuda'.*CUDA is not available.*CPU"):
        loaded = skadapt.load(folder)
    assert loaded.device == "cpu"
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
