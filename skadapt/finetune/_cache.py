"""Caches that let a frozen backbone's work be done once: embeddings, and decoded images.

Embedding cache
---------------
An embedding depends on the sample and on everything between the sample and the embedding: the
backbone's architecture and weights, the preprocessing, the layer and pooling, the precision. So
each entry is keyed by two hashes (blake2b):

- the sample's content (:func:`sample_keys`): the bytes of an array row (with its shape and
  dtype); for an image file its absolute path, size and modification time (the file is not read:
  an edit that keeps both size and mtime is not seen); the pixels of a PIL image; a text's
  characters;
- a fingerprint of the computation (:func:`fingerprint`), built from
  :func:`module_fingerprint` (every module's class, its ``forward`` bytecode and settings, and
  every parameter and buffer's bytes: different weights never share entries),
  :func:`transform_fingerprint` (the pickled preprocessing) and the torch / torchvision /
  Pillow versions.

:class:`EmbeddingCache` keeps entries in memory, in a least-recently-used store bounded in bytes
(``DEFAULT_MAX_MEMORY_BYTES``, 512 MiB, unless the ``SKADAPT_CACHE_MEMORY_BYTES`` environment
variable says otherwise), and optionally on disk in ``cache_dir``, where several processes
(``GridSearchCV(n_jobs=4)``) may read and write at once:

- one file per entry, written to a temporary file in the same folder then renamed with
  ``os.replace``, so a reader sees a complete entry or none;
- each file carries a checksum of its content and is read back with ``numpy.load(...,
  allow_pickle=False)``: a truncated or corrupted entry fails the check, is deleted, counted in
  ``stats.corrupted`` and recomputed, never trusted;
- the disk store is not bounded: delete the folder, or call ``clear(disk=True)``, to reclaim it.

Decoded-image cache
-------------------
:class:`DecodedImageDataset` decodes each image file once (through a deterministic ``decode``
transform, e.g. :func:`make_decode_transform`: resize, then a ``uint8`` tensor) and keeps the
result in a :class:`DecodedImageCache` bounded in bytes (``DEFAULT_IMAGE_CACHE_BYTES``, 1 GiB),
keyed by path, size, modification time and the ``decode`` transform's fingerprint. Random
augmentation runs after it, on every access. ``predecode`` fills the cache in parallel with
DataLoader workers before the first epoch; workers only read the cache (what a worker process
would add is lost when it exits), so memory does not grow with the number of workers. When the
data outgrow the bound, the cache keeps what fitted and the other images are decoded on every
access (no eviction: in a shuffled epoch it would not raise the hit rate, only churn memory).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import PIL.Image
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torchvision.transforms import InterpolationMode, v2

from skadapt.finetune._inputs import Inputs, load_rgb

__all__ = [
    "DEFAULT_IMAGE_CACHE_BYTES",
    "DEFAULT_MAX_MEMORY_BYTES",
    "CacheStats",
    "DecodedImageCache",
    "DecodedImageDataset",
    "EmbeddingCache",
    "MemoryLRU",
    "fingerprint",
    "make_decode_transform",
    "module_fingerprint",
    "sample_keys",
    "shared_cache",
    "transform_fingerprint",
]

DEFAULT_MAX_MEMORY_BYTES = 512 * 2**20
DEFAULT_IMAGE_CACHE_BYTES = 2**30
MEMORY_ENV_VARIABLE = "SKADAPT_CACHE_MEMORY_BYTES"
# Bumped whenever the meaning of a key or the file format changes: old entries are then ignored.
_FORMAT_VERSION = "skadapt-embeddings-v1"
_MAGIC = b"SKEMB001"
_DIGEST_SIZE = 16
_ENTRY_OVERHEAD_BYTES = 200  # key string, OrderedDict node, array header: counted against the bound
_LIBRARIES = (f"torch={torch.__version__};torchvision={torchvision.__version__};"
              f"pil={PIL.__version__}")


def _hasher() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=_DIGEST_SIZE)


# --------------------------------------------------------------------------- fingerprints
def fingerprint(*parts: str) -> str:
    """One hash of the parts (and of the library versions), for the computation side of a key.

    Examples
    --------
    >>> fingerprint("a", "b") == fingerprint("a", "b") != fingerprint("ab")
    True
    """
    hasher = _hasher()
    for part in (_FORMAT_VERSION, _LIBRARIES, *parts):
        encoded = part.encode()
        hasher.update(len(encoded).to_bytes(8, "little"))  # "ab","c" and "a","bc" differ
        hasher.update(encoded)
    return hasher.hexdigest()


def module_fingerprint(module: nn.Module, exclude: Iterable[str] = ()) -> str:
    """Hash of a module's architecture, forward code and weights, leaving out some submodules.

    Parameters
    ----------
    module : torch.nn.Module
    exclude : iterable of str
        Dotted names of submodules to leave out (a head that is replaced per fit).

    Returns
    -------
    str
        Equal for two modules with the same classes, settings, ``forward`` bytecode, parameter and
        buffer names, dtypes, shapes and values.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> module_fingerprint(a) == module_fingerprint(b)
    False
    """
    skipped = tuple(exclude)
    prefixes = tuple(name + "." for name in skipped)

    def kept(name: str) -> bool:
        return name not in skipped and not name.startswith(prefixes)

    hasher = _hasher()
    for name, sub in module.named_modules():
        if name and not kept(name):
            continue
        cls = type(sub)
        code = getattr(getattr(cls, "forward", None), "__code__", None)
        hasher.update(f"{name}|{cls.__module__}.{cls.__qualname__}|{sub.extra_repr()}|".encode())
        if code is not None:
            hasher.update(code.co_code)
    for name, tensor in module.state_dict(keep_vars=False).items():
        if kept(name):
            hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            hasher.update(_tensor_bytes(tensor))
    return hasher.hexdigest()


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def transform_fingerprint(transform: Callable | None) -> str:
    """Hash of a preprocessing transform: its pickled state, or its ``repr`` if it cannot pickle.

    Pickling captures every setting of torchvision transforms (sizes, interpolation, mean, std)
    and is stable across processes. A transform that cannot be pickled (a lambda) falls back to
    its ``repr``, which may hold a memory address: entries are then not shared between
    processes, but never mixed up.

    Examples
    --------
    >>> from torchvision.transforms import InterpolationMode, v2
    >>> transform_fingerprint(v2.Resize(32)) == transform_fingerprint(v2.Resize(32))
    True
    >>> transform_fingerprint(v2.Resize(32)) == transform_fingerprint(v2.Resize(64))
    False
    """
    if transform is None:
        return "none"
    try:
        content = pickle.dumps(transform, protocol=4)
    except (pickle.PicklingError, TypeError, AttributeError):
        content = repr(transform).encode()
    return hashlib.blake2b(content, digest_size=_DIGEST_SIZE).hexdigest()


# --------------------------------------------------------------------------- sample keys
def sample_keys(inputs: Inputs, computation: str) -> list[str]:
    """One cache key per sample: a hash of the sample's content and of ``computation``.

    Parameters
    ----------
    inputs : Inputs
        ``"array"``: each row's bytes, shape and dtype; ``"files"``: absolute path, size and
        modification time (``os.stat``); ``"pil"``: mode, size and pixels; ``"texts"``: the text.
    computation : str
        A :func:`fingerprint` of what turns the sample into its cached value.

    Returns
    -------
    list of str
        Hex digests, equal for equal samples.

    Examples
    --------
    >>> import numpy as np
    >>> from skadapt.finetune._inputs import adapt_inputs
    >>> keys = sample_keys(adapt_inputs(np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]])), "f")
    >>> keys[0] == keys[1] != keys[2]
    True
    """
    prefix = computation.encode() + b"|" + inputs.kind.encode() + b"|"
    return [_key(prefix, content) for content in _contents(inputs)]


def _key(prefix: bytes, content: bytes | memoryview) -> str:
    hasher = _hasher()
    hasher.update(prefix)
    hasher.update(content)
    return hasher.hexdigest()


def _contents(inputs: Inputs):
    if inputs.kind == "array":
        items = np.ascontiguousarray(inputs.items)
        header = f"{items.dtype.str}{items.shape[1:]}|".encode()
        for row in items:
            yield header + row.tobytes()
    elif inputs.kind == "files":
        for path in inputs.items:
            yield file_identity(path).encode()
    elif inputs.kind == "pil":
        for image in inputs.items:
            yield f"{image.mode}{image.size}|".encode() + image.tobytes()
    elif inputs.kind == "texts":
        for text in inputs.items:
            yield text.encode("utf-8", "surrogatepass")
    else:
        raise ValueError(f"inputs of kind {inputs.kind!r} have no cache key.")


def file_identity(path: str | os.PathLike) -> str:
    """Absolute path, size and modification time (ns) of a file: what a file's key is made of."""
    absolute = os.path.abspath(path)
    stat = os.stat(absolute)
    return f"{absolute}\0{stat.st_size}\0{stat.st_mtime_ns}"


