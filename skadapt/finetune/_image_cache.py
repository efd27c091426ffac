"""The decoded-image cache: image files decoded once per fit, augmented on every access.

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

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torchvision.transforms import InterpolationMode, v2

from skadapt.finetune._datasets import target_tensor
from skadapt.finetune._decoding import load_rgb
from skadapt.finetune._embedding_cache import MemoryLRU
from skadapt.finetune._fingerprint import file_identity, transform_fingerprint

__all__ = [
    "DEFAULT_IMAGE_CACHE_BYTES",
    "DecodedImageCache",
    "DecodedImageDataset",
    "make_decode_transform",
]

DEFAULT_IMAGE_CACHE_BYTES = 2**30


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
        self.y = None if y is None else target_tensor(np.asarray(y))
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
