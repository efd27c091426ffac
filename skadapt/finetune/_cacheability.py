"""When training the head on cached features is the frozen-backbone fit, computed once.

The fine-tuner trains the head alone on :func:`~skadapt.finetune._cached_features.cached_backbone_features`
(the backbone's outputs, computed once per sample in inference mode) only when that gives what
training the whole network with a frozen backbone would: :func:`why_cache_not_applicable` states
the rules and says which one a network breaks, :func:`cache_applicable` is its yes/no, and
:func:`head_only_module` is the part of the network that trains on the cached features.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torchvision.ops import StochasticDepth

from skadapt.finetune._cached_features import inference_modes
from skadapt.finetune._freezing import frozen_by_spec, inference_mode_modules, set_inference_mode
from skadapt.networks import ResolvedNetwork
from skadapt.networks._embedding import call, first_tensor, recording, tap_one

__all__ = ["cache_applicable", "head_only_module", "why_cache_not_applicable"]

_N_SHOWN = 5


def head_only_module(network: ResolvedNetwork) -> nn.Module:
    """The part of the network that trains on ``cached_backbone_features``.

    The final head itself (``network.head[-1]``, the very module: training it trains the
    network's head), preceded by a copy of the dropout layer that feeds it directly, if any
    (MobileNetV3, EfficientNet): in the uncached path that dropout is active during training, so
    it must act on the cached features too. ``head_only_module(network)(features)`` equals
    ``network.module(x)`` in inference mode when :func:`cache_applicable` holds.

    Examples
    --------
    >>> from skadapt.networks import resolve_network
    >>> network = resolve_network("mobilenet_v3_small", n_outputs=2)
    >>> head_only_module(network)
    Sequential(
      (dropout): Dropout(p=0.2, inplace=False)
      (head): Linear(in_features=1024, out_features=2, bias=True)
    )
    """
    name = network.head[-1]
    head = network.module.get_submodule(name)
    found = _dropout_before(network.module, name)
    if found is None:
        return head
    fresh = copy.copy(found[1])  # no parameters to share; not in place on the cached features
    fresh.inplace = False
    return nn.Sequential(OrderedDict(dropout=fresh, head=head))


def _dropout_before(module: nn.Module, head_name: str) -> tuple[str, nn.Module] | None:
    """The dropout layer (p > 0) registered just before the head in the same parent, if any.

    That is how every torchvision family with one declares the dropout feeding its head
    (``nn.Sequential(..., Dropout, Linear)``, or ``self.dropout`` then ``self.fc``);
    ``why_cache_not_applicable`` checks it by running the network when given an example.
    """
    parent_name, _, child = head_name.rpartition(".")
    names = [name for name, _ in module.get_submodule(parent_name).named_children()]
    position = names.index(child)
    if position == 0:
        return None
    name = f"{parent_name}.{names[position - 1]}" if parent_name else names[position - 1]
    before = module.get_submodule(name)
    if not (isinstance(before, _DropoutNd) and before.p > 0):
        return None
    return name, before


def why_cache_not_applicable(network: ResolvedNetwork, example_input=None) -> str | None:
    """Why training the head on cached features would differ from the frozen-backbone fit, or None.

    Cached features are computed once, in inference mode; the uncached fit runs the network in
    training mode with its frozen parts in inference mode (see
    :func:`~skadapt.finetune._freezing.inference_mode_modules`) on every batch. The two agree when:

    1. the final head is an ``nn.Linear`` whose output is the network's output (not SqueezeNet's
       convolution head, followed by pooling);
    2. no layer that keeps training mode with a frozen backbone is random (dropout with ``p > 0``
       in a part that also holds the head, other than the one feeding the head, which
       :func:`head_only_module` keeps);
    3. no BatchNorm layer uses batch statistics in inference mode (``track_running_stats=False``),
       which would make a sample's features depend on its batch.

    A frozen backbone's own dropout, drop-path and drop-connect are off during training, so they
    do not prevent caching (EfficientNet, ViT, text encoders).

    With ``example_input`` (a batch, a callable returning one, or a dict of tensors for text
    models), 1 and 2 are also checked by running the network: its output must be its head's, and
    the head's input must be the same in training mode as in inference mode (which catches
    functional dropout in ``forward``). Buffers and training flags are restored afterwards.

    Whether the backbone stays frozen for the whole fit (no unfreezing, ``train_bn=False``) and
    the preprocessing is deterministic is the caller's to check.

    Examples
    --------
    >>> from skadapt.networks import resolve_network
    >>> print(why_cache_not_applicable(resolve_network("resnet18", n_outputs=2)))
    None
    >>> why_cache_not_applicable(resolve_network("squeezenet1_1", n_outputs=2)).split(":")[0]
    "the head 'classifier.1' is a Conv2d, not an nn.Linear applied last"
    """
    module = network.module
    name = network.head[-1]
    head = module.get_submodule(name)
    if not isinstance(head, nn.Linear):
        return (f"the head {name!r} is a {type(head).__name__}, not an nn.Linear applied last: "
                "layers after it would have to run on every batch.")
    skipped = _head_part_names(module, network.head)
    inference = {id(sub) for part in _frozen_backbone_parts(network) for sub in part.modules()}
    random_layers = [n for n, sub in module.named_modules()
                     if n not in skipped and id(sub) not in inference and _is_random_in_training(sub)]
    if random_layers:
        return (f"layers {_shown(random_layers)} are random in training mode (dropout, stochastic "
                "depth) outside the frozen backbone: the training-time features differ from "
                "cached ones.")
    batch_dependent = [n for n, sub in module.named_modules()
                       if isinstance(sub, _BatchNorm) and not sub.track_running_stats]
    if batch_dependent:
        return (f"BatchNorm layers {_shown(batch_dependent)} have no running statistics: a "
                "sample's features depend on the other samples of its batch.")
    if example_input is not None:
        return _check_by_running(network, head, name, example_input)
    return None


def _frozen_backbone_parts(network: ResolvedNetwork) -> list[nn.Module]:
    """The parts of the network in inference mode while only its head trains."""
    return inference_mode_modules(network.module, frozen_by_spec(network, "backbone"))


def cache_applicable(network: ResolvedNetwork, example_input=None) -> bool:
    """Whether training the head on cached features is the frozen-backbone fit, computed once.

    ``True`` for the families whose head is a last ``nn.Linear`` on the pooled features and whose
    backbone is deterministic in training mode (ResNet, the CIFAR ResNets, DenseNet, RegNet...);
    see :func:`why_cache_not_applicable` for the rules and for ``example_input``.

    Examples
    --------
    >>> from skadapt.networks import resolve_network
    >>> cache_applicable(resolve_network("resnet18", n_outputs=2))
    True
    >>> cache_applicable(resolve_network("squeezenet1_1", n_outputs=2))
    False
    """
    return why_cache_not_applicable(network, example_input) is None


def _head_part_names(module: nn.Module, heads: tuple[str, ...]) -> set[str]:
    """The heads, the dropout feeding the final head, and the auxiliary branches (the parents of
    the other heads, e.g. Inception's ``AuxLogits``: they do not feed the final head)."""
    roots = set(heads) | {h.rpartition(".")[0] for h in heads[:-1]} - {""}
    found = _dropout_before(module, heads[-1])
    if found is not None:
        roots.add(found[0])
    prefixes = tuple(r + "." for r in roots)
    return {n for n, _ in module.named_modules() if n in roots or n.startswith(prefixes)}


def _is_random_in_training(layer: nn.Module) -> bool:
    if isinstance(layer, (_DropoutNd, StochasticDepth)):
        return layer.p > 0
    if isinstance(layer, nn.MultiheadAttention):
        return layer.dropout > 0
    drop_prob = getattr(layer, "drop_prob", None)  # timm's DropPath and DropBlock
    return isinstance(drop_prob, float) and drop_prob > 0


def _check_by_running(network: ResolvedNetwork, head: nn.Module, name: str,
                      example_input) -> str | None:
    module = network.module
    x = example_input() if callable(example_input) else example_input
    buffers = {key: value.clone() for key, value in module.named_buffers()}
    try:
        with inference_modes(module), torch.no_grad():
            with recording({name: head}, side="input") as inputs, \
                    recording({name: head}) as outputs:
                network_output = call(module, x)
            head_outputs = outputs[name]
            if len(head_outputs) != 1:
                return f"the head {name!r} ran {len(head_outputs)} times in one forward pass."
            if not torch.equal(first_tensor(network_output), head_outputs[0]):
                return (f"the network's output is not its head's ({name!r}): layers after the head "
                        "would have to run on every batch.")
            module.train()
            set_inference_mode(_frozen_backbone_parts(network))  # as the fine-tuner trains
            trailing = _dropout_before(module, name)
            if trailing is not None:  # it feeds the head: head_only_module keeps it
                trailing[1].eval()
            training_input = tap_one(module, head, x, side="input", what="head")
        inference_input = inputs[name][0]
        # float noise only: training and inference mode may take different kernels (attention)
        scale = 1.0 + float(inference_input.abs().max())
        if float((training_input - inference_input).abs().max()) > 1e-4 * scale:
            return ("the backbone computes differently in training mode (dropout or another random "
                    "operation in its forward): cached features would differ from training ones.")
        return None
    finally:
        with torch.no_grad():
            for key, value in module.named_buffers():
                value.copy_(buffers[key])


def _shown(names: list[str]) -> str:
    more = f", ... ({len(names) - _N_SHOWN} more)" if len(names) > _N_SHOWN else ""
    return "[" + ", ".join(repr(n) for n in names[:_N_SHOWN]) + more + "]"
