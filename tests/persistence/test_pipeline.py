"""A Pipeline round trips: skadapt steps in the safe format, the others with skops."""

import json
import pickle

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import skadapt
from skadapt import PersistenceError, PretrainedFeatureExtractor, PretrainedFineTuner
from tests.persistence._modules import TinyNet, double

pytest.importorskip("skops")


@pytest.fixture(scope="module")
def pipeline(data):
    X, y = data
    return make_pipeline(StandardScaler(), PretrainedFineTuner(TinyNet, freeze="none", max_epochs=1,
                                                                random_state=0)).fit(X, y)


def test_a_scaler_and_a_fine_tuner_round_trip(pipeline, data, tmp_path):
    X, _ = data
    folder = skadapt.save(pipeline, tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "manifest.json", "step0.skops",
                                                        "step1"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"config.json", "step0.skops", "step1/manifest.json"}
    loaded = skadapt.load(folder)
    assert isinstance(loaded, Pipeline) and list(loaded.named_steps) == list(pipeline.named_steps)
    assert isinstance(loaded[0], StandardScaler)
    np.testing.assert_array_equal(loaded.predict_proba(X), pipeline.predict_proba(X))


def test_an_extractor_and_a_linear_probe_round_trip(data, tmp_path):
    X, y = data
    probe = Pipeline([("embed", PretrainedFeatureExtractor(TinyNet, feature_cache=False)),
                      ("skip", "passthrough"), ("clf", LogisticRegression())]).fit(X, y)
    loaded = skadapt.load(skadapt.save(probe, tmp_path / "model"))
    assert loaded.named_steps["skip"] == "passthrough"
    np.testing.assert_array_equal(loaded.predict_proba(X), probe.predict_proba(X))


def test_loading_a_pipeline_runs_no_pickle(pipeline, data, tmp_path, monkeypatch):
    X, _ = data
    folder = skadapt.save(pipeline, tmp_path / "model")

    def forbidden(*args, **kwargs):
        raise AssertionError("loading a safe model must not unpickle anything")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    np.testing.assert_array_equal(skadapt.load(folder).predict_proba(X), pipeline.predict_proba(X))


def test_untrusted_types_are_named_and_loaded_only_when_trusted(data, tmp_path):
    X, y = data
    custom = make_pipeline(FunctionTransformer(double), PretrainedFineTuner(
        TinyNet, freeze="none", max_epochs=1, random_state=0)).fit(X, y)
    folder = skadapt.save(custom, tmp_path / "model")
    with pytest.raises(PersistenceError, match=r"step0.skops holds types .*"
                                               r"tests.persistence._modules.double.*trusted="):
        skadapt.load(folder)
    loaded = skadapt.load(folder, trusted=["tests.persistence._modules.double"])
    np.testing.assert_array_equal(loaded.predict_proba(X), custom.predict_proba(X))


@pytest.mark.parametrize("name", ["step0.skops", "step1/weights.safetensors",
                                  "step1/manifest.json"])
def test_a_tampered_step_is_named(pipeline, tmp_path, name):
    folder = skadapt.save(pipeline, tmp_path / "model")
    data = bytearray((folder / name).read_bytes())
    data[-2] ^= 1
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(PersistenceError, match=rf"{name} has SHA-256 .* modified or damaged"):
        skadapt.load(folder)


def test_a_pipeline_with_memory_is_refused(pipeline, tmp_path):
    cached = Pipeline(pipeline.steps, memory=str(tmp_path / "cache"))
    with pytest.raises(PersistenceError, match="memory set.*memory=None"):
        skadapt.save(cached, tmp_path / "model")
