"""What every source of networks answers, and the rules they share.

A *source* (``_source_*.py``: torchvision names, timm, Hugging Face image models and text
encoders, your own modules) turns ``model``/``weights`` into a :class:`ResolvedNetwork`: the
network with a new head, the names of that head, the backbone's ordered :class:`LayerGroup` s,
the :class:`Preprocessing` its inputs expect, and for texts the tokenizer (``collate``).
Nothing in this package imports the estimators, so the estimators, the extractor,
``shift_profile`` and the command line can all import it.

Head
----
Unless a source knows better (torchvision's SqueezeNet, timm's ``get_classifier``), the head is
the last ``nn.Linear`` in module order; ``head="dotted.name"`` overrides the rule. The new head is
a fresh layer of the same kind, with the same inputs and ``n_outputs`` outputs.

Layer groups
------------
Unless a source knows better (timm's ``group_matcher``, a text encoder's layers), the backbone
(every parameter outside the head) is split into ordered groups, input side first, by one rule:

1. start from the top-level children of the network that hold backbone parameters;
2. while there are fewer than 4 groups, replace the group holding the most parameters (counted
   in scalars) that has children holding backbone parameters by those children;
3. a parameter owned directly by a container that was split (ViT's ``class_token``, its
   ``encoder.pos_embedding``) joins the first group that follows it in module order.

This gives ResNet ``conv1, bn1, layer1 ... layer4``; VGG, EfficientNet, MobileNet, DenseNet and
ConvNeXt ``features.0 ... features.N`` (plus the classifier's hidden layers where there are any);
ViT ``conv_proj, encoder.layers.encoder_layer_0 ... 11, encoder.ln``.

Input checks
------------
:func:`check_array_input` compares numeric arrays with the network's first layer (its first
``Conv2d``'s ``in_channels``, or its first ``nn.Linear``'s ``in_features`` when that comes first)
before torch sees them, so a gray image or a table of the wrong width fails with a message that
says what to pass.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

_MIN_GROUPS = 4
_SHOWN_KEYS = 10


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing a network's weights were trained with.

    Parameters
    ----------
    resize_size : int
        Size of the shorter side after resizing (e.g. 256).
    crop_size : int
        Side of the centre crop (e.g. 224).
    mean, std : tuple of 3 floats
        Per-channel normalization.
    interpolation : str
        Resizing interpolation, e.g. ``"bilinear"``.

    Examples
    --------
    >>> from torchvision.models import ResNet18_Weights
    >>> from skadapt.networks import preprocessing_of
    >>> preprocessing_of(ResNet18_Weights.DEFAULT).crop_size
    224
    """

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str


@dataclass(frozen=True)
class LayerGroup:
    """A slice of the backbone that is frozen, thawed and given a learning rate as one.

    Parameters
    ----------
    name : str
        The dotted name of the submodule the group stands for, e.g. ``"layer4"``.
    modules : tuple of str
        Dotted names of the submodules that make up the group (the head excluded).
    params : tuple of str
        The group's parameter names, as in ``network.named_parameters()``.

    Examples
    --------
    >>> from skadapt.networks import resolve_network
    >>> network = resolve_network("resnet18", n_outputs=2)
    >>> [group.name for group in network.groups]
    ['conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'layer4']
    """

    name: str
    modules: tuple[str, ...]
    params: tuple[str, ...]


