"""Lock files of the embedding cache: each missing entry computed by one process, stale locks
expire, the cache stays readable."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from skadapt.finetune import _cache_lock
from skadapt.finetune._cache_lock import Heartbeat, is_stale, release, stale_after, try_lock
from skadapt.finetune._embedding_cache import EmbeddingCache


def _rows(keys):
    return np.stack([np.full(4, int(key[1:]), np.float32) for key in keys])


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_lock(path: Path, host: str, pid: int, age: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{host}\n{pid}\n{time.time() - age:.3f}\n")
    if age:
        past = time.time() - age
        os.utime(path, (past, past))


# --------------------------------------------------------------------------- the lock files
def test_a_lock_is_held_by_one_claimant_until_released(tmp_path):
    lock = tmp_path / "k.lock"
    assert try_lock(lock) and not try_lock(lock)
    host, pid, _ = lock.read_text().splitlines()
    assert int(pid) == os.getpid() and host
    release(lock)
    release(lock)  # already gone: nothing happens
    assert try_lock(lock)


def test_a_lock_is_stale_when_its_process_is_gone_or_it_was_not_touched(tmp_path):
    lock = tmp_path / "k.lock"
    assert not is_stale(lock, 60)  # no lock: nothing to break
    try_lock(lock)
    assert not is_stale(lock, 60)  # this (living) process holds it
    assert is_stale(lock, 60, now=time.time() + 61)  # untouched for longer than the timeout
    _write_lock(lock, _cache_lock._HOST, _dead_pid())
    assert is_stale(lock, 60)  # its process on this host has ended
    _write_lock(lock, "another-host", 1)
    assert not is_stale(lock, 60)  # another machine's process: only the timeout tells
    _write_lock(lock, "another-host", 1, age=120)
    assert is_stale(lock, 60)


def test_the_heartbeat_keeps_a_held_lock_fresh(tmp_path):
    lock = tmp_path / "k.lock"
    _write_lock(lock, "another-host", 1, age=120)
    assert is_stale(lock, 60)
    with Heartbeat([lock], interval=0.01):
        deadline = time.monotonic() + 10
        while is_stale(lock, 60) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert not is_stale(lock, 60)


def test_the_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("SKADAPT_CACHE_LOCK_STALE_S", raising=False)
    assert stale_after() == _cache_lock.DEFAULT_STALE_AFTER_S
    monkeypatch.setenv("SKADAPT_CACHE_LOCK_STALE_S", "7.5")
    assert stale_after() == 7.5
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv("SKADAPT_CACHE_LOCK_STALE_S", bad)
        with pytest.raises(ValueError, match="SKADAPT_CACHE_LOCK_STALE_S"):
            stale_after()


# --------------------------------------------------------------------------- compute_missing
def test_without_a_disk_store_everything_missing_is_computed_once():
    cache = EmbeddingCache(max_memory_bytes=2**20)
    calls = []
    values = cache.compute_missing(["k1", "k2", "k1"], lambda keys: calls.append(keys) or _rows(keys))
    assert calls == [["k1", "k2"]] and cache.stats.computed == 2
    assert values["k2"][0] == 2 and cache.get_many(["k1"])[0][0] == 1


def test_processes_sharing_a_folder_compute_each_entry_once(tmp_path):
    """Two caches with their own memory (as two workers have) on one folder, missing overlapping
    entries at the same time: every entry is computed by exactly one of them."""
    computed: list[str] = []
    lock = threading.Lock()

    def compute(keys):
        time.sleep(0.01)  # long enough for the other claimant to find these claimed
        with lock:
            computed.extend(keys)
        return _rows(keys)

    caches = [EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path) for _ in range(2)]
    wanted = [[f"k{i}" for i in range(0, 150)], [f"k{i}" for i in range(30, 200)]]
    results: list[dict] = [{}, {}]
    threads = [threading.Thread(target=lambda i=i: results[i].update(
        caches[i].compute_missing(wanted[i], compute, chunk_size=10))) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(computed) == sorted(f"k{i}" for i in range(200))  # each once, none twice
    for result, keys in zip(results, wanted):
        assert sorted(result) == sorted(keys)
        assert all(result[key][0] == int(key[1:]) for key in keys)
    assert caches[0].stats.computed + caches[1].stats.computed == 200
    assert not list(tmp_path.rglob("*.lock"))  # every lock released


def test_a_waiting_process_reads_what_the_lock_holder_wrote(tmp_path):
    holder = EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path)
    waiter = EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path)
    assert holder._disk.try_lock("k7")  # the holder is computing k7
    calls = []
    result = {}
    thread = threading.Thread(target=lambda: result.update(waiter.compute_missing(
        ["k7"], lambda keys: calls.append(keys) or _rows(keys))))
    thread.start()
    time.sleep(0.1)
    assert thread.is_alive()  # waiting, not computing
    holder.put_many(["k7"], _rows(["k7"]))
    release(holder._disk.lock_path("k7"))
    thread.join(timeout=30)
    assert not thread.is_alive() and calls == []
    assert result["k7"][0] == 7 and waiter.stats.waited == 1 and waiter.stats.computed == 0


@pytest.mark.parametrize("holder", ["dead process", "silent for too long"])
def test_a_stale_lock_does_not_block_the_others(tmp_path, monkeypatch, holder):
    cache = EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path)
    if holder == "dead process":
        _write_lock(cache._disk.lock_path("k3"), _cache_lock._HOST, _dead_pid())
    else:
        monkeypatch.setenv("SKADAPT_CACHE_LOCK_STALE_S", "60")
        _write_lock(cache._disk.lock_path("k3"), "another-host", 1, age=120)
    values = cache.compute_missing(["k3"], _rows)
    assert values["k3"][0] == 3 and cache.stats.computed == 1
    assert not cache._disk.lock_path("k3").exists()


def test_an_entry_written_before_the_claim_is_read_not_computed(tmp_path):
    EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path).put_many(["k5"], _rows(["k5"]))
    cache = EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path)
    values = cache.compute_missing(["k5"], lambda keys: pytest.fail("computed again"))
    assert values["k5"][0] == 5 and cache.stats.computed == 0


def test_a_failed_computation_releases_its_locks(tmp_path):
    cache = EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path)

    def broken(keys):
        raise RuntimeError("unreadable image")

    with pytest.raises(RuntimeError, match="unreadable image"):
        cache.compute_missing(["k1", "k2"], broken)
    assert not list(tmp_path.rglob("*.lock"))
    assert cache.compute_missing(["k1"], _rows)["k1"][0] == 1


def test_a_folder_without_lock_files_computes_alone(tmp_path, monkeypatch):
    cache = EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path)

    def refuse(key):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(cache._disk, "try_lock", refuse)
    values = cache.compute_missing(["k1", "k2"], _rows)
    assert sorted(values) == ["k1", "k2"] and cache.stats.computed == 2


def test_clear_removes_lock_files_too(tmp_path):
    cache = EmbeddingCache(max_memory_bytes=2**20, cache_dir=tmp_path)
    cache.compute_missing(["k1"], _rows)
    assert cache._disk.try_lock("k2")
    cache.clear(disk=True)
    assert not list(tmp_path.rglob("*.lock")) and not list(tmp_path.rglob("*.emb"))
