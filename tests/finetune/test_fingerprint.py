"""Cache keys: samples keyed by content, computations by weights, architecture and preprocessing."""

import copy
import os
import pickle

import numpy as np
import PIL.Image
import torch
from torch import nn

from skadapt.finetune._adapters import adapt_inputs, adapt_texts
from skadapt.finetune._fingerprint import module_fingerprint, sample_keys, transform_fingerprint
from skadapt.finetune._transforms import make_transform
from tests.finetune.conftest import TinyCNN


def _photo(path, size=(40, 30), color=(200, 30, 30)):
    PIL.Image.new("RGB", size, color).save(path)
    return str(path)


def test_array_rows_are_keyed_by_content_shape_and_dtype():
    X = np.zeros((3, 2, 2, 2), dtype=np.float32)
    X[2, 0, 0, 0] = 1e-7
    keys = sample_keys(adapt_inputs(X), "f")
    assert keys[0] == keys[1] != keys[2]
    assert keys[0] != sample_keys(adapt_inputs(X.reshape(3, 8)), "f")[0], "shape is in the key"
    assert keys[0] != sample_keys(adapt_inputs(X), "g")[0], "the computation is in the key"


def test_file_keys_change_when_the_file_changes(tmp_path):
    path = _photo(tmp_path / "a.png")
    inputs = adapt_inputs([path])
    before = sample_keys(inputs, "f")[0]
    assert sample_keys(inputs, "f")[0] == before
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # same size, new mtime
    touched = sample_keys(inputs, "f")[0]
    assert touched != before
    _photo(path, size=(41, 30))  # new content, new size
    assert sample_keys(inputs, "f")[0] not in (before, touched)


def test_pil_and_text_keys_follow_their_content():
    red, blue = PIL.Image.new("RGB", (4, 4), "red"), PIL.Image.new("RGB", (4, 4), "blue")
    keys = sample_keys(adapt_inputs([red, red.copy(), blue]), "f")
    assert keys[0] == keys[1] != keys[2]
    keys = sample_keys(adapt_texts(["great", "great", "bad"]), "f")
    assert keys[0] == keys[1] != keys[2]


def test_module_fingerprint_follows_weights_buffers_and_architecture_but_not_excluded_heads():
    torch.manual_seed(0)
    model = TinyCNN()
    base = module_fingerprint(model)
    assert module_fingerprint(pickle.loads(pickle.dumps(model))) == base
    new_head = copy.deepcopy(model)
    new_head.fc = nn.Linear(16, 3)
    assert module_fingerprint(new_head, exclude=["fc"]) == module_fingerprint(model, ["fc"])
    assert module_fingerprint(new_head) != base
    nudged = copy.deepcopy(model)
    with torch.no_grad():
        nudged.stage1[0].weight[0, 0, 0, 0] += 1e-6
    assert module_fingerprint(nudged, ["fc"]) != module_fingerprint(model, ["fc"])
    other_stats = copy.deepcopy(model)
    other_stats.stage2[1].running_mean += 0.5  # BatchNorm statistics are weights too
    assert module_fingerprint(other_stats, ["fc"]) != module_fingerprint(model, ["fc"])
    wide = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    narrow = copy.deepcopy(wide)
    narrow[1].p = 0.1
    assert module_fingerprint(wide) != module_fingerprint(narrow), "settings are in it"


def test_transform_fingerprint_follows_the_preprocessing():
    a = make_transform("files", train=False, image_size=32)
    assert transform_fingerprint(a) == transform_fingerprint(make_transform("files", train=False,
                                                                            image_size=32))
    for other in (make_transform("files", train=False, image_size=48),
                  make_transform("files", train=False, image_size=32, mean=(0.5, 0.5, 0.5))):
        assert transform_fingerprint(other) != transform_fingerprint(a)
    assert transform_fingerprint(None) != transform_fingerprint(a)
    # not picklable: falls back to repr, which holds the address: never shared, never mixed up
    assert transform_fingerprint(lambda x: x) != transform_fingerprint(lambda x: x + 1)


# --------------------------------------------------------------------------- fixed cost per fit
def test_weights_are_hashed_once_until_they_change_in_place(monkeypatch):
    from skadapt.networks import _memo

    hashed = []
    hash_values = _memo._hash_values
    monkeypatch.setattr(_memo, "_hash_values", lambda t: hashed.append(t) or hash_values(t))
    torch.manual_seed(0)
    model = TinyCNN()
    base = module_fingerprint(model)
    n_tensors = len(model.state_dict())
    assert len(hashed) == n_tensors
    assert module_fingerprint(model) == base and len(hashed) == n_tensors, "not hashed again"
    with torch.no_grad():
        model.stage2[0].weight.mul_(1.5)  # an optimizer step or load_state_dict does the same
    stepped = module_fingerprint(model)
    assert stepped != base and len(hashed) == n_tensors + 1, "only the changed tensor again"
    model.stage1[0].weight.data.add_(0.25)  # .data bypasses the version counter
    assert module_fingerprint(model) not in (base, stepped)
    model.fc.weight = nn.Parameter(torch.zeros_like(model.fc.weight))  # a new tensor
    assert module_fingerprint(model, exclude=["fc"]) != module_fingerprint(model)


def test_a_checkpoint_rewritten_on_disk_gets_a_new_fingerprint(tmp_path):
    from skadapt.networks import resolve_network

    path = tmp_path / "tiny.pt"
    fingerprints = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save(TinyCNN().state_dict(), path)  # same size: only the times tell
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seed * 1_000_000))
        network = resolve_network(TinyCNN(), weights=path, n_outputs=2)
        fingerprints.append(module_fingerprint(network.module, exclude=network.head))
        again = resolve_network(TinyCNN(), weights=path, n_outputs=2)  # from the memo
        assert module_fingerprint(again.module, exclude=again.head) == fingerprints[-1]
    assert fingerprints[0] != fingerprints[1]