@dataclass
class ResolvedNetwork:
    """A network ready for fine-tuning: weights loaded, new head, backbone split into groups.

    Parameters
    ----------
    module : torch.nn.Module
        The network, with its head replaced by one with ``n_outputs`` outputs.
    head : tuple of str
        Dotted names of the new head submodule(s), e.g. ``("fc",)``.
    groups : tuple of LayerGroup
        The backbone's layer groups, input side first; every parameter outside the head is in
        exactly one group.
    preprocessing : Preprocessing or None
        What the network's inputs expect (size, crop, mean/std, interpolation); None when unknown
        (your own module, a checkpoint without a family).
    source : str
        The source that built it: ``"torchvision"``, ``"timm"``, ``"huggingface-vision"``,
        ``"huggingface-text"``, ``"module"``.
    channels_last : bool
        Whether the backbone's feature maps are ``(n, height, width, channels)`` (Swin).
    embedding_layer : str or None
        The submodule whose (pooled) output is the network's embedding for
        ``PretrainedFeatureExtractor``; None: the head's input.
    min_input_size : int or None
        The smallest image side the network runs on (Inception v3: 75 px), when known.

    Examples
    --------
    >>> from skadapt.networks import resolve_network
    >>> network = resolve_network("mobilenet_v3_small", n_outputs=3)
    >>> network.head
    ('classifier.3',)
    >>> network.module.classifier[3].out_features
    3
    """

    module: nn.Module
    head: tuple[str, ...]
    groups: tuple[LayerGroup, ...]
    preprocessing: Preprocessing | None
    source: str = ""
    channels_last: bool = False
    embedding_layer: str | None = None
    min_input_size: int | None = None

    def collate(self, max_length: int):
        """The DataLoader ``collate_fn`` of the network's inputs: None (torch's default) for
        images and arrays; text networks tokenize each batch."""
        return None


@dataclass(frozen=True)
class Source:
    """One kind of ``model`` the registry resolves (one ``_source_*.py`` module defines one).

    Parameters
    ----------
    name : str
    priority : int
        Sources are asked in increasing priority; the first that claims a model builds it.
    claims : callable
        ``claims(model) -> bool``: whether ``model`` is this source's (cheap: no download, no
        heavy import).
    resolve : callable
        ``resolve(model, weights, *, n_outputs, head, example_input, options) -> ResolvedNetwork``.
    takes_texts : bool
        Whether ``X`` is texts for this source's networks.
    default_weights : callable, optional
        ``default_weights(model)``: the weights the command line's ``--weights auto`` means.
    """

    name: str
    priority: int
    claims: Callable[[object], bool]
    resolve: Callable[..., ResolvedNetwork]
    takes_texts: bool = False
    default_weights: Callable[[object], Any] = field(default=lambda model: None)


def check_n_outputs(n_outputs) -> None:
    if not (isinstance(n_outputs, numbers.Integral) and not isinstance(n_outputs, bool)
            and n_outputs >= 1):
        raise ValueError(f"n_outputs={n_outputs!r} must be an int >= 1 (the new head's outputs).")


def materialize_lazy_layers(module: nn.Module, example_input) -> None:
    """Run ``example_input`` once through a module with lazy layers so their shapes are known."""
    if not any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters()):
        return
    if example_input is None:
        raise ValueError("the model has lazy layers (e.g. nn.LazyLinear) whose shapes are unknown "
                         "until it sees data: fit the estimator first, or give the layers sizes.")
    if callable(example_input):
        example_input = example_input()
    training = module.training
    with torch.no_grad():
        module.eval()
        module(example_input)
    module.train(training)


# --------------------------------------------------------------------------- head
def find_heads(module: nn.Module, head: str | None,
               known: Mapping[type, tuple[str, ...]] | None = None) -> tuple[str, ...]:
    """The dotted names of the head(s): ``head``, the ``known`` heads of the module's class, or
    the last ``nn.Linear``."""
    modules = dict(module.named_modules())
    if head is not None:
        if not isinstance(head, str):
            raise TypeError(f"head must be None or a dotted submodule name; got {head!r}.")
        if head not in modules:
            raise ValueError(f"head={head!r} is not a submodule of {type(module).__name__}: "
                             f"pass one of {_head_candidates(modules, head)}.")
        return (head,)
    for cls, names in (known or {}).items():
        if isinstance(module, cls):
            return tuple(name for name in names if name in modules)
    linears = [name for name, sub in modules.items() if isinstance(sub, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(module).__name__} has no nn.Linear layer to use as its head: pass head= the "
            f"dotted name of its output layer, one of {_head_candidates(modules, '')}."
        )
    return (linears[-1],)


def replace_heads(module: nn.Module, heads: tuple[str, ...], n_outputs: int) -> None:
    for name in heads:
        module.set_submodule(name, fresh_head(module.get_submodule(name), name, n_outputs))