# --------------------------------------------------------------------------- memory store
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
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise ValueError(f"max_bytes={max_bytes!r}: pass an int >= 0 (0 disables the store).")
        self.max_bytes = max_bytes
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
            while self.nbytes + size > self.max_bytes:
                self._drop(next(iter(self._entries)))
            self._entries[key] = (value, size)
            self.nbytes += size

    def room_for(self, value) -> bool:
        """Whether ``value`` fits without evicting anything."""
        return self.nbytes + self._sizeof(value) + _ENTRY_OVERHEAD_BYTES <= self.max_bytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.nbytes -= entry[1]


def _nbytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    return int(value.nbytes)


# --------------------------------------------------------------------------- disk store
class _DiskStore:
    """One checksummed ``.npy`` file per entry under ``directory``, written atomically."""

    def __init__(self, directory: str | os.PathLike):
        self.root = Path(directory) / _FORMAT_VERSION
        self._write_failed = False

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.emb"

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
            if entry.suffix in (".emb", ".tmp"):
                _remove_quietly(entry)


def _encode_entry(value: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
    payload = buffer.getvalue()
    return _MAGIC + hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() + payload


def _decode_entry(data: bytes) -> np.ndarray | None:
    header = len(_MAGIC) + _DIGEST_SIZE
    if len(data) < header or not data.startswith(_MAGIC):
        return None
    payload = data[header:]
    if hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() != data[len(_MAGIC):header]:
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
    """

    hits: int = 0
    misses: int = 0
    disk_hits: int = 0
    corrupted: int = 0


class EmbeddingCache:
    """Embeddings by key, in memory (bounded) and optionally on disk (shared between processes).

    Parameters
    ----------
    max_memory_bytes : int, optional
        Bound of the in-memory store; least recently used entries go first. Default:
        ``DEFAULT_MAX_MEMORY_BYTES`` (512 MiB), or the ``SKADAPT_CACHE_MEMORY_BYTES``
        environment variable. Ignored when ``memory`` is given.
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
            _memory_limit() if max_memory_bytes is None else max_memory_bytes)
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


