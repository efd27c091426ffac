"""Embeddings from inside a network: tap a layer, pool what it gives to one vector per sample.

One engine for everything in skadapt that reads a network's activations: the feature extractor
(a layer group's pooled output, or what the head reads), the fine-tuner's feature cache (the
head's input), ``shift_profile`` (every layer group's pooled output, in one forward pass) and the
text encoder's pooling of its token states. This package is the lowest layer, so all of them can
import it.

Tapping
-------
:func:`tap` runs the network once with a hook on each layer it is given, capturing the layer's
first input (a forward pre-hook) or its output (a forward hook). Layers that return tuples
(Inception's, transformer layers') or a Hugging Face ``ModelOutput`` give their first tensor
(:func:`first_tensor`). With ``stop=True`` the forward pass stops as soon as every layer has run
once, so nothing after them runs; with ``stop=False`` it runs to its end and a layer that runs
twice keeps its last call. :func:`recording` is the hooks alone, keeping every call.

Pooling
-------
:func:`pool` turns an activation into one row per sample:

- ``(n, d)`` rows are kept as they are (``(n,)`` becomes ``(n, 1)``) for ``"mean"`` and ``"max"``;
- feature maps ``(n, c, *spatial)`` are pooled over their spatial dimensions, or
  ``(n, *spatial, c)`` maps over theirs for networks whose maps are channels-last
  (``ResolvedNetwork.channels_last``: Swin, timm's NHWC models);
- token sequences ``(n, tokens, d)`` are pooled over their tokens, only over the real ones when an
  attention mask ``(n, tokens)`` is given (padding must not change a text's embedding);
- ``"cls"`` is the first token of a token sequence, and refuses any other shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

__all__ = [
    "POOLINGS",
    "call",
    "embed",
    "embed_layers",
    "first_tensor",
    "pool",
    "recording",
    "tap",
    "tap_one",
    "to_device",
]

POOLINGS = ("mean", "max", "cls")
SIDES = ("input", "output")


class _StopForward(Exception):
    """Raised by a hook once every tapped layer has run: the rest of the network is not run."""


# --------------------------------------------------------------------------- running
def call(module: nn.Module, x):
    """``module(**x)`` for a dict of tensors (tokenized texts), else ``module(x)``."""
    return module(**x) if isinstance(x, Mapping) else module(x)


def to_device(x, device):
    """A batch (a tensor, or a dict of tensors for texts) on ``device``."""
    if isinstance(x, Mapping):
        return {key: value.to(device, non_blocking=True) for key, value in x.items()}
    return x.to(device, non_blocking=True)


def first_tensor(output) -> torch.Tensor:
    """The main tensor of what a layer gives or takes: the first one found, depth first, in
    tuples, lists and mappings (a ``ModelOutput``'s first value is ``last_hidden_state``).

    Examples
    --------
    >>> first_tensor((None, (torch.zeros(2), torch.ones(3)))).shape
    torch.Size([2])
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list, Mapping)):
        for value in (output.values() if isinstance(output, Mapping) else output):
            with contextlib.suppress(TypeError):
                return first_tensor(value)
    raise TypeError(f"the layer gave a {type(output).__name__} holding no tensor: there is "
                    "nothing to pool.")