def _head_candidates(modules: dict[str, nn.Module], wanted: str) -> list[str]:
    close = difflib.get_close_matches(wanted, [n for n in modules if n], n=5)
    if close:
        return close
    replaceable = [n for n, sub in modules.items() if _is_replaceable(sub)]
    return replaceable[-_SHOWN_KEYS:] or [n for n in modules if n][-_SHOWN_KEYS:]


def _is_replaceable(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Linear) or (
        isinstance(layer, nn.modules.conv._ConvNd) and not layer.transposed)


def fresh_head(old: nn.Module, name: str, n_outputs: int) -> nn.Module:
    """A new layer of the same kind as ``old`` with the same inputs and ``n_outputs`` outputs."""
    if not _is_replaceable(old):
        inner = [n for n, sub in old.named_modules() if _is_replaceable(sub)]
        hint = f" e.g. head={name + '.' + inner[-1]!r}" if inner else ""
        raise ValueError(f"head={name!r} is a {type(old).__name__}: name an nn.Linear or "
                         f"convolution layer instead,{hint or ' the output layer'}.")
    like = {"device": old.weight.device, "dtype": old.weight.dtype}
    bias = old.bias is not None
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, n_outputs, bias=bias, **like)
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(old.kernel_size)]
    return conv(old.in_channels, n_outputs, old.kernel_size, stride=old.stride,
                padding=old.padding, dilation=old.dilation, bias=bias,
                padding_mode=old.padding_mode, **like)


# --------------------------------------------------------------------------- layer groups
def layer_groups(module: nn.Module, head: tuple[str, ...]) -> tuple[LayerGroup, ...]:
    """Split the backbone into ordered groups (the rule is in the module docstring)."""
    head_prefixes = tuple(h + "." for h in head)
    sizes = {n: p.numel() for n, p in module.named_parameters()
             if not n.startswith(head_prefixes)}

    def params_under(name: str) -> list[str]:
        return [n for n in sizes if n.startswith(name + ".")]

    def children_holding_params(name: str) -> list[str]:
        parent = module.get_submodule(name)
        full = [f"{name}.{child}" if name else child for child, _ in parent.named_children()]
        return [c for c in full if params_under(c)]

    groups = children_holding_params("")
    while len(groups) < _MIN_GROUPS:
        splittable = [g for g in groups if children_holding_params(g)]
        if not splittable:
            break
        biggest = max(splittable, key=lambda g: sum(sizes[n] for n in params_under(g)))
        at = groups.index(biggest)
        groups[at: at + 1] = children_holding_params(biggest)
    return _assign_params(module, groups, list(sizes), head)


def _assign_params(module, groups: list[str], params: list[str], head: tuple[str, ...]
                   ) -> tuple[LayerGroup, ...]:
    """Give each parameter to its group; containers' own parameters to the next group."""
    members: dict[str, list[str]] = {g: [] for g in groups}
    waiting: list[str] = []
    for param in params:
        group = next((g for g in groups if param.startswith(g + ".")), None)
        if group is None:
            waiting.append(param)
            continue
        members[group] += waiting + [param]
        waiting = []
    if waiting:  # no group follows them: they join the last one, or form the only one
        if groups:
            members[groups[-1]] += waiting
        else:
            return (LayerGroup(name="backbone", modules=(), params=tuple(waiting)),)
    return tuple(LayerGroup(name=g, modules=modules_outside_head(module, g, head),
                            params=tuple(members[g])) for g in groups if members[g])


def modules_outside_head(module: nn.Module, name: str, head: tuple[str, ...]) -> tuple[str, ...]:
    """``(name,)``, or the submodules of ``name`` that hold parameters when it contains the head."""
    if not any(h.startswith(name + ".") for h in head):
        return (name,)
    parent = module.get_submodule(name)
    found: list[str] = []
    for child, sub in parent.named_children():
        full = f"{name}.{child}"
        if full not in head and any(True for _ in sub.parameters()):
            found += modules_outside_head(module, full, head)
    return tuple(found)


def covering_modules(module: nn.Module, params: list[str]) -> tuple[str, ...]:
    """The largest submodules all of whose parameters are in ``params``, in module order.

    Used by sources whose groups come as lists of parameters (timm's ``group_matcher``).
    """
    wanted = set(params)
    found: list[str] = []

    def visit(name: str, sub: nn.Module) -> None:
        own = [f"{name}.{n}" if name else n for n, _ in sub.named_parameters()]
        if name and own and all(p in wanted for p in own):
            found.append(name)
            return
        for child, child_module in sub.named_children():
            visit(f"{name}.{child}" if name else child, child_module)

    visit("", module)
    return tuple(found)


