"""Per-process memos: a network resolved once per model and weights, and each weight tensor
hashed once while it does not change.

A grid search fits the same pretrained network dozens of times. Loading it (a checkpoint file, a
Hugging Face folder) and hashing its weights for the feature cache's key cost the same every fit,
so both are remembered here, for this process only.

Resolved networks
-----------------
:func:`memoized_resolve` keeps the network a source built (weights loaded, head replaced, layer
groups read) under a key that names the model and its weights without reading them:

- a name (torchvision, timm) with pretrained weights: the name and the weights' name (and, for
  torchvision, the size and modification time of the downloaded file when it is there);
- a checkpoint file (``weights=path``): its identity, read by one ``os.stat`` and never by
  reading the file: absolute path, size, modification and change times (ns), inode. A file
  rewritten in place with the same size within one tick of the file system's clock is not seen
  (as for the image keys of the feature cache);
- a Hugging Face folder: the identity of every file in it; a hub id: the id and the revision the
  local Hugging Face cache points to (its ``refs/main`` file);
- your own ``nn.Module`` instance: its classes, structure and settings, pickled with every
  weight tensor replaced by its shape and dtype (so that the copies ``sklearn.clone`` makes share
  the key), plus the digests of its weights when they are what the network starts from
  (``weights=None``; with a checkpoint file, which overwrites them all, the file's identity
  stands for them). A module that cannot be pickled (a lambda in it) is not memoized.

Random initializations are never memoized (a name with ``weights=None``, a module class, a module
with lazy layers, LoRA adapters, the architecture alone that ``skadapt.load`` rebuilds): they are
not the same network twice. Every call returns a fresh deep copy (no two fits share a weight
tensor: training one never moves another's starting point) with new heads drawn from torch's
random generator; the build itself runs with the generator forked (it draws nothing), so a fit
gives the same result whether its network was built for it (a miss) or copied (a hit). A Hugging
Face tokenizer is shared between the copies: fits only call it.

Networks for inference only
---------------------------
:func:`memoized_inference` serves callers that never train (``PretrainedFeatureExtractor``): the
network with its heads removed (``nn.Identity``), frozen, in inference mode, on one device, built
once per key and device and then *shared* by every such caller, not copied (a copy of a 90 MB text
encoder cost more than the rest of a fit). Sharing is read-only: before handing it out again the
memo checks every tensor's stamp (see below) against the one taken when it was built, and builds a
new one when a holder changed its weights in place.

Bound: the :data:`MAX_NETWORKS` (4) most recently used networks whose weights take at most
:data:`MAX_BYTES` (1 GiB) together; a larger network is not kept. The environment variables
``SKADAPT_NETWORK_MEMO_SIZE`` (a number of networks; 0 turns the memo off) and
``SKADAPT_NETWORK_MEMO_MB`` change them, :func:`set_network_memo` too;
:func:`clear_network_memo` empties it (and forgets the weights' digests).

Digests of weight tensors
-------------------------
:func:`tensor_digest` hashes a tensor's bytes once and remembers the digest with a stamp: the
tensor's address, version counter (torch bumps it on every in-place change: an optimizer step,
``load_state_dict``, ``p.add_(...)`` under ``no_grad``), shape, strides, dtype, device and 16
evenly spaced values (which catch most writes through ``p.data``, which bypass the counter). A
changed stamp means hashing again. A copy handed out by the network memo inherits the digests of
the tensors it was copied from while neither has changed, so the first fingerprint of a fresh copy
reads no weights either.
"""

from __future__ import annotations

import copy
import copyreg
import hashlib
import importlib
import io
import os
import pickle
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

import torch
from torch import nn

from skadapt._environment import environment_number
from skadapt.networks._base import ResolvedNetwork, replace_heads
from skadapt.networks._copy import copy_module
from skadapt.networks._saved_architecture import saved_folder

__all__ = [
    "MAX_BYTES",
    "MAX_NETWORKS",
    "clear_network_memo",
    "memoized_inference",
    "memoized_resolve",
    "network_memo_info",
    "set_network_memo",
    "tensor_digest",
]

MAX_NETWORKS = 4
MAX_BYTES = 2**30
SIZE_ENV_VARIABLE = "SKADAPT_NETWORK_MEMO_SIZE"
MB_ENV_VARIABLE = "SKADAPT_NETWORK_MEMO_MB"
_SAMPLED_VALUES = 16
_DIGEST_SIZE = 16

