"""Resolve a pretrained network: build it, load its weights, replace its head, split it into groups.

``resolve_network`` accepts a torchvision classification model name, an ``nn.Module`` instance
(deep-copied, never mutated) or an ``nn.Module`` subclass (built with no arguments), and weights
that are ``None``, a torchvision weights name (``"DEFAULT"``, ``"IMAGENET1K_V1"``) or a local
checkpoint file (``.pt``, ``.pth``, ``.th``, ``.bin``, ``.safetensors``).

Head
----
The head is the last ``nn.Linear`` in module order, which is right for every torchvision
classification family but three, listed in ``_KNOWN_HEADS``: SqueezeNet (its classifier is a 1x1
convolution) and the two models with auxiliary classifiers (Inception v3, GoogLeNet), whose
auxiliary outputs are replaced too. ``head="dotted.name"`` overrides the rule. The new head is a
fresh layer of the same kind, with the same inputs and ``n_outputs`` outputs. Checkpoints are
loaded into the architecture as built, before its head is replaced.

Layer groups
------------
The backbone (every parameter outside the head) is split into ordered groups, input side first,
by one rule for every network:

1. start from the top-level children of the network that hold backbone parameters;
2. while there are fewer than 4 groups, replace the group holding the most parameters (counted
   in scalars) that has children holding backbone parameters by those children;
3. a parameter owned directly by a container that was split (ViT's ``class_token``, its
   ``encoder.pos_embedding``) joins the first group that follows it in module order.

This gives ResNet ``conv1, bn1, layer1 ... layer4``; VGG, EfficientNet, MobileNet, DenseNet and
ConvNeXt ``features.0 ... features.N`` (plus the classifier's hidden layers where there are any);
ViT ``conv_proj, encoder.layers.encoder_layer_0 ... 11, encoder.ln``.
"""

from __future__ import annotations

import copy
import difflib
import numbers
import os
import pickle
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
import torchvision
from safetensors import SafetensorError
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present
from torchvision.models import GoogLeNet, Inception3, SqueezeNet, WeightsEnum

_TORCH_SUFFIXES = (".pt", ".pth", ".th", ".bin")
CHECKPOINT_SUFFIXES = (*_TORCH_SUFFIXES, ".safetensors")
# Keys under which training scripts commonly nest the state dict, looked up in this order.
_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "module")
_DATA_PARALLEL_PREFIX = "module."
_MIN_GROUPS = 4
_SHOWN_KEYS = 10

# Families the "last nn.Linear" rule does not fit. Auxiliary heads are absent (None) when a model
# is built with aux_logits=False, so names missing from the module are skipped.
_KNOWN_HEADS: dict[type[nn.Module], tuple[str, ...]] = {
    SqueezeNet: ("classifier.1",),
    Inception3: ("AuxLogits.fc", "fc"),
    GoogLeNet: ("aux1.fc2", "aux2.fc2", "fc"),
}


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing a torchvision weights entry was trained with.

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
    >>> from skadapt.finetune._backbones import preprocessing_of
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
        Dotted names of the new head submodule(s), e.g. ``("fc",)`` or ``("AuxLogits.fc", "fc")``.
    groups : tuple of LayerGroup
        The backbone's layer groups, input side first; every parameter outside the head is in
        exactly one group.
    preprocessing : Preprocessing or None
        The torchvision weights' own preprocessing; None for random weights and checkpoints.

    Examples
    --------
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