# --------------------------------------------------------------------------- input checks
def first_layer(module: nn.Module, skip: tuple[str, ...] = ()) -> nn.Module | None:
    """The first convolution or ``nn.Linear`` in module order, the ``skip`` ones (the head) left
    out; None when it is lazy or there is none."""
    for name, sub in module.named_modules():
        if name in skip:
            continue
        if isinstance(sub, (nn.modules.conv._ConvNd, nn.Linear)):
            if any(isinstance(p, nn.parameter.UninitializedParameter) for p in sub.parameters()):
                return None
            return sub
    return None


def check_array_input(network: ResolvedNetwork, shape: tuple[int, ...],
                      image_size: int | None = None) -> None:
    """Raise a ``ValueError`` saying what to pass when numeric arrays of ``shape`` cannot enter
    the network's first layer (rank, channels, features), or are smaller than the network's
    ``min_input_size`` (``image_size``: the side they are resized to first).

    Examples
    --------
    >>> from skadapt.networks import resolve_network
    >>> network = resolve_network("resnet18", n_outputs=2)
    >>> check_array_input(network, (8, 1, 32, 32))
    Traceback (most recent call last):
    ...
    ValueError: X has 1 channel, the network's first layer expects 3: repeat the gray channel ...
    """
    layer = first_layer(network.module, skip=network.head)
    if layer is None or len(shape) < 2:
        return
    if isinstance(layer, nn.Conv2d):
        expected = layer.in_channels
        if len(shape) != 4:
            raise ValueError(
                f"X has shape {tuple(shape)}, but the network's first layer is a Conv2d that "
                f"expects (n_samples, {expected}, height, width) images: pass images of that "
                "shape (or image files), not rows of features.")
        channels = shape[1]
        if channels != expected:
            if channels == 1 and expected == 3:
                hint = ("repeat the gray channel (np.repeat(X, 3, axis=1)) or pass image files, "
                        "which are decoded as RGB")
            elif channels == 3 and expected == 1:
                hint = "convert the images to gray (e.g. X.mean(axis=1, keepdims=True))"
            else:
                hint = f"pass arrays of shape (n_samples, {expected}, height, width)"
            raise ValueError(f"X has {channels} channel{'s' if channels != 1 else ''}, the "
                             f"network's first layer expects {expected}: {hint}.")
        _check_size(network, shape[2:] if image_size is None else (image_size, image_size))
    elif isinstance(layer, nn.Linear) and len(shape) == 2 and shape[1] != layer.in_features:
        raise ValueError(f"X has {shape[1]} features, the network's first layer (an nn.Linear) "
                         f"expects {layer.in_features}: pass rows of {layer.in_features} "
                         "features.")


def _check_size(network: ResolvedNetwork, sides: tuple[int, ...]) -> None:
    smallest = network.min_input_size
    if smallest is None or min(sides) >= smallest:
        return
    size = "x".join(str(side) for side in sides)
    standard = network.preprocessing.crop_size if network.preprocessing else smallest
    raise ValueError(f"X's images are {size} pixels, but the network needs at least "
                     f"{smallest}x{smallest}: pass image_size={standard} (its standard size) to "
                     "resize them, or larger images.")


def groups_before_and_in_layers(module: nn.Module, first: str,
                                layer_names: list[str]) -> tuple[LayerGroup, ...]:
    """Layer groups of an encoder: ``first`` (the embeddings), then each of ``layer_names``; a
    parameter outside every layer joins the group before it (the head, ``head.*``, joins none)."""
    members: dict[str, list[str]] = {name: [] for name in [first, *layer_names]}
    current = first
    for name, _ in module.named_parameters():
        if name.startswith("head."):
            continue
        current = next((layer for layer in layer_names if name.startswith(layer + ".")), current)
        members[current].append(name)
    return tuple(LayerGroup(name=name, modules=(name,), params=tuple(params))
                 for name, params in members.items() if params)
