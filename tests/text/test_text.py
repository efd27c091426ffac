"""PretrainedFineTuner on Hugging Face text encoders, with a tiny random BERT (fast)."""

import pickle
import re
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score

from skadapt import PretrainedFineTuner, PretrainedFineTunerRegressor
from skadapt.finetune._adapters import adapt_texts
from skadapt.networks import resolve_network
from skadapt.text import TextCollate, TextNetwork, is_text_model, resolve_text_network
from tests.text.conftest import sentiment_task

FAST = dict(max_epochs=2, batch_size=16, validation_fraction=None, random_state=0, max_length=16)


def _state(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


# --------------------------------------------------------------------------- the network
def test_resolve_network_dispatches_a_model_directory_to_a_text_network(tiny_bert):
    network = resolve_network(tiny_bert, n_outputs=3)
    assert isinstance(network, TextNetwork)
    assert network.head == ("head",)
    assert network.module.head.out_features == 3
    assert [g.name for g in network.groups] == [
        "backbone.embeddings", "backbone.encoder.layer.0", "backbone.encoder.layer.1"]
    grouped = [name for group in network.groups for name in group.params]
    outside_head = [n for n, _ in network.module.named_parameters() if not n.startswith("head.")]
    assert sorted(grouped) == sorted(outside_head)  # each backbone parameter in exactly one group
    assert not any("pooler" in name for name in grouped)  # the unused pooling layer is left out


def test_text_models_are_recognized_from_the_model_not_from_the_data(tiny_bert, tmp_path):
    assert is_text_model(tiny_bert) and is_text_model("sentence-transformers/all-MiniLM-L6-v2")
    assert not is_text_model("resnet18")
    assert not is_text_model(torch.nn.Linear(2, 2))
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"")
    assert not is_text_model(str(image))


def test_mean_pooling_ignores_padding_so_predictions_do_not_depend_on_the_batch(tiny_bert):
    texts, y = sentiment_task(16)
    clf = PretrainedFineTuner(tiny_bert, freeze="none", **FAST).fit(texts, y)
    long_text = " ".join(["really"] * 14)
    alone = clf.predict_proba(texts[:1])
    batched = clf.predict_proba([texts[0], long_text])[:1]  # texts[0] is padded in this batch
    np.testing.assert_allclose(alone, batched, atol=1e-5)


def test_cls_pooling_gives_another_representation(tiny_bert):
    batch = TextCollate(resolve_text_network(tiny_bert).tokenizer, max_length=16)(
        [("good phone", 0), ("the food was awful", 1)])[0]
    torch.manual_seed(0)
    mean = resolve_text_network(tiny_bert, pooling="mean").module.eval()
    torch.manual_seed(0)
    cls = resolve_text_network(tiny_bert, pooling="cls").module.eval()
    torch.testing.assert_close(mean.head.weight, cls.head.weight)
    assert not torch.allclose(mean(**batch), cls(**batch))


def test_collate_pads_each_batch_to_its_longest_text_and_truncates_at_max_length(tiny_bert):
    collate = TextCollate(resolve_text_network(tiny_bert).tokenizer, max_length=6)
    short, targets = collate([("good", torch.tensor(1)), ("bad", torch.tensor(0))])
    assert short["input_ids"].shape == (2, 3)  # [CLS] word [SEP]: no padding to max_length
    assert targets.tolist() == [1, 0]
    long, _ = collate([("good " * 20, torch.tensor(1))])
    assert long["input_ids"].shape == (1, 6)
    assert pickle.loads(pickle.dumps(collate)).max_length == 6  # DataLoader workers, joblib


# --------------------------------------------------------------------------- fitting
def test_fine_tuning_learns_a_toy_sentiment_task(tiny_bert, texts):
    X, y = texts
    X_test, y_test = sentiment_task(40, seed=1)
    clf = PretrainedFineTuner(tiny_bert, freeze="none", lr=3e-3, **{**FAST, "max_epochs": 8})
    clf.fit(pd.Series(X), y)
    assert clf.input_kind_ == "texts"
    assert clf.trainable_fraction_ == 1.0
    assert (clf.predict(np.array(X_test)) == y_test).mean() >= 0.9


