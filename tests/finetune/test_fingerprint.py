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