def _memory_limit() -> int:
    value = os.environ.get(MEMORY_ENV_VARIABLE)
    if value is None:
        return DEFAULT_MAX_MEMORY_BYTES
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if limit < 0:
        raise ValueError(f"{MEMORY_ENV_VARIABLE}={value!r}: set it to a number of bytes >= 0 "
                         "(0 keeps nothing in memory).")
    return limit


_SHARED_LOCK = threading.Lock()
_SHARED_MEMORY: MemoryLRU | None = None
_SHARED: dict[str | None, EmbeddingCache] = {}


def shared_cache(cache_dir: str | os.PathLike | None = None) -> EmbeddingCache:
    """This process's embedding cache for ``cache_dir`` (None: memory only).

    Every estimator of the process (clones in ``GridSearchCV``, folds of ``cross_validate``) uses
    the same in-memory store, so its bound (see :class:`EmbeddingCache`) holds for the whole
    process; each ``cache_dir`` adds its own disk store.

    Examples
    --------
    >>> shared_cache() is shared_cache()
    True
    """
    global _SHARED_MEMORY
    directory = None if cache_dir is None else os.path.abspath(os.fspath(cache_dir))
    with _SHARED_LOCK:
        if _SHARED_MEMORY is None:
            _SHARED_MEMORY = MemoryLRU(_memory_limit())
        if directory not in _SHARED:
            _SHARED[directory] = EmbeddingCache(cache_dir=directory, memory=_SHARED_MEMORY)
        return _SHARED[directory]


# --------------------------------------------------------------------------- decoded images
class DecodedImageCache(MemoryLRU):
    """Decoded images (tensors) by file identity and decode transform, bounded in bytes.

    Parameters
    ----------
    max_bytes : int, default=DEFAULT_IMAGE_CACHE_BYTES (1 GiB)

    Examples
    --------
    >>> cache = DecodedImageCache(max_bytes=2**20)
    >>> cache.max_bytes
    1048576
    """

    def __init__(self, max_bytes: int = DEFAULT_IMAGE_CACHE_BYTES):
        super().__init__(max_bytes)