_LOCK = threading.RLock()


class _NetworkMemo:
    """An LRU of resolved networks bounded by a count and by the bytes of their tensors; each
    entry may carry a seal (the stamps of its tensors, for the shared inference networks)."""

    def __init__(self) -> None:
        self.max_networks = environment_number(SIZE_ENV_VARIABLE, MAX_NETWORKS, unit="networks",
                                               integer=True, zero="0 turns the memo off")
        self.max_bytes = int(environment_number(MB_ENV_VARIABLE, MAX_BYTES / 2**20, unit="MiB",
                                                zero="0 keeps no network") * 2**20)
        self.entries: OrderedDict[Hashable, tuple[ResolvedNetwork, int, tuple | None]] = \
            OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, *, sealed: bool = False) -> ResolvedNetwork | None:
        """The network kept under ``key``; with ``sealed``, only while its tensors are the ones
        it was kept with."""
        with _LOCK:
            found = self.entries.get(key)
        if found is not None and sealed and _seal(found[0].module) != found[2]:
            with _LOCK:  # a holder changed it in place: build anew
                if self.entries.get(key) is found:
                    del self.entries[key]
            found = None
        with _LOCK:
            if found is None:
                self.misses += 1
                return None
            if key in self.entries:
                self.entries.move_to_end(key)
            self.hits += 1
            return found[0]

    def put(self, key: Hashable, network: ResolvedNetwork, *, sealed: bool = False) -> None:
        size = _tensor_bytes(network.module)
        seal = _seal(network.module) if sealed else None
        with _LOCK:
            if self.max_networks <= 0 or size > self.max_bytes:
                return
            self.entries[key] = (network, size, seal)
            self.entries.move_to_end(key)
            self.shrink()

    def shrink(self) -> None:
        with _LOCK:
            while self.entries and (len(self.entries) > self.max_networks
                                    or self.nbytes > self.max_bytes):
                self.entries.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(entry[1] for entry in self.entries.values())


_NETWORKS = _NetworkMemo()


def set_network_memo(max_networks: int | None = None, max_mb: float | None = None) -> None:
    """Bound the per-process memo of resolved networks; ``max_networks=0`` turns it off.

    Parameters
    ----------
    max_networks : int, optional
        How many networks are kept at most (least recently used go first); 4 by default.
    max_mb : float, optional
        How many MiB their parameters and buffers take at most together; 1024 by default.

    Examples
    --------
    >>> from skadapt.networks._memo import set_network_memo
    >>> set_network_memo(max_networks=2)
    >>> set_network_memo(max_networks=4, max_mb=1024)  # the defaults back
    """
    if max_networks is not None:
        if isinstance(max_networks, bool) or not isinstance(max_networks, int) \
                or max_networks < 0:
            raise ValueError(f"max_networks={max_networks!r} must be an int >= 0 (0 turns the "
                             "memo off).")
        _NETWORKS.max_networks = max_networks
    if max_mb is not None:
        if isinstance(max_mb, bool) or not isinstance(max_mb, (int, float)) or max_mb < 0:
            raise ValueError(f"max_mb={max_mb!r} must be a number >= 0.")
        _NETWORKS.max_bytes = int(max_mb * 2**20)
    _NETWORKS.shrink()


def clear_network_memo() -> None:
    """Forget every memoized network and every remembered digest of weights (frees their memory).

    Examples
    --------
    >>> from skadapt.networks._memo import clear_network_memo
    >>> clear_network_memo()
    """
    with _LOCK:
        _NETWORKS.entries.clear()
        _NETWORKS.hits = _NETWORKS.misses = 0
        _DIGESTS.clear()
        _LINEAGE.clear()


def network_memo_info() -> dict:
    """What the memo holds: ``networks``, ``bytes``, ``hits``, ``misses`` and its bounds.

    Examples
    --------
    >>> from skadapt.networks._memo import network_memo_info
    >>> sorted(network_memo_info())
    ['bytes', 'hits', 'max_bytes', 'max_networks', 'misses', 'networks']
    """
    with _LOCK:
        return {"networks": len(_NETWORKS.entries), "bytes": _NETWORKS.nbytes,
                "hits": _NETWORKS.hits, "misses": _NETWORKS.misses,
                "max_networks": _NETWORKS.max_networks, "max_bytes": _NETWORKS.max_bytes}