def test_a_frozen_encoder_trains_its_head_on_cached_features_with_the_same_result(tiny_bert,
                                                                                  texts):
    """The encoder's dropout is off while it is frozen, so its features can be computed once."""
    X, y = texts
    params = dict(freeze="backbone", head_solver="gradient", lr=1e-2, **FAST)
    cached = PretrainedFineTuner(tiny_bert, **params).fit(X, y)
    full = PretrainedFineTuner(tiny_bert, feature_cache=False, **params).fit(X, y)
    assert cached.training_path_ == "cached backbone features"
    np.testing.assert_allclose(cached.predict_proba(X), full.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(cached.history[:, "train_loss"], full.history[:, "train_loss"],
                               rtol=1e-4)
    weighted = PretrainedFineTuner(tiny_bert, class_weight={"pos": 3.0}, **params).fit(X, y)
    assert not np.allclose(weighted.predict_proba(X), cached.predict_proba(X))
    convex = PretrainedFineTuner(tiny_bert, freeze="backbone", **FAST).fit(X, y)
    assert convex.head_solver_ == "convex" and convex.training_path_ == "cached backbone features"


def test_freezing_keeps_frozen_groups_bit_for_bit(tiny_bert, texts):
    clf = PretrainedFineTuner(tiny_bert, freeze=1, lr=1e-2, **FAST).fit(*texts)
    before = _state(resolve_text_network(tiny_bert).module)
    after = _state(clf.module_)
    for name in before:
        if name.startswith(("backbone.embeddings.", "backbone.encoder.layer.0.")):
            assert torch.equal(before[name], after[name]), name
    changed = [n for n in before if n.startswith("backbone.encoder.layer.1.")
               and not torch.equal(before[n], after[n])]
    assert changed  # the last layer trained
    table = clf.layer_table()
    assert table.set_index("group")["trainable"].to_dict() == {
        "head": 1.0, "backbone.embeddings": 0.0, "backbone.encoder.layer.0": 0.0,
        "backbone.encoder.layer.1": 1.0}


def test_staged_unfreezing_and_layer_decay_work_on_encoder_layers(tiny_bert, texts):
    clf = PretrainedFineTuner(tiny_bert, freeze="backbone", unfreeze_at=1, unfreeze=2,
                              unfreeze_every=1, layer_decay=0.5, lr=1e-2,
                              **{**FAST, "max_epochs": 3}).fit(*texts)
    n_trainable = clf.history[:, "n_trainable"]
    assert n_trainable[0] < n_trainable[1] < n_trainable[2]  # head, + layer.1, + layer.0
    table = clf.layer_table(epoch=2).set_index("group")
    assert table.loc["backbone.embeddings", "trainable"] == 0.0
    assert table.loc["backbone.encoder.layer.0", "lr"] == pytest.approx(1e-3 * 0.5)


def test_regressor_fits_texts(tiny_bert, texts):
    X, labels = texts
    y = (labels == "pos").astype(float)
    reg = PretrainedFineTunerRegressor(tiny_bert, freeze="none", lr=3e-3, **FAST).fit(X, y)
    assert reg.predict(X[:3]).shape == (3,)


# --------------------------------------------------------------------------- LoRA
def test_lora_trains_adapters_and_head_only_and_reports_the_fraction(tiny_bert, texts):
    clf = PretrainedFineTuner(tiny_bert, adapter="lora", lora_r=4, lora_alpha=8, lr=1e-2, **FAST)
    clf.fit(*texts)
    before = _state(resolve_text_network(tiny_bert).module)
    sizes = {n: p.numel() for n, p in clf.module_.named_parameters()}
    adapters = [n for n in sizes if ".lora_" in n]
    assert adapters and set(adapters) == set(clf.network_.adapter_params)
    trainable = sum(sizes[n] for n in adapters) + clf.module_.head.weight.numel() + 2
    assert clf.trainable_fraction_ == pytest.approx(trainable / sum(sizes.values()))
    assert clf.trainable_fraction_ < 0.05
    for name, param in clf.module_.named_parameters():
        base = name.replace(".base_layer", "")
        if base in before and not name.startswith("head."):
            assert torch.equal(param, before[base]), name  # pretrained weights untouched
    lora_b = [p for n, p in clf.module_.named_parameters() if ".lora_B." in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # LoRA B starts at zero: the adapters trained


def test_freeze_applies_to_the_pretrained_weights_while_lora_adapters_always_train(tiny_bert):
    standard = PretrainedFineTuner(tiny_bert, adapter="lora").layer_table().set_index("group")
    assert standard.loc["backbone.embeddings", "trainable"] == 0.0  # no adapter there
    assert 0 < standard.loc["backbone.encoder.layer.1", "trainable"] < 0.2  # its adapters only
    thawed = PretrainedFineTuner(tiny_bert, adapter="lora", freeze="none").layer_table()
    assert (thawed["trainable"] == 1.0).all()


def test_lora_model_round_trips_through_joblib_with_its_adapters(tiny_bert, texts, tmp_path):
    clf = PretrainedFineTuner(tiny_bert, adapter="lora", lr=1e-2, **FAST).fit(*texts)
    joblib.dump(clf, tmp_path / "clf.joblib")
    loaded = joblib.load(tmp_path / "clf.joblib")
    X_test, _ = sentiment_task(20, seed=2)
    np.testing.assert_allclose(loaded.predict_proba(X_test), clf.predict_proba(X_test), atol=1e-6)
    assert any(".lora_A." in n for n, _ in loaded.module_.named_parameters())


def test_grid_search_over_freeze_lr_and_lora_rank(tiny_bert, texts):
    base = PretrainedFineTuner(tiny_bert, adapter="lora", **{**FAST, "max_epochs": 1})
    grid = {"freeze": ["backbone", 1], "lr": [1e-2], "lora_r": [2, 4]}
    search = GridSearchCV(base, grid, cv=2).fit(*texts)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.lora_r in (2, 4)
    assert clone(base).get_params()["adapter"] == "lora"


def test_cross_validation_slices_texts_like_an_array(tiny_bert):
    X, y = sentiment_task(160)
    clf = PretrainedFineTuner(tiny_bert, freeze="none", lr=3e-3, **{**FAST, "max_epochs": 8})
    scores = cross_val_score(clf, np.array(X, dtype=object), y, cv=2)
    assert scores.shape == (2,) and (scores >= 0.8).all()


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, positions", [
    (["good", None, "bad", float("nan")], "missing (None/NaN) texts at positions 1, 3"),
    (["good", "", "bad", "   "], "empty texts at positions 1, 3"),
])
def test_missing_and_empty_texts_are_named(tiny_bert, bad, positions):
    clf = PretrainedFineTuner(tiny_bert, **FAST)
    with pytest.raises(ValueError, match=rf"{re.escape(positions)}: .*empty_text='allow'"):
        clf.fit(bad, ["pos", "neg", "pos", "neg"])