def resolve_network(model, weights=None, n_outputs: int = 2, head: str | None = None,
                    example_input: torch.Tensor | Callable[[], torch.Tensor] | None = None,
                    *, text_options: Mapping | None = None) -> ResolvedNetwork:
    """Build ``model`` with ``weights``, replace its head, and split its backbone into groups.

    Parameters
    ----------
    model : str, path-like, nn.Module or nn.Module subclass
        A torchvision classification model name (``"resnet18"``), a module instance (deep-copied)
        or a module class (built with no arguments). A Hugging Face text encoder, as a local
        directory or an ``"org/name"`` hub id, goes to ``skadapt.text.resolve_text_network``.
    weights : None, str or path-like, default=None
        ``None`` keeps the module's weights (random for names and classes). For torchvision names,
        ``"DEFAULT"`` or a weights name such as ``"IMAGENET1K_V1"`` (downloaded to the torch hub
        cache), or a ``WeightsEnum`` member. For any model, a checkpoint file: ``.pt``, ``.pth``,
        ``.th``, ``.bin`` (a state dict, possibly nested under ``"state_dict"`` etc. and saved
        from ``DataParallel``) or ``.safetensors``, loaded into the architecture as built.
    n_outputs : int, default=2
        Outputs of the new head.
    head : str, optional
        Dotted name of the layer to replace; by default the last ``nn.Linear`` (or the known head
        of the torchvision families that have none or several).
    example_input : torch.Tensor or callable returning one, optional
        A small batch run once through a module with lazy layers (``nn.LazyLinear``...) so that
        their shapes are known before the head and the groups are read; a callable is only called
        when the module has lazy layers.
    text_options : mapping, optional
        For text models only (ignored otherwise): ``pooling``, ``adapter``, ``lora_r``,
        ``lora_alpha`` of ``resolve_text_network``.

    Returns
    -------
    ResolvedNetwork

    Examples
    --------
    >>> network = resolve_network("resnet18", weights=None, n_outputs=2)
    >>> network.head, network.module.fc.out_features
    (('fc',), 2)
    """
    _check_n_outputs(n_outputs)
    from skadapt.text._encoder import is_text_model, resolve_text_network  # text imports back

    if is_text_model(model):
        return resolve_text_network(model, n_outputs, weights=weights, head=head,
                                    **(text_options or {}))
    module, torchvision_weights = _build(model, weights)
    _materialize_lazy_layers(module, example_input)
    if isinstance(module, nn.Linear):  # a bare layer is all head: give it a name to replace
        module = nn.Sequential(module)
    head_names = _find_heads(module, head)
    for name in head_names:
        module.set_submodule(name, _fresh_head(module.get_submodule(name), name, n_outputs))
    preprocessing = preprocessing_of(torchvision_weights) if torchvision_weights else None
    return ResolvedNetwork(module=module, head=head_names, groups=_layer_groups(module, head_names),
                           preprocessing=preprocessing)


def _materialize_lazy_layers(module: nn.Module, example_input) -> None:
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


def preprocessing_of(weights: WeightsEnum) -> Preprocessing | None:
    """The preprocessing of torchvision ``weights`` (no download), or None if it is not standard."""
    transform = weights.transforms()
    try:
        return Preprocessing(
            resize_size=int(transform.resize_size[0]),
            crop_size=int(transform.crop_size[0]),
            mean=tuple(float(m) for m in transform.mean),
            std=tuple(float(s) for s in transform.std),
            interpolation=transform.interpolation.value,
        )
    except (AttributeError, TypeError, IndexError):  # not an ImageClassification preset
        return None


def _check_n_outputs(n_outputs) -> None:
    if not (isinstance(n_outputs, numbers.Integral) and not isinstance(n_outputs, bool)
            and n_outputs >= 1):
        raise ValueError(f"n_outputs={n_outputs!r} must be an int >= 1 (the new head's outputs).")


# --------------------------------------------------------------------------- building
def _build(model, weights) -> tuple[nn.Module, WeightsEnum | None]:
    """The network with its original head, and the torchvision weights used (if any)."""
    if isinstance(model, str):
        return _build_torchvision(model, weights)
    if isinstance(model, nn.Module):
        module = copy.deepcopy(model)
    elif isinstance(model, type) and issubclass(model, nn.Module):
        module = _instantiate(model)
    else:
        raise TypeError(
            "model must be a torchvision model name (str), an nn.Module instance or an nn.Module "
            f"subclass; got a {type(model).__name__}."
        )
    if weights is not None:
        path = _checkpoint_path(weights)
        _load_into(module, path, _read_checkpoint(path))
    return module, None


def _instantiate(cls: type[nn.Module]) -> nn.Module:
    try:
        return cls()
    except TypeError as error:
        raise TypeError(
            f"could not build {cls.__name__}() with no arguments ({error}): pass an instance "
            f"instead, e.g. model={cls.__name__}(...)."
        ) from error


def _checkpoint_path(weights) -> Path:
    if isinstance(weights, WeightsEnum):
        raise ValueError(
            f"weights={weights} are torchvision weights: they apply when model is a torchvision "
            "model name (e.g. model='resnet18'). For your own module, pass a checkpoint path."
        )
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be None, a torchvision weights name or a checkpoint path; got a "
            f"{type(weights).__name__}."
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights={str(weights)!r}: no checkpoint file at that path. Pass the path of a "
            f"{'/'.join(CHECKPOINT_SUFFIXES)} file; torchvision weights names ('DEFAULT', "
            "'IMAGENET1K_V1') apply only when model is a torchvision model name."
        )
    return path