# --------------------------------------------------------------------------- resolving
def memoized_resolve(build: Callable[[], ResolvedNetwork], key: Hashable | None,
                     n_outputs: int) -> ResolvedNetwork:
    """``build()``, or a fresh copy of what it returned for ``key`` earlier in this process.

    Parameters
    ----------
    build : callable
        Builds the network (the source's ``resolve``); only called on a miss.
    key : hashable or None
        From :func:`network_key`; None: not memoizable, ``build()`` as is.
    n_outputs : int
        Outputs of the new heads drawn for the copy.

    Returns
    -------
    ResolvedNetwork
        Never one that another call received: its module, groups and preprocessing are copies;
        its heads are new layers.
    """
    if key is None or _NETWORKS.max_networks <= 0:
        return build()
    network = _NETWORKS.get(key)
    if network is None:
        with torch.random.fork_rng(devices=[]):  # the build draws nothing: hits and misses agree
            network = build()
        _NETWORKS.put(key, network)
    return _fresh_copy(network, n_outputs)


def memoized_inference(build: Callable[[], ResolvedNetwork], key: Hashable | None,
                       device: torch.device) -> ResolvedNetwork:
    """A network for inference only, shared with every caller asking for the same one.

    Parameters
    ----------
    build, key
        As for :func:`memoized_resolve` (``build`` only runs when neither this memo nor the
        memo of resolved networks holds the network).
    device : torch.device
        Where the network runs (part of the key: each device has its own copy).

    Returns
    -------
    ResolvedNetwork
        Its heads replaced by ``nn.Identity``, its weights frozen, in ``eval`` mode, on
        ``device``. Read-only: callers must not change it (a caller who changes its weights in
        place is seen by the next call, which builds a new one; the changed network stays with
        whoever holds it). With ``key=None`` a network of its own.
    """
    if key is None or _NETWORKS.max_networks <= 0:
        return _for_inference(build(), device)
    shared_key = ("inference", key, str(device))
    network = _NETWORKS.get(shared_key, sealed=True)
    if network is not None:
        return network
    with _LOCK:
        known = _NETWORKS.entries.get(key)
    if known is not None:
        network = _fresh_copy(known[0], n_outputs=1)
    else:  # not kept twice: the inference copy is the only one this memo holds
        with torch.random.fork_rng(devices=[]):
            network = build()
    network = _for_inference(network, device)
    _NETWORKS.put(shared_key, network, sealed=True)
    return network


def _for_inference(network: ResolvedNetwork, device: torch.device) -> ResolvedNetwork:
    """``network`` with its heads removed, frozen, in inference mode on ``device``."""
    for name in network.head:
        network.module.set_submodule(name, nn.Identity())
    network.module.requires_grad_(False).eval().to(device)
    return network


def _seal(module: nn.Module) -> tuple:
    """The stamps of a module's tensors: any in-place change (or a tensor replaced) changes it."""
    return tuple(_stamp(tensor) for tensor in _state_tensors(module))


def _fresh_copy(network: ResolvedNetwork, n_outputs: int) -> ResolvedNetwork:
    shared = {}
    tokenizer = getattr(network, "tokenizer", None)
    if tokenizer is not None:
        shared[id(tokenizer)] = tokenizer
    shared[id(network.module)] = copy_module(network.module, shared)
    copied = copy.deepcopy(network, shared)
    for tensor in _state_tensors(network.module):
        twin = shared.get(id(tensor))
        if twin is not None:
            _note_copy(tensor, twin)
    replace_heads(copied.module, copied.head, n_outputs)
    return copied


def _state_tensors(module: nn.Module) -> list[torch.Tensor]:
    return list(module.state_dict(keep_vars=True).values())


def _tensor_bytes(module: nn.Module) -> int:
    seen, total = set(), 0
    for tensor in _state_tensors(module):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


# --------------------------------------------------------------------------- keys
def network_key(source: str, model, weights, *, n_outputs: int, head, options) -> Hashable | None:
    """The memo key of a network, or None when it is not the same network twice (or when its
    identity cannot be read cheaply)."""
    if options and options.get("adapter") is not None:
        return None  # LoRA adapters start random
    if saved_folder(model) is not None:
        return None  # skadapt.load rebuilds the architecture alone (random weights, overwritten)
    if head is not None and not isinstance(head, str):
        return None  # the source says what head must be
    weights_key = _weights_key(source, model, weights)
    if weights_key is None:
        return None
    model_key = _model_key(source, model, with_values=weights is None)
    if model_key is None:
        return None
    # only text encoders read the options (pooling...); the other sources ignore them
    kept_options = tuple(sorted((str(k), repr(v)) for k, v in (options or {}).items())) \
        if source == "huggingface-text" else ()
    return (source, model_key, weights_key, n_outputs, head, kept_options)


