"""Cache keys: hashes of a sample's content and of the computation that turns it into a value.

An embedding depends on the sample and on everything between the sample and the embedding: the
backbone's architecture and weights, the preprocessing, the layer and pooling, the precision. So
each cache entry is keyed by two hashes (blake2b):

- the sample's content (:func:`sample_keys`): the bytes of an array row (with its shape and
  dtype); for an image file its absolute path, size and modification time (:func:`file_identity`:
  the file is not read, so an edit that keeps both size and mtime is not seen); the pixels of a PIL
  image; a text's characters;
- a fingerprint of the computation (:func:`fingerprint`), built from
  :func:`module_fingerprint` (every module's class, its ``forward`` bytecode and settings, and
  the digest of every parameter and buffer's bytes: different weights never share entries),
  :func:`transform_fingerprint` (the pickled preprocessing) and the torch / torchvision /
  Pillow versions.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Iterable

import numpy as np
import PIL
import torch
import torchvision
from torch import nn

from skadapt.finetune._adapters import Inputs
from skadapt.networks._memo import tensor_digest

__all__ = [
    "file_identity",
    "fingerprint",
    "module_fingerprint",
    "sample_keys",
    "transform_fingerprint",
]

# Bumped whenever the meaning of a key or the file format changes: old entries are then ignored.
FORMAT_VERSION = "skadapt-embeddings-v1"
DIGEST_SIZE = 16
_LIBRARIES = (f"torch={torch.__version__};torchvision={torchvision.__version__};"
              f"pil={PIL.__version__}")


def _hasher() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=DIGEST_SIZE)


# --------------------------------------------------------------------------- fingerprints
def fingerprint(*parts: str) -> str:
    """One hash of the parts (and of the library versions), for the computation side of a key.

    Examples
    --------
    >>> fingerprint("a", "b") == fingerprint("a", "b") != fingerprint("ab")
    True
    """
    hasher = _hasher()
    for part in (FORMAT_VERSION, _LIBRARIES, *parts):
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

    Notes
    -----
    Each tensor's bytes are hashed once per process while the tensor is unchanged
    (:func:`skadapt.networks._memo.tensor_digest`: same address, same version counter, which every
    in-place change bumps, same 16 sampled values), and a copy of a memoized network inherits the
    digests of the tensors it was copied from. So fingerprinting a 90 MB network again costs the
    walk over its modules, not hashing 90 MB; changed weights are hashed again.

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
    for name, tensor in module.state_dict(keep_vars=True).items():
        if kept(name):
            hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            hasher.update(tensor_digest(tensor))  # hashed once while the tensor is unchanged
    return hasher.hexdigest()


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
    return hashlib.blake2b(content, digest_size=DIGEST_SIZE).hexdigest()


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
    >>> from skadapt.finetune._adapters import adapt_inputs
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