def _build_torchvision(name: str, weights) -> tuple[nn.Module, WeightsEnum | None]:
    _check_model_name(name)
    if weights is None:
        return _get_model(name, None), None
    enum = _torchvision_weights(name, weights)
    if enum is None:
        module = _get_model(name, None)
        path = _checkpoint_path(weights)
        _load_into(module, path, _read_checkpoint(path))
        return module, None
    try:
        return _get_model(name, enum), enum
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad hash a RuntimeError
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise RuntimeError(
            f"could not download {enum} for {name} ({type(error).__name__}: {error}). Pass a "
            f"local checkpoint path as weights=..., or put the file from {enum.url} in {cache} "
            "(delete it there first if it is corrupt)."
        ) from error


def _check_model_name(name: str) -> None:
    names = torchvision.models.list_models(module=torchvision.models)
    if name in names:
        return
    close = difflib.get_close_matches(name.lower(), names, n=5)
    hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close else
            "see torchvision.models.list_models(module=torchvision.models).")
    raise ValueError(f"model={name!r} is not a torchvision classification model: {hint} (For a "
                     "Hugging Face text model, pass its 'org/name' id or a local directory.)")


def _torchvision_weights(name: str, weights) -> WeightsEnum | None:
    """The torchvision weights ``weights`` names, or None when it is a checkpoint path."""
    enum_cls = torchvision.models.get_model_weights(name)
    available = list(enum_cls.__members__)
    if isinstance(weights, WeightsEnum):
        if not isinstance(weights, enum_cls):
            raise ValueError(f"weights={weights} do not belong to {name}: pass one of {available}.")
        return weights
    if isinstance(weights, os.PathLike):
        return None
    if not isinstance(weights, str):
        raise TypeError(
            f"weights must be None, a weights name such as {available[0]!r}, a WeightsEnum or a "
            f"checkpoint path; got a {type(weights).__name__}."
        )
    member = weights.removeprefix(f"{enum_cls.__name__}.")
    if member in enum_cls.__members__:
        return enum_cls[member]
    if _looks_like_path(weights):
        return None
    raise ValueError(
        f"weights={weights!r} is neither a weights name of {name} nor a checkpoint file: pass one "
        f"of {available}, None, or the path of a {'/'.join(CHECKPOINT_SUFFIXES)} file."
    )


def _looks_like_path(text: str) -> bool:
    path = Path(text)
    return (path.suffix.lower() in CHECKPOINT_SUFFIXES or "/" in text or os.sep in text
            or path.exists())


def _get_model(name: str, weights: WeightsEnum | None) -> nn.Module:
    with warnings.catch_warnings():
        # GoogLeNet and Inception v3 warn that their default init may change; we keep the default.
        warnings.filterwarnings("ignore", message="The default weight initialization",
                                category=FutureWarning)
        return torchvision.models.get_model(name, weights=weights)


# --------------------------------------------------------------------------- checkpoints
def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a checkpoint file, unwrapped and without a ``module.`` prefix.

    Parameters
    ----------
    path : str or path-like
        A ``.pt``, ``.pth``, ``.th`` or ``.bin`` file written by ``torch.save`` (read with
        ``weights_only=True``), its state dict possibly nested under ``"state_dict"``,
        ``"model_state_dict"``, ``"model"`` or ``"module"``, or a ``.safetensors`` file.

    Returns
    -------
    dict of str to torch.Tensor
        On the CPU; the ``module.`` prefix of a ``DataParallel`` model is stripped when every key
        carries it.

    Examples
    --------
    >>> import tempfile, torch
    >>> path = tempfile.mkdtemp() + "/linear.pt"
    >>> torch.save({"state_dict": torch.nn.Linear(2, 1).state_dict()}, path)
    >>> sorted(load_checkpoint(path))
    ['bias', 'weight']
    """
    state = _read_checkpoint(Path(path))
    if all(key.startswith(_DATA_PARALLEL_PREFIX) for key in state):
        consume_prefix_in_state_dict_if_present(state, _DATA_PARALLEL_PREFIX)
    return state


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}.")
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(
            f"{str(path)!r}: unsupported checkpoint suffix {suffix!r}; pass a "
            f"{'/'.join(CHECKPOINT_SUFFIXES)} file."
        )
    try:
        if suffix == ".safetensors":
            return safetensors.torch.load_file(path, device="cpu")
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, SafetensorError) as error:
        raise ValueError(
            f"could not read {str(path)!r} as a checkpoint of tensors ({error}). Save the "
            "model's state_dict() (torch.save(model.state_dict(), path)) rather than the model."
        ) from error
    return _unwrap(content, path)


def _unwrap(content, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside ``content``, descending through the usual nesting keys."""
    while isinstance(content, Mapping):
        key = next((k for k in _NESTING_KEYS if isinstance(content.get(k), Mapping)), None)
        if key is None:
            break
        content = content[key]
    if not isinstance(content, Mapping):
        raise ValueError(f"{str(path)!r} holds a {type(content).__name__}, not a state dict.")
    not_tensors = [k for k, v in content.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{str(path)!r} holds a dict with non-tensor entries {not_tensors[:_SHOWN_KEYS]} and "
            f"no state dict under any of {list(_NESTING_KEYS)}: save the model's state_dict()."
        )
    return content