def _model_key(source: str, model, with_values: bool) -> Hashable | None:
    if isinstance(model, nn.Module):
        return _module_key(model, with_values)
    if isinstance(model, type):
        return None  # built with no arguments: random weights, or lazy layers sized by the data
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if source in ("huggingface-text", "huggingface-vision"):
            return _hugging_face_key(text) if _importable("transformers") else None
        if source == "timm" and not _importable("timm"):
            return None  # the source says which extra to install
        return ("name", text)
    return None


def _weights_key(source: str, model, weights) -> Hashable | None:
    if weights is None:
        # names and classes start from random weights; modules and Hugging Face models from
        # their own
        if isinstance(model, nn.Module) or source.startswith("huggingface"):
            return ("own",)
        return None
    if isinstance(weights, os.PathLike) or (isinstance(weights, str) and Path(weights).is_file()):
        return _file_key(weights)
    if source == "torchvision" and isinstance(model, str):
        return _torchvision_weights_key(model, weights)
    if source == "timm" and weights == "DEFAULT":
        return ("timm-pretrained",)
    return None


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _file_key(path) -> Hashable | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # the source says what is wrong
    return ("file", os.path.abspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino,
            stat.st_ctime_ns)


def _torchvision_weights_key(name: str, weights) -> Hashable | None:
    import torchvision
    from torchvision.models import WeightsEnum

    try:
        enum_cls = torchvision.models.get_model_weights(name)
        if isinstance(weights, WeightsEnum):
            member = weights
        elif isinstance(weights, str):
            member = enum_cls[weights.removeprefix(f"{enum_cls.__name__}.")]
        else:
            return None
    except (KeyError, ValueError, AttributeError):
        return None  # not a weights name: the source says what is wrong
    downloaded = Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name
    return ("torchvision-weights", str(member), _file_key(downloaded))


def _hugging_face_key(text: str) -> Hashable | None:
    folder = Path(text)
    if folder.is_dir():
        files = []
        for root, _, names in os.walk(folder):
            for name in sorted(names):
                files.append(_file_key(Path(root) / name))
        return ("folder", str(folder.resolve()), tuple(sorted(files, key=repr)))
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    refs = Path(constants.HF_HUB_CACHE) / f"models--{text.replace('/', '--')}" / "refs" / "main"
    if not refs.is_file():
        return None  # not downloaded yet: the source downloads it (or says why not)
    return ("hub", text, refs.read_text().strip())


def _module_key(model: nn.Module, with_values: bool) -> Hashable | None:
    """The module's architecture and settings (a pickle with its tensors left out), and the
    digests of its weights when ``with_values``; None when it cannot be pickled or has lazy
    layers."""
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        return None
    state = {id(t) for t in _state_tensors(model)}
    buffer = io.BytesIO()
    pickler = _TensorFreePickler(buffer, state, with_values)
    try:
        pickler.dump(model)
    except Exception:  # lambdas, local classes, open files...: not memoized  # noqa: BLE001
        return None
    return ("module", hashlib.blake2b(buffer.getvalue(), digest_size=_DIGEST_SIZE).hexdigest())


class _TensorFreePickler(pickle.Pickler):
    """Pickles a module with each tensor replaced by its shape, dtype and (for tensors outside
    the state dict, or all of them when ``with_values``) its digest.

    Tensors and parameters are found through the pickler's ``dispatch_table`` (consulted by the
    C pickler for those two types only) rather than ``persistent_id``, a Python call for every
    object pickled; tensor subclasses keep their own pickling, values included."""

    def __init__(self, file, state: set[int], with_values: bool):
        super().__init__(file, protocol=4)
        self.state = state
        self.with_values = with_values
        self.dispatch_table = copyreg.dispatch_table.copy()
        self.dispatch_table[torch.Tensor] = self.dispatch_table[nn.Parameter] = self._described

    def _described(self, tensor: torch.Tensor) -> tuple:
        described = (tuple(tensor.shape), str(tensor.dtype), tensor.requires_grad,
                     isinstance(tensor, nn.Parameter))
        if id(tensor) in self.state and not self.with_values:
            return _tensor_stand_in, ("state-tensor", *described)
        return _tensor_stand_in, ("tensor", *described, tensor_digest(tensor))