def test_empty_text_allow_treats_missing_texts_as_empty(tiny_bert):
    X = ["good phone", None, "awful food", "", "love it", "hate it"]
    y = ["pos", "neg", "neg", "pos", "pos", "neg"]
    assert adapt_texts(X, empty_text="allow").items[1] == ""
    clf = PretrainedFineTuner(tiny_bert, empty_text="allow", **FAST).fit(X, y)
    assert clf.predict([None, ""]).shape == (2,)


@pytest.mark.parametrize("X, error, match", [
    ("just one sentence", TypeError, "single str"),
    (["fine", 3, "bad"], TypeError, r"\['int'\] at positions 1"),
    (pd.DataFrame({"a": ["x", "y"], "b": ["z", "w"]}), ValueError, "one column of texts"),
    (np.array([["a"], ["b"]]), ValueError, "1-D sequence"),
])
def test_texts_of_the_wrong_shape_or_type_are_refused(tiny_bert, X, error, match):
    with pytest.raises(error, match=match):
        PretrainedFineTuner(tiny_bert, **FAST).fit(X, ["pos", "neg", "pos"][: len(X)])


@pytest.mark.parametrize("params, match", [
    (dict(pooling="max"), r"'pooling' parameter .* str among .*'mean'.* Got 'max'"),
    (dict(adapter="ia3"), r"'adapter' parameter .* Got 'ia3'"),
    (dict(lora_r=0), r"'lora_r' parameter .* Got 0"),
    (dict(lora_alpha=-1), r"'lora_alpha' parameter .* Got -1"),
    (dict(max_length=1), r"'max_length' parameter .* range \[2, inf\).* Got 1"),
    (dict(max_length=1000), "longer than the 128 tokens"),
    (dict(empty_text="skip"), r"'empty_text' parameter .* Got 'skip'"),
    (dict(weights="DEFAULT"), "weights='DEFAULT'.*save_pretrained"),
])
def test_bad_text_parameters_are_refused_with_the_fix(tiny_bert, texts, params, match):
    with pytest.raises(ValueError, match=match):
        PretrainedFineTuner(tiny_bert, **{**FAST, **params}).fit(*texts)


def test_lora_asked_of_an_image_model_is_refused():
    X = np.zeros((4, 3), dtype=np.float32)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="adapter='lora' applies to Hugging Face text models"):
        PretrainedFineTuner(net, adapter="lora").fit(X, [0, 1, 0, 1])


# --------------------------------------------------------------------------- loading errors
def test_offline_unknown_hub_id_says_to_pass_a_local_directory(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="'made-up-org/no-such-model'.*pass a local directory"):
        PretrainedFineTuner("made-up-org/no-such-model", **FAST).fit(["a", "b"], [0, 1])


def test_directory_without_a_model_says_what_it_must_hold(tmp_path):
    with pytest.raises(ValueError, match="must hold config.json"):
        resolve_network(tmp_path, n_outputs=2)


def test_missing_transformers_says_which_extra_to_install(tiny_bert, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(ImportError, match=r"pip install skadapt\[text\]"):
        resolve_network(tiny_bert)


def test_missing_peft_says_which_extra_to_install(tiny_bert, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"'lora' needs the peft package.*skadapt\[text\]"):
        resolve_text_network(tiny_bert, adapter="lora")