def _load_into(module: nn.Module, source: Path, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``module`` with strict key and shape matching."""
    expected = module.state_dict()
    if not any(key.startswith(_DATA_PARALLEL_PREFIX) for key in expected):
        consume_prefix_in_state_dict_if_present(state, _DATA_PARALLEL_PREFIX)
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
              for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if shapes:
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        raise ValueError(_mismatch_message(source, module, missing, unexpected, shapes))
    # torch's own loading handles old checkpoint versions (e.g. BatchNorm's num_batches_tracked)
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(_mismatch_message(source, module, result.missing_keys,
                                           result.unexpected_keys, []))


def _mismatch_message(source, module, missing, unexpected, shapes) -> str:
    listed = (("missing key(s)", missing), ("unexpected key(s)", unexpected),
              ("shape mismatch(es)", shapes))
    parts = "; ".join(f"{len(keys)} {what}: {_shown(keys)}" for what, keys in listed if keys)
    return (
        f"checkpoint {str(source)!r} does not match {type(module).__name__}: {parts}. Check that "
        "it was saved from this architecture, built the same way (variant, depth, number of "
        "classes), as a plain state_dict." + _prefix_hint(missing, unexpected)
    )


def _shown(keys) -> str:
    keys = list(keys)
    more = f", ... ({len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return "[" + ", ".join(keys[:_SHOWN_KEYS]) + more + "]"


def _prefix_hint(missing, unexpected) -> str:
    """Say so when the checkpoint's keys are the model's keys behind a common prefix."""
    if not missing or not unexpected:
        return ""
    first = missing[0]
    for key in unexpected:
        if key.endswith("." + first):
            prefix = key[: -len(first)]
            stripped = {k.removeprefix(prefix) for k in unexpected if k.startswith(prefix)}
            if stripped >= set(missing):
                return (f" The checkpoint's keys carry the prefix {prefix!r}: save the inner "
                        "module's state_dict, or remove the prefix from the keys.")
    return ""


# --------------------------------------------------------------------------- head
def _find_heads(module: nn.Module, head: str | None) -> tuple[str, ...]:
    modules = dict(module.named_modules())
    if head is not None:
        if not isinstance(head, str):
            raise TypeError(f"head must be None or a dotted submodule name; got {head!r}.")
        if head not in modules:
            raise ValueError(f"head={head!r} is not a submodule of {type(module).__name__}: "
                             f"pass one of {_head_candidates(modules, head)}.")
        return (head,)
    for cls, names in _KNOWN_HEADS.items():
        if isinstance(module, cls):
            return tuple(name for name in names if name in modules)
    linears = [name for name, sub in modules.items() if isinstance(sub, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(module).__name__} has no nn.Linear layer to use as its head: pass head= the "
            f"dotted name of its output layer, one of {_head_candidates(modules, '')}."
        )
    return (linears[-1],)


def _head_candidates(modules: dict[str, nn.Module], wanted: str) -> list[str]:
    close = difflib.get_close_matches(wanted, [n for n in modules if n], n=5)
    if close:
        return close
    replaceable = [n for n, sub in modules.items() if _is_replaceable(sub)]
    return replaceable[-_SHOWN_KEYS:] or [n for n in modules if n][-_SHOWN_KEYS:]


def _is_replaceable(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Linear) or (
        isinstance(layer, nn.modules.conv._ConvNd) and not layer.transposed)


def _fresh_head(old: nn.Module, name: str, n_outputs: int) -> nn.Module:
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
def _layer_groups(module: nn.Module, head: tuple[str, ...]) -> tuple[LayerGroup, ...]:
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
    return tuple(LayerGroup(name=g, modules=_modules_outside_head(module, g, head),
                            params=tuple(members[g])) for g in groups if members[g])


def _modules_outside_head(module: nn.Module, name: str, head: tuple[str, ...]) -> tuple[str, ...]:
    """``(name,)``, or the submodules of ``name`` that hold parameters when it contains the head."""
    if not any(h.startswith(name + ".") for h in head):
        return (name,)
    parent = module.get_submodule(name)
    found: list[str] = []
    for child, sub in parent.named_children():
        full = f"{name}.{child}"
        if full not in head and any(True for _ in sub.parameters()):
            found += _modules_outside_head(module, full, head)
    return tuple(found)
