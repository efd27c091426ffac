"""The embedding cache: embeddings by key, in a bounded memory store and optionally on disk.

Keys come from ``_fingerprint.py``. :class:`EmbeddingCache` keeps entries in memory, in a
least-recently-used store (:class:`MemoryLRU`) bounded in bytes, and optionally on disk in
``cache_dir``, where several processes (``GridSearchCV(n_jobs=4)``) may read and write at once:

- one file per entry, written to a temporary file in the same folder then renamed with
  ``os.replace``, so a reader sees a complete entry or none;
- each file carries a checksum of its content and is read back with ``numpy.load(...,
  allow_pickle=False)``: a truncated or corrupted entry fails the check, is deleted, counted in
  ``stats.corrupted`` and recomputed, never trusted;
- the disk store is not bounded: delete the folder, or call ``clear(disk=True)``, to reclaim it;
- :meth:`EmbeddingCache.compute_missing` computes each missing entry in one process only: a
  process claims the entries it computes with lock files beside them (``_cache_lock.py``), and the
  others wait for their files instead of computing them too (locks of dead processes expire), so
  a search spread over the workers of a cluster runs the backbone about once per sample.

The estimators use :func:`shared_cache`: one memory store per process, whose bound is the
configured one (``skadapt.set_config(cache_memory_mb=...)``; by default 512 MiB, unless the
``SKADAPT_CACHE_MEMORY_BYTES`` environment variable says otherwise), read again at each call.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from skadapt._config import DEFAULT_CACHE_MEMORY_MB, cache_memory_bytes
from skadapt.finetune._cache_lock import Heartbeat, break_if_stale, release, stale_after, try_lock
from skadapt.finetune._fingerprint import DIGEST_SIZE, FORMAT_VERSION

__all__ = [
    "DEFAULT_MAX_MEMORY_BYTES",
    "CacheStats",
    "EmbeddingCache",
    "MemoryLRU",
    "shared_cache",
]

DEFAULT_MAX_MEMORY_BYTES = DEFAULT_CACHE_MEMORY_MB * 2**20
_MAGIC = b"SKEMB001"
_ENTRY_OVERHEAD_BYTES = 200  # key string, OrderedDict node, array header: counted against the bound
_FIRST_POLL_S, _MAX_POLL_S = 0.02, 1.0  # waiting for another process's entries: poll, backing off
# Each round looks at the first this many chunks of what is still missing (claims, reads, stale
# locks), not at all of it: the other processes claim in the same order, so that is where their
# work ends first, and a shared file system is not asked about every entry every second.
_WINDOW_CHUNKS = 8


class MemoryLRU:
    """A thread-safe dict that forgets its least recently used entries beyond ``max_bytes``.

    Parameters
    ----------
    max_bytes : int
        Bound on the sum of the entries' sizes (plus a small per-entry overhead). An entry larger
        than the bound is not stored.
    sizeof : callable, default=``nbytes``
        The size in bytes of a value.

    Examples
    --------
    >>> import numpy as np
    >>> lru = MemoryLRU(max_bytes=1000)
    >>> lru.put("a", np.zeros(100, np.float32)); lru.put("b", np.zeros(100, np.float32))
    >>> lru.get("a") is None, lru.get("b").shape  # 'a' made room for 'b'
    (True, (100,))
    """

    def __init__(self, max_bytes: int, sizeof: Callable[[object], int] | None = None):
        self.max_bytes = _check_max_bytes(max_bytes)
        self._sizeof = sizeof or _nbytes
        self._entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value) -> None:
        size = self._sizeof(value) + _ENTRY_OVERHEAD_BYTES
        with self._lock:
            self._drop(key)
            if size > self.max_bytes:
                return
            self._evict_down_to(self.max_bytes - size)
            self._entries[key] = (value, size)
            self.nbytes += size

    def resize(self, max_bytes: int) -> None:
        """Change the bound; least recently used entries go until the others fit in it."""
        max_bytes = _check_max_bytes(max_bytes)
        with self._lock:
            self.max_bytes = max_bytes
            self._evict_down_to(max_bytes)

    def room_for(self, value) -> bool:
        """Whether ``value`` fits without evicting anything."""
        return self.nbytes + self._sizeof(value) + _ENTRY_OVERHEAD_BYTES <= self.max_bytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def _evict_down_to(self, nbytes: int) -> None:
        while self.nbytes > nbytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.nbytes -= entry[1]


def _check_max_bytes(max_bytes) -> int:
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise ValueError(f"max_bytes={max_bytes!r}: pass an int >= 0 (0 disables the store).")
    return max_bytes


def _nbytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    return int(value.nbytes)


# --------------------------------------------------------------------------- disk store
class _DiskStore:
    """One checksummed ``.npy`` file per entry under ``directory``, written atomically."""

    def __init__(self, directory: str | os.PathLike):
        self.root = Path(directory) / FORMAT_VERSION
        self._write_failed = False
        self._folders: set[Path] = set()  # made already

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.emb"

    def lock_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.lock"

    @property
    def can_lock(self) -> bool:
        return not self._write_failed

    def try_lock(self, key: str) -> bool:
        """Claim ``key``: False when another process holds its lock; OSError when the folder
        takes no lock files (read-only, full)."""
        path = self.lock_path(key)
        if path.parent not in self._folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(path.parent)
        return try_lock(path)

    def get(self, key: str) -> tuple[np.ndarray | None, bool]:
        """The entry, or None; and whether a corrupted file was found (and deleted)."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, False
        except OSError:
            return None, False  # unreadable (permissions, I/O): recompute, keep going
        value = _decode_entry(data)
        if value is None:
            _remove_quietly(path)
            return None, True
        return value, False

    def put(self, key: str, value: np.ndarray) -> None:
        if self._write_failed:
            return
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(_encode_entry(value))
                os.replace(temporary, path)  # atomic: readers see the old entry or the new one
            except BaseException:
                _remove_quietly(Path(temporary))
                raise
        except OSError as error:  # full disk, read-only folder: the cache degrades to memory
            self._write_failed = True
            warnings.warn(f"could not write to the embedding cache in {str(self.root)!r} "
                          f"({error}); going on without the disk cache.", RuntimeWarning,
                          stacklevel=4)

    def clear(self) -> None:
        if not self.root.is_dir():
            return
        for entry in self.root.glob("*/*"):
            if entry.suffix in (".emb", ".tmp", ".lock"):
                _remove_quietly(entry)