# --------------------------------------------------------------------------- pooling
def pool(tensor: torch.Tensor, pooling: str = "mean", *, mask: torch.Tensor | None = None,
         channels_last: bool = False) -> torch.Tensor:
    """One row per sample from an activation (the rules are in the module docstring).

    Parameters
    ----------
    tensor : torch.Tensor of shape (n, ...)
    pooling : {"mean", "max", "cls"}, default="mean"
    mask : torch.Tensor of shape (n, tokens), optional
        Attention mask (1 for real tokens) of token sequences; used when its shape is the
        sequence's ``(n, tokens)``.
    channels_last : bool, default=False
        Feature maps with 3 or more dimensions are ``(n, *spatial, c)``.

    Returns
    -------
    torch.Tensor of shape (n, d), in ``tensor``'s dtype

    Examples
    --------
    >>> tokens = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> pool(tokens, mask=torch.tensor([[1, 1, 0]])).tolist(), pool(tokens, "cls").tolist()
    ([[2.0]], [[1.0]])
    >>> pool(torch.ones(2, 8, 4, 4)).shape, pool(torch.ones(2, 4, 4, 8), channels_last=True).shape
    (torch.Size([2, 8]), torch.Size([2, 8]))
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r}: pass one of {POOLINGS}.")
    if pooling == "cls":
        if tensor.ndim != 3:
            raise ValueError(f"pooling='cls' takes the first token of a token sequence (n, tokens, "
                             f"features), but this output has shape {tuple(tensor.shape)}: pass "
                             "pooling='mean' or 'max', or a layer that gives token states.")
        return tensor[:, 0]
    if tensor.ndim <= 2:  # (not reshape(len(tensor), -1): an ONNX trace would fix the batch size)
        return tensor.unsqueeze(1) if tensor.ndim == 1 else tensor
    if tensor.ndim == 3:  # (n, tokens, features)
        if mask is not None and mask.shape == tensor.shape[:2]:
            return _masked(tensor, mask.unsqueeze(-1), pooling)
        return tensor.mean(1) if pooling == "mean" else tensor.amax(1)
    dims = tuple(range(1, tensor.ndim - 1)) if channels_last else tuple(range(2, tensor.ndim))
    return tensor.mean(dim=dims) if pooling == "mean" else tensor.amax(dim=dims)


def _masked(tensor: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "mean":
        weights = mask.to(tensor.dtype)
        return (tensor * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return tensor.masked_fill(~mask.bool(), float("-inf")).amax(dim=1)


# --------------------------------------------------------------------------- tapping
@contextlib.contextmanager
def recording(layers: Mapping[str, nn.Module], *, side: str = "output",
              reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
              stop: bool = False) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Hooks on ``layers`` while the block runs: ``{name: [what it gave or took, per call]}``.

    Each call's :func:`first_tensor` of the layer's inputs (``side="input"``, positional then
    keyword) or output (``side="output"``), through ``reduce`` when given (e.g. a pooling, so that
    no large activation is kept). ``stop=True`` stops the forward pass once every layer has run:
    run it through :func:`tap`, which catches that.
    """
    if side not in SIDES:
        raise ValueError(f"side={side!r}: pass one of {SIDES}.")
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def keep(name: str, value) -> None:
        tensor = first_tensor(value)
        seen[name].append(tensor if reduce is None else reduce(tensor))
        if stop and all(seen.values()):
            raise _StopForward

    handles = [layer.register_forward_pre_hook(
                   lambda _m, args, kwargs, name=name: keep(name, (args, kwargs)), with_kwargs=True)
               if side == "input" else
               layer.register_forward_hook(lambda _m, _args, output, name=name: keep(name, output))
               for name, layer in layers.items()]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def tap(module: nn.Module, layers: Mapping[str, nn.Module], x, *, side: str = "output",
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        stop: bool = True) -> dict[str, torch.Tensor]:
    """Run ``module`` on ``x`` once and capture what each of ``layers`` gives (or takes).

    Parameters
    ----------
    module : torch.nn.Module
    layers : dict of str to torch.nn.Module
        Submodules of ``module``, by any names.
    x : torch.Tensor or dict of torch.Tensor
        A batch; a dict is passed as keyword arguments (tokenized texts).
    side : {"output", "input"}, default="output"
    reduce : callable, optional
        Applied to each captured tensor inside the hook (e.g. :func:`pool`).
    stop : bool, default=True
        Keep each layer's first call and stop the forward pass once all have run; False: run the
        whole network, a layer that runs twice keeping its last call.

    Returns
    -------
    dict of str to torch.Tensor
        The layers that ran (a layer the forward pass never runs is missing).

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> captured = tap(net, {"hidden": net[1], "head": net[2]}, torch.ones(5, 4), side="input")
    >>> captured["hidden"].shape, captured["head"].shape
    (torch.Size([5, 3]), torch.Size([5, 3]))
    """
    with recording(layers, side=side, reduce=reduce, stop=stop) as seen:
        with contextlib.suppress(_StopForward):
            call(module, x)
    return {name: calls[0] if stop else calls[-1] for name, calls in seen.items() if calls}


def tap_one(module: nn.Module, layer: nn.Module, x, *, side: str = "output",
            what: str = "layer") -> torch.Tensor:
    """What ``layer`` gives (or takes) when ``module`` runs on ``x``; what follows is not run.

    A layer the forward pass never runs is a ``ValueError`` naming ``what`` it is.
    """
    captured = tap(module, {what: layer}, x, side=side)
    if what not in captured:
        raise ValueError(f"the {what} {type(layer).__name__} did not run in the network's forward "
                         f"pass: pick a {what} that does.")
    return captured[what]


# --------------------------------------------------------------------------- embeddings
def _pooler(x, pooling: str, channels_last: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """float32 pooling of a batch's activations, masked by its attention mask (texts)."""
    mask = x.get("attention_mask") if isinstance(x, Mapping) else None
    return lambda tensor: pool(tensor.float(), pooling, mask=mask, channels_last=channels_last)


def embed(module: nn.Module, x, *, layer: nn.Module | None = None, pooling: str = "mean",
          channels_last: bool = False) -> torch.Tensor:
    """The float32 embeddings ``(n, d)`` of a batch: ``layer``'s output pooled (what follows it is
    not run), or the network's own output pooled when ``layer`` is None.

    ``x`` is a batch on the module's device; a dict (tokenized texts) holding ``attention_mask``
    masks the pooling of token sequences. Run it under ``torch.inference_mode()``.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    >>> embed(net, torch.ones(2, 3, 8, 8), layer=net[1], pooling="max").shape
    torch.Size([2, 4])
    """
    pooled = _pooler(x, pooling, channels_last)
    if layer is None:
        return pooled(first_tensor(call(module, x)))
    return pooled(tap_one(module, layer, x))


def embed_layers(module: nn.Module, layers: Mapping[str, nn.Module], x, *,
                 pooling: str = "mean", channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Each of ``layers``' float32 pooled output in one whole forward pass (a layer that runs
    twice keeps its last call; one that never runs is missing), as :func:`embed` pools them."""
    return tap(module, layers, x, reduce=_pooler(x, pooling, channels_last), stop=False)
