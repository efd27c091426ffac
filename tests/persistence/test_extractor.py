"""A fitted PretrainedFeatureExtractor saved and loaded gives exactly the same embeddings."""

import json

import numpy as np
import pytest

import skadapt
from skadapt import PersistenceError, PretrainedFeatureExtractor
from tests.persistence._modules import TinyNet


def test_an_extractor_round_trips_with_identical_embeddings(data, tmp_path):
    X, _ = data
    extractor = PretrainedFeatureExtractor(TinyNet, feature_cache=False).fit(X)
    folder = skadapt.save(extractor, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert config["estimator"] == "PretrainedFeatureExtractor"
    loaded = skadapt.load(folder)
    assert type(loaded) is PretrainedFeatureExtractor
    assert (loaded.n_features_in_, loaded.n_features_out_) == (4, 8)
    assert loaded.computation_ == extractor.computation_
    np.testing.assert_array_equal(loaded.transform(X), extractor.transform(X))
    assert not any(p.requires_grad for p in loaded.network_.module.parameters())


def test_a_torchvision_extractor_with_a_layer_round_trips(tmp_path):
    X = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype("float32")
    extractor = PretrainedFeatureExtractor("resnet18", layer="layer2", pooling="max",
                                           feature_cache=False).fit(X)
    loaded = skadapt.load(skadapt.save(extractor, tmp_path / "model"))
    assert loaded.network_.preprocessing == extractor.network_.preprocessing
    np.testing.assert_array_equal(loaded.transform(X), extractor.transform(X))


def test_the_extractors_weights_must_fit_its_network(data, tmp_path):
    X, _ = data
    extractor = PretrainedFeatureExtractor(TinyNet, feature_cache=False).fit(X)
    folder = skadapt.save(extractor, tmp_path / "model")
    from tests.persistence.conftest import edit_config

    edit_config(folder, lambda c: c["params"].update(head="body.0"))  # another layer removed
    with pytest.raises(PersistenceError, match="does not fit the network rebuilt"):
        skadapt.load(folder)
