"""The embedding cache and the decoded-image cache: keys, bounds, disk safety, invalidation."""

import copy
import hashlib
import io
import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from torch import nn

from skadapt.finetune import _cache
from skadapt.finetune._cache import (
    DecodedImageCache,
    DecodedImageDataset,
    EmbeddingCache,
    MemoryLRU,
    make_decode_transform,
    module_fingerprint,
    sample_keys,
    shared_cache,
    transform_fingerprint,
)
from skadapt.finetune._inputs import adapt_inputs, adapt_texts, load_rgb, make_transform
from tests.finetune.conftest import TinyCNN


def _row(value, size=16):
    return np.full(size, value, dtype=np.float32)


def _entries(cache_dir):
    return sorted(Path(cache_dir).rglob("*.emb"))


def _photo(path, size=(40, 30), color=(200, 30, 30)):
    PIL.Image.new("RGB", size, color).save(path)
    return str(path)


# --------------------------------------------------------------------------- memory store
def test_memory_lru_stays_within_its_bound_and_evicts_least_recently_used_first():
    row_bytes = _row(0).nbytes + _cache._ENTRY_OVERHEAD_BYTES
    lru = MemoryLRU(max_bytes=3 * row_bytes)
    for key in "abc":
        lru.put(key, _row(ord(key)))
    lru.get("a")  # now b is the least recently used
    lru.put("d", _row(4))
    assert "b" not in lru and {"a", "c", "d"} <= {k for k in "abcd" if k in lru}
    assert lru.nbytes == 3 * row_bytes <= lru.max_bytes
    lru.put("huge", np.zeros(10_000, np.float32))  # larger than the bound: not kept, nothing lost
    assert "huge" not in lru and len(lru) == 3
    lru.put("a", _row(9))  # replacing an entry does not count it twice
    assert lru.nbytes == 3 * row_bytes and lru.get("a")[0] == 9


def test_memory_lru_rejects_a_negative_bound():
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryLRU(max_bytes=-1)


def test_memory_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SKADAPT_CACHE_MEMORY_BYTES", "12345")
    assert EmbeddingCache().memory.max_bytes == 12345
    monkeypatch.setenv("SKADAPT_CACHE_MEMORY_BYTES", "lots")
    with pytest.raises(ValueError, match="SKADAPT_CACHE_MEMORY_BYTES"):
        EmbeddingCache()
    monkeypatch.delenv("SKADAPT_CACHE_MEMORY_BYTES")
    assert EmbeddingCache().memory.max_bytes == _cache.DEFAULT_MAX_MEMORY_BYTES


# --------------------------------------------------------------------------- embedding cache
def test_hits_and_misses_are_counted():
    cache = EmbeddingCache(max_memory_bytes=2**20)
    assert cache.get_many(["a", "b"]) == [None, None]
    cache.put_many(["a"], [_row(1)])
    found = cache.get_many(["a", "b", "a"])
    assert found[0][0] == 1 and found[1] is None
    assert (cache.stats.hits, cache.stats.misses) == (2, 3)


def test_disk_entries_survive_the_process_memory(tmp_path):
    writer = EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path)
    writer.put_many(["k1", "k2"], [_row(1), _row(2)])
    assert len(_entries(tmp_path)) == 2
    assert not list(tmp_path.rglob("*.tmp")), "temporary files are renamed into place"
    reader = EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path)  # e.g. another process
    k1, k2 = reader.get_many(["k1", "k2"])
    np.testing.assert_array_equal(k1, _row(1))
    np.testing.assert_array_equal(k2, _row(2))
    assert reader.stats.disk_hits == 2
    reader.get_many(["k1"])
    assert reader.stats.disk_hits == 2, "a disk hit is kept in memory"


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage", "empty"])
def test_a_corrupted_disk_entry_is_detected_deleted_and_recomputed(tmp_path, damage):
    EmbeddingCache(cache_dir=tmp_path).put_many(["key"], [_row(7, size=64)])
    (path,) = _entries(tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) - 10])
    elif damage == "flip_byte":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same length, wrong checksum
    elif damage == "garbage":
        path.write_bytes(b"not an entry at all" * 10)
    else:
        path.write_bytes(b"")
    reader = EmbeddingCache(cache_dir=tmp_path)
    assert reader.get_many(["key"]) == [None]
    assert reader.stats.corrupted == 1 and reader.stats.misses == 1
    assert not path.exists(), "the damaged entry is removed"
    reader.put_many(["key"], [_row(7, size=64)])
    fresh = EmbeddingCache(cache_dir=tmp_path).get_many(["key"])[0]
    np.testing.assert_array_equal(fresh, _row(7, size=64))


def test_an_entry_that_would_need_pickle_is_never_loaded(tmp_path):
    cache = EmbeddingCache(cache_dir=tmp_path)
    cache.put_many(["key"], [_row(1)])
    (path,) = _entries(tmp_path)
    # a well-formed entry (right magic and checksum) whose payload is a pickled object array
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    payload = buffer.getvalue()
    digest = hashlib.blake2b(payload, digest_size=16).digest()
    path.write_bytes(_cache._MAGIC + digest + payload)
    reader = EmbeddingCache(cache_dir=tmp_path)
    assert reader.get_many(["key"]) == [None] and reader.stats.corrupted == 1


def _write_and_read(args):
    cache_dir, worker = args
    cache = EmbeddingCache(max_memory_bytes=0, cache_dir=cache_dir)  # every read goes to disk
    keys = [f"key{i}" for i in range(40)]
    for round_ in range(3):
        cache.put_many(keys, [_row(i, size=256) for i in range(40)])
        for i, value in enumerate(cache.get_many(keys)):
            if value is not None and not np.array_equal(value, _row(i, size=256)):
                return f"worker {worker} round {round_}: wrong value for key{i}"
    return cache.stats.corrupted