def make_decode_transform(short_side: int, *, interpolation: str = "bilinear") -> v2.Compose:
    """A deterministic decode step: resize the image's short side to ``short_side``, as ``uint8``.

    Its output, a ``(3, h, w)`` ``uint8`` tensor, is what :class:`DecodedImageDataset` keeps; the
    torchvision ``v2`` transforms of ``make_transform`` (resize, crops, flip, ``ToDtype`` with
    scaling, normalization) accept it in place of a PIL image. With ``short_side`` equal to the
    inference transform's resize size (``round(image_size / 0.875)``, or the weights'
    ``resize_size``), that transform gives exactly the tensor it gives on the PIL image (its own
    resize is then the identity). For training, random crops are taken from the resized image
    rather than from the full-resolution one: a larger ``short_side`` keeps more detail for them
    and costs ``3 * h * w`` bytes per image.

    Examples
    --------
    >>> from PIL import Image
    >>> image = make_decode_transform(30)(Image.new("RGB", (80, 60)))
    >>> image.dtype, tuple(image.shape)
    (torch.uint8, (3, 30, 40))
    """
    if isinstance(short_side, bool) or not isinstance(short_side, int) or short_side < 1:
        raise ValueError(f"short_side={short_side!r}: pass a positive int (pixels).")
    mode = InterpolationMode(interpolation)
    return v2.Compose([v2.Resize(short_side, interpolation=mode, antialias=True),
                       v2.PILToTensor(), v2.ToPureTensor()])


class DecodedImageDataset(Dataset):
    """Image files decoded once and kept in a bounded cache, augmented on every access.

    Parameters
    ----------
    paths : sequence of str or path-like
    y : array-like, optional
        Targets (``int`` -> ``int64``, ``float`` -> ``float32`` tensors); ``None`` gives 0.
    decode : callable
        Deterministic: RGB PIL image -> tensor (see :func:`make_decode_transform`). Part of the
        cache key, with each file's path, size and modification time.
    transform : callable, optional
        Applied to the decoded tensor on every access (random augmentation, normalization).
    cache : DecodedImageCache, optional
        Where decoded images are kept; by default a new one bounded by 1 GiB (one cache per
        dataset: what a fit decodes is freed with it).

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "red.png")
    >>> Image.new("RGB", (40, 30), "red").save(path)
    >>> data = DecodedImageDataset([path], decode=make_decode_transform(20))
    >>> data.predecode(), tuple(data[0][0].shape), data.predecode()
    (1, (3, 20, 26), 0)
    """

    def __init__(self, paths: Sequence, y=None, *, decode: Callable,
                 transform: Callable | None = None, cache: DecodedImageCache | None = None):
        if not callable(decode):
            raise TypeError(f"decode={decode!r}: pass a callable, e.g. make_decode_transform(256).")
        self.paths = [os.fspath(path) for path in paths]
        self.decode = decode
        self.transform = transform
        self.cache = cache if cache is not None else DecodedImageCache()
        self.y = None if y is None else torch.as_tensor(_targets(y))
        if self.y is not None and len(self.y) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.y)} targets: they must match.")
        decode_key = transform_fingerprint(decode)
        self.keys = [f"{file_identity(path)}\0{decode_key}" for path in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.decoded(index)
        x = self.transform(image) if self.transform is not None else image
        target = self.y[index] if self.y is not None else torch.tensor(0)
        return x, target

    def decoded(self, index: int) -> torch.Tensor:
        """The decoded image: from the cache, or decoded now (and kept if there is room).

        Once the cache is full, nothing is evicted: with samples drawn in a new random order every
        epoch, evicting would not raise the hit rate, only churn memory. Workers never add (their
        copy of the cache dies with them): ``predecode`` fills the cache in the main process.
        """
        key = self.keys[index]
        image = self.cache.get(key)
        if image is None:
            image = self.decode(load_rgb(self.paths[index]))
            if get_worker_info() is None and self.cache.room_for(image):
                self.cache.put(key, image)
        return image

    def predecode(self, num_workers: int = 0, batch_size: int = 16) -> int:
        """Decode the images not in the cache yet, with ``num_workers`` DataLoader workers.

        Stops once the cache is full (the other images are then decoded on each access).
        Returns how many images were decoded and kept.
        """
        missing = [i for i, key in enumerate(self.keys) if key not in self.cache]
        if not missing:
            return 0
        loader = DataLoader(_Decoding(self, missing), batch_size=batch_size,
                            num_workers=num_workers, collate_fn=list)
        decoded = 0
        for batch in loader:
            for index, image in batch:
                if not self.cache.room_for(image):
                    return decoded
                self.cache.put(self.keys[index], image)
                decoded += 1
        return decoded


class _Decoding(Dataset):
    """The decode step alone, over some indices of a DecodedImageDataset (for ``predecode``)."""

    def __init__(self, dataset: DecodedImageDataset, indices: list[int]):
        self.paths = dataset.paths
        self.decode = dataset.decode
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor]:
        index = self.indices[position]
        return index, self.decode(load_rgb(self.paths[index]))


def _targets(y) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind == "f":
        return y.astype(np.float32)
    if y.dtype.kind in "biu":
        return y.astype(np.int64)
    raise TypeError(f"y has dtype {y.dtype}: encode the targets as numbers first "
                    "(e.g. with sklearn.preprocessing.LabelEncoder).")
