"""The embedding cache: memory bound, disk safety under concurrent writers, the shared cache."""

import hashlib
import io
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from skadapt.finetune import _embedding_cache
from skadapt.finetune._embedding_cache import EmbeddingCache, MemoryLRU, shared_cache


def _row(value, size=16):
    return np.full(size, value, dtype=np.float32)


def _entries(cache_dir):
    return sorted(Path(cache_dir).rglob("*.emb"))


# --------------------------------------------------------------------------- memory store
def test_memory_lru_stays_within_its_bound_and_evicts_least_recently_used_first():
    row_bytes = _row(0).nbytes + _embedding_cache._ENTRY_OVERHEAD_BYTES
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
    assert EmbeddingCache().memory.max_bytes == _embedding_cache.DEFAULT_MAX_MEMORY_BYTES


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
    path.write_bytes(_embedding_cache._MAGIC + digest + payload)
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