def test_concurrent_writers_never_leave_a_partial_or_wrong_entry(tmp_path):
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=3, mp_context=context) as pool:
        results = list(pool.map(_write_and_read, [(str(tmp_path), w) for w in range(3)]))
    assert results == [0, 0, 0], results
    assert len(_entries(tmp_path)) == 40
    assert not list(tmp_path.rglob("*.tmp"))
    values = EmbeddingCache(cache_dir=tmp_path).get_many([f"key{i}" for i in range(40)])
    for i, value in enumerate(values):
        np.testing.assert_array_equal(value, _row(i, size=256))


def test_an_unwritable_cache_dir_degrades_to_memory_with_a_warning(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cache = EmbeddingCache(cache_dir=blocker)
    with pytest.warns(RuntimeWarning, match="could not write to the embedding cache"):
        cache.put_many(["a", "b"], [_row(1), _row(2)])
    assert cache.get_many(["a"])[0][0] == 1


def test_clear_forgets_memory_and_optionally_disk(tmp_path):
    cache = EmbeddingCache(cache_dir=tmp_path)
    cache.put_many(["a"], [_row(1)])
    cache.clear()
    assert len(cache.memory) == 0 and len(_entries(tmp_path)) == 1
    cache.clear(disk=True)
    assert _entries(tmp_path) == [] and cache.get_many(["a"]) == [None]


def test_shared_cache_is_one_per_folder_with_one_memory_bound(tmp_path):
    assert shared_cache() is shared_cache()
    on_disk = shared_cache(tmp_path)
    assert on_disk is shared_cache(str(tmp_path)) and on_disk is not shared_cache()
    assert on_disk.memory is shared_cache().memory


# --------------------------------------------------------------------------- keys
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


# --------------------------------------------------------------------------- decoded images
@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        pixels = rng.integers(0, 255, size=(30 + i, 40, 3), dtype=np.uint8)
        path = tmp_path / f"photo{i}.png"
        PIL.Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def _count_decodes(monkeypatch):
    calls = []

    def counting_load_rgb(path):
        calls.append(path)
        return load_rgb(path)

    monkeypatch.setattr(_cache, "load_rgb", counting_load_rgb)
    return calls


def test_each_image_is_decoded_once_across_epochs(photos, monkeypatch):
    calls = _count_decodes(monkeypatch)
    train = make_transform("files", train=True, image_size=16)
    data = DecodedImageDataset(photos, y=np.arange(6), decode=make_decode_transform(24),
                               transform=train)
    for _epoch in range(3):
        for i in range(len(data)):
            x, target = data[i]
            assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and int(target) == i
    assert len(calls) == len(photos)


def test_decoded_images_give_the_inference_transform_bit_for_bit(photos):
    inference = make_transform("files", train=False, image_size=21)  # resizes the short side to 24
    data = DecodedImageDataset(photos, decode=make_decode_transform(24), transform=inference)
    for i, path in enumerate(photos):
        torch.testing.assert_close(data[i][0], inference(load_rgb(path)), rtol=0, atol=0)


def test_predecode_with_workers_fills_the_main_process_cache(photos, monkeypatch):
    data = DecodedImageDataset(photos, decode=make_decode_transform(24))
    assert data.predecode(num_workers=2, batch_size=2) == len(photos)
    calls = _count_decodes(monkeypatch)
    assert all(data[i][0].dtype == torch.uint8 for i in range(len(photos)))
    assert calls == [] and data.predecode() == 0


def test_the_image_cache_is_bounded_and_the_rest_is_decoded_on_access(photos, monkeypatch):
    one_image = 3 * 24 * 32 + _cache._ENTRY_OVERHEAD_BYTES
    cache = DecodedImageCache(max_bytes=2 * one_image + 10)
    data = DecodedImageDataset(photos, decode=make_decode_transform(24), cache=cache)
    assert data.predecode() == 2
    assert cache.nbytes <= cache.max_bytes
    kept = [key for key in data.keys if key in cache]
    calls = _count_decodes(monkeypatch)
    for _epoch in range(2):
        for i in range(len(photos)):
            data[i]
    assert [key for key in data.keys if key in cache] == kept, "a full cache keeps what it has"
    assert len(calls) == 2 * (len(photos) - 2)


def test_a_changed_file_or_decode_transform_is_decoded_again(photos, monkeypatch):
    cache = DecodedImageCache()
    DecodedImageDataset(photos, decode=make_decode_transform(24), cache=cache).predecode()
    calls = _count_decodes(monkeypatch)
    PIL.Image.new("RGB", (50, 40), "white").save(photos[0])
    data = DecodedImageDataset(photos, decode=make_decode_transform(24), cache=cache)
    assert data[0][0].shape == (3, 24, 30) and int(data[0][0].min()) == 255
    assert calls == [photos[0]]
    bigger = DecodedImageDataset(photos, decode=make_decode_transform(28), cache=cache)
    assert bigger[1][0].shape[1] == 28 and len(calls) == 2


def test_decoded_dataset_checks_its_arguments(photos):
    with pytest.raises(TypeError, match="decode"):
        DecodedImageDataset(photos, decode="resize")
    with pytest.raises(ValueError, match="6 paths but 2 targets"):
        DecodedImageDataset(photos, y=[0, 1], decode=make_decode_transform(8))
    with pytest.raises(ValueError, match="short_side"):
        make_decode_transform(0)