def _encode_entry(value: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
    payload = buffer.getvalue()
    return _MAGIC + hashlib.blake2b(payload, digest_size=DIGEST_SIZE).digest() + payload


def _decode_entry(data: bytes) -> np.ndarray | None:
    header = len(_MAGIC) + DIGEST_SIZE
    if len(data) < header or not data.startswith(_MAGIC):
        return None
    payload = data[header:]
    if hashlib.blake2b(payload, digest_size=DIGEST_SIZE).digest() != data[len(_MAGIC):header]:
        return None
    try:
        return np.load(io.BytesIO(payload), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass  # already gone (another process cleaned it up), or not ours to delete


# --------------------------------------------------------------------------- embedding cache
@dataclass
class CacheStats:
    """Counts since the cache was made (or ``reset_stats`` was called).

    ``hits`` counts lookups answered from memory or disk (``disk_hits`` of them from disk),
    ``misses`` lookups that had to be computed, ``corrupted`` disk entries found damaged.
    Of the missing entries (:meth:`EmbeddingCache.compute_missing`), ``computed`` were computed
    by this process and ``waited`` were read from the disk store once another process sharing it
    had computed them.
    """

    hits: int = 0
    misses: int = 0
    disk_hits: int = 0
    corrupted: int = 0
    computed: int = 0
    waited: int = 0


class EmbeddingCache:
    """Embeddings by key, in memory (bounded) and optionally on disk (shared between processes).

    Parameters
    ----------
    max_memory_bytes : int, optional
        Bound of the in-memory store; least recently used entries go first. Default: the
        configured bound, ``skadapt.set_config(cache_memory_mb=...)`` (512 MiB unless the
        ``SKADAPT_CACHE_MEMORY_BYTES`` environment variable says otherwise). Ignored when
        ``memory`` is given.
    cache_dir : str or path-like, optional
        A folder for the disk store (created when first written). ``None``: memory only.
    memory : MemoryLRU, optional
        An in-memory store to share with other caches (see :func:`shared_cache`).

    Attributes
    ----------
    stats : CacheStats

    Examples
    --------
    >>> import numpy as np
    >>> cache = EmbeddingCache(max_memory_bytes=2**20)
    >>> cache.get_many(["k1", "k2"])
    [None, None]
    >>> cache.put_many(["k1"], [np.ones(3, np.float32)])
    >>> [value is not None for value in cache.get_many(["k1", "k2"])], cache.stats.hits
    ([True, False], 1)
    """

    def __init__(self, max_memory_bytes: int | None = None,
                 cache_dir: str | os.PathLike | None = None, *, memory: MemoryLRU | None = None):
        self.memory = memory if memory is not None else MemoryLRU(
            cache_memory_bytes() if max_memory_bytes is None else max_memory_bytes)
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self._disk = None if cache_dir is None else _DiskStore(cache_dir)
        self.stats = CacheStats()
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        """The cached value of each key, or None; disk hits are kept in memory too."""
        found: list[np.ndarray | None] = []
        hits = disk_hits = corrupted = 0
        for key in keys:
            value = self.memory.get(key)
            if value is None and self._disk is not None:
                value, damaged = self._disk.get(key)
                corrupted += damaged
                if value is not None:
                    disk_hits += 1
                    self.memory.put(key, value)
            hits += value is not None
            found.append(value)
        with self._lock:
            self.stats.hits += hits
            self.stats.misses += len(keys) - hits
            self.stats.disk_hits += disk_hits
            self.stats.corrupted += corrupted
        return found

    def put_many(self, keys: Sequence[str], values: Sequence[np.ndarray]) -> None:
        """Store each value under its key, in memory and on disk."""
        for key, value in zip(keys, values, strict=True):
            self.memory.put(key, value)
            if self._disk is not None:
                self._disk.put(key, value)

    def compute_missing(self, keys: Sequence[str],
                        compute: Callable[[list[str]], Sequence[np.ndarray]], *,
                        chunk_size: int = 1024) -> dict[str, np.ndarray]:
        """Compute and store the values of ``keys`` (missing from the cache), each in one process.

        Without a disk store, ``compute(keys)`` runs once on all of them. With one, several
        processes may miss the same entries at the same time (the workers of a distributed
        search); each process claims up to ``chunk_size`` entries nobody else is computing (a
        lock file per entry), computes those, stores them and releases them, and so on; when
        all it still needs are claimed by others, it waits for their files. A lock whose process
        died expires (``_cache_lock.py``), so a dead worker delays the others but never blocks
        them. When the folder takes no lock files (read-only), this process computes alone.

        Parameters
        ----------
        keys : sequence of str
            Keys missing from the cache (repeats are computed once).
        compute : callable
            A list of keys to their values, in the same order (an ``(n, d)`` array or a list).
        chunk_size : int, default=1024
            The most entries claimed (and passed to ``compute``) at once.

        Returns
        -------
        dict
            Every key's value.

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> cache = EmbeddingCache(cache_dir=tempfile.mkdtemp())
        >>> values = cache.compute_missing(["k1", "k2"], lambda keys: np.ones((len(keys), 3)))
        >>> sorted(values), cache.stats.computed
        (['k1', 'k2'], 2)
        """
        pending = list(dict.fromkeys(keys))
        if self._disk is None or not self._disk.can_lock:
            return self._compute_and_put(pending, compute)
        values: dict[str, np.ndarray] = {}
        timeout = stale_after()
        delay = _FIRST_POLL_S
        while pending:
            window = pending[:_WINDOW_CHUNKS * chunk_size]
            try:
                claimed = self._claim(window, chunk_size)
            except OSError:  # no lock files here: compute the rest without them
                values.update(self._compute_and_put(pending, compute))
                break
            if claimed:
                values.update(self._compute_claimed(claimed, compute, timeout))
                delay = _FIRST_POLL_S
            else:  # all claimed by other processes: wait for their entries, or their locks to go
                time.sleep(delay)
                delay = min(2 * delay, _MAX_POLL_S)
                found = self._read_disk(window)
                with self._lock:
                    self.stats.waited += len(found)
                values.update(found)
                for key in window:
                    if key not in found:
                        break_if_stale(self._disk.lock_path(key), timeout)
            pending = [key for key in pending if key not in values]
        return values

    def _claim(self, keys: list[str], most: int) -> list[str]:
        claimed: list[str] = []
        try:
            for key in keys:
                if len(claimed) == most:
                    break
                if self._disk.try_lock(key):
                    claimed.append(key)
        except OSError:
            self._release(claimed)
            raise
        return claimed

    def _compute_claimed(self, claimed: list[str], compute, timeout: float) -> dict:
        try:
            # written by another process between this one's lookup and its claim?
            values = self._read_disk(claimed)
            todo = [key for key in claimed if key not in values]
            if todo:
                locks = [self._disk.lock_path(key) for key in todo]
                with Heartbeat(locks, interval=timeout / 6):
                    values.update(self._compute_and_put(todo, compute))
        finally:
            self._release(claimed)
        return values

    def _release(self, keys: list[str]) -> None:
        for key in keys:
            release(self._disk.lock_path(key))

    def _read_disk(self, keys: list[str]) -> dict[str, np.ndarray]:
        found, corrupted = {}, 0
        for key in keys:
            value, damaged = self._disk.get(key)
            corrupted += damaged
            if value is not None:
                found[key] = value
                self.memory.put(key, value)
        if corrupted:
            with self._lock:
                self.stats.corrupted += corrupted
        return found

    def _compute_and_put(self, keys: list[str], compute) -> dict[str, np.ndarray]:
        if not keys:
            return {}
        computed = compute(keys)
        if len(computed) != len(keys):
            raise RuntimeError(f"compute gave {len(computed)} values for {len(keys)} keys.")
        fresh = {key: np.array(row, copy=True) for key, row in zip(keys, computed)}  # no big base
        self.put_many(list(fresh), list(fresh.values()))
        with self._lock:
            self.stats.computed += len(fresh)
        return fresh

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = CacheStats()

    def clear(self, disk: bool = False) -> None:
        """Forget the in-memory entries (this cache's memory store is shared, see ``memory``);
        with ``disk=True`` delete the disk entries too."""
        self.memory.clear()
        if disk and self._disk is not None:
            self._disk.clear()

    def __repr__(self) -> str:
        where = f", cache_dir={self.cache_dir!r}" if self.cache_dir else ""
        return (f"EmbeddingCache(max_memory_bytes={self.memory.max_bytes}{where}, "
                f"{len(self.memory)} entries in memory)")


_SHARED_LOCK = threading.Lock()
_SHARED_MEMORY: MemoryLRU | None = None
_SHARED: dict[str | None, EmbeddingCache] = {}


def shared_cache(cache_dir: str | os.PathLike | None = None) -> EmbeddingCache:
    """This process's embedding cache for ``cache_dir`` (None: memory only).

    Every estimator of the process (clones in ``GridSearchCV``, folds of ``cross_validate``) uses
    the same in-memory store, so its bound holds for the whole process; each ``cache_dir`` adds its
    own disk store. The bound is the configured one (``skadapt.set_config(cache_memory_mb=...)``,
    see :class:`EmbeddingCache` for the default), read at each call: when it has changed, the
    store is resized (least recently used entries go first when it shrinks).

    Examples
    --------
    >>> shared_cache() is shared_cache()
    True
    """
    global _SHARED_MEMORY
    directory = None if cache_dir is None else os.path.abspath(os.fspath(cache_dir))
    bound = cache_memory_bytes()
    with _SHARED_LOCK:
        if _SHARED_MEMORY is None:
            _SHARED_MEMORY = MemoryLRU(bound)
        elif _SHARED_MEMORY.max_bytes != bound:
            _SHARED_MEMORY.resize(bound)
        if directory not in _SHARED:
            _SHARED[directory] = EmbeddingCache(cache_dir=directory, memory=_SHARED_MEMORY)
        return _SHARED[directory]