def _tensor_stand_in(*described):
    """What a tensor is pickled as in a memo key (keys are hashed, never unpickled)."""
    raise TypeError("a network memo key is not meant to be unpickled")


# --------------------------------------------------------------------------- digests
# id(tensor) -> (weak reference, stamp, digest); id(copy) -> (weak ref, stamp, weak ref to the
# original, the original's stamp at copy time)
_DIGESTS: dict[int, tuple] = {}
_LINEAGE: dict[int, tuple] = {}


def tensor_digest(tensor: torch.Tensor) -> bytes:
    """blake2b digest (16 bytes) of a tensor's values, computed once while the tensor is unchanged.

    Examples
    --------
    >>> import torch
    >>> t = torch.zeros(3)
    >>> before = tensor_digest(t)
    >>> _ = t.add_(1)  # in place: a new version of the tensor
    >>> tensor_digest(t) != before, tensor_digest(t) == tensor_digest(torch.ones(3))
    (True, True)
    """
    stamp = _stamp(tensor)
    with _LOCK:
        known = _valid(_DIGESTS, tensor, stamp)
        if known is not None:
            return known[2]
        origin = _valid(_LINEAGE, tensor, stamp)
    digest = None
    original = None
    if origin is not None:
        original = origin[2]()
        if original is not None and _stamp(original) == origin[3]:
            with _LOCK:
                found = _valid(_DIGESTS, original, origin[3])
            digest = None if found is None else found[2]
        else:
            original = None
    if digest is None:
        digest = _hash_values(tensor)
        if original is not None:
            _remember(_DIGESTS, original, (origin[3], digest))
    _remember(_DIGESTS, tensor, (stamp, digest))
    return digest


def _note_copy(original: torch.Tensor, twin: torch.Tensor) -> None:
    """``twin`` was just copied from ``original``: it inherits the original's digest."""
    if original.device != twin.device or original.dtype != twin.dtype:
        return
    original_stamp = _stamp(original)
    with _LOCK:
        known = _valid(_DIGESTS, original, original_stamp)
    if known is not None:  # the usual case: the memo's network was fingerprinted before
        _remember(_DIGESTS, twin, (_stamp(twin), known[2]))
        return
    _remember(_LINEAGE, twin, (_stamp(twin), weakref.ref(original), original_stamp))


def _valid(table: dict, tensor: torch.Tensor, stamp: tuple) -> tuple | None:
    entry = table.get(id(tensor))
    if entry is None or entry[0]() is not tensor or entry[1] != stamp:
        return None
    return entry


def _remember(table: dict, tensor: torch.Tensor, values: tuple) -> None:
    key = id(tensor)

    def forget(reference, key=key, table=table):
        with _LOCK:
            entry = table.get(key)
            if entry is not None and entry[0] is reference:
                del table[key]

    reference = weakref.ref(tensor, forget)
    with _LOCK:
        table[key] = (reference, *values)


def _stamp(tensor: torch.Tensor) -> tuple:
    """What must stay the same for a remembered digest to still hold."""
    data = tensor.detach()
    return (data.data_ptr(), tensor._version, tuple(data.shape), data.stride(), data.dtype,
            str(data.device), _sample(data))


def _sample(data: torch.Tensor) -> bytes:
    """The bytes of 16 evenly spaced values (of a contiguous tensor; nothing otherwise)."""
    n = data.numel()
    if not n or not data.is_contiguous():
        return b""
    step = max(1, n // _SAMPLED_VALUES)
    if data.device.type == "cpu":
        try:
            values = data.numpy().reshape(-1)  # a view: no copy, and faster than torch's indexing
        except (TypeError, RuntimeError):  # bfloat16 and other dtypes numpy lacks
            pass
        else:
            return values[::step][:_SAMPLED_VALUES].tobytes()
    picked = data.reshape(-1)[::step][:_SAMPLED_VALUES].contiguous().cpu()
    return picked.view(torch.uint8).numpy().tobytes()


def _hash_values(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    hasher = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    hasher.update(memoryview(flat.view(torch.uint8).numpy()))
    return hasher.digest()
