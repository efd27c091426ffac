"""torchvision classification models by name: ``model="resnet18"``.

``weights`` is ``None`` (random initialization), a torchvision weights name (``"DEFAULT"``,
``"IMAGENET1K_V1"``, downloaded to the torch hub cache) or ``WeightsEnum`` member, or a local
checkpoint file loaded into the architecture as built.

Preprocessing: the weights' own (``weights.transforms()``); without torchvision weights (``None``
or a checkpoint) the family's standard one, read from its ``DEFAULT`` weights entry without
downloading anything (resnet18: resize 256, crop 224, ImageNet mean and std, bilinear).

Heads: the last ``nn.Linear``, except SqueezeNet (its classifier is a 1x1 convolution).
Inception v3 and GoogLeNet are built without their auxiliary classifiers (``aux_logits=False``):
the fine-tuner trains on the main output only, so the auxiliary heads would cost time and, below
Inception's native 299 px, fail inside their own pooling (224 px inputs work without them).

Layer groups: the generic rule of :mod:`skadapt.networks._base`.
"""

from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import GoogLeNet, Inception3, SqueezeNet, SwinTransformer, WeightsEnum

from skadapt.networks._base import (
    Preprocessing,
    ResolvedNetwork,
    Source,
    find_heads,
    layer_groups,
    replace_heads,
)
from skadapt.networks._checkpoints import (
    CHECKPOINT_SUFFIXES,
    checkpoint_path,
    load_into,
    looks_like_path,
    read_checkpoint,
)

# Families the "last nn.Linear" rule does not fit. Auxiliary heads are absent (None) when a model
# is built with aux_logits=False, so names missing from the module are skipped.
KNOWN_HEADS: dict[type[nn.Module], tuple[str, ...]] = {
    SqueezeNet: ("classifier.1",),
    Inception3: ("AuxLogits.fc", "fc"),
    GoogLeNet: ("aux1.fc2", "aux2.fc2", "fc"),
}
# Built without their auxiliary classifiers (see the module docstring).
_AUX_PREFIXES = ("AuxLogits.", "aux1.", "aux2.")


def _claims(model) -> bool:
    # the last source asked for names: any other str is reported as an unknown torchvision name
    return isinstance(model, str)


def _resolve(model: str, weights, *, n_outputs: int, head, example_input, options
             ) -> ResolvedNetwork:
    module, enum = _build(model, weights)
    heads = find_heads(module, head, KNOWN_HEADS)
    replace_heads(module, heads, n_outputs)
    preprocessing = preprocessing_of(enum) if enum is not None else standard_preprocessing(model)
    return ResolvedNetwork(module=module, head=heads, groups=layer_groups(module, heads),
                           preprocessing=preprocessing, source="torchvision",
                           channels_last=isinstance(module, SwinTransformer),
                           min_input_size=_min_input_size(model))


def _default_weights(model) -> str:
    return "DEFAULT"


SOURCE = Source(name="torchvision", priority=90, claims=_claims, resolve=_resolve,
                default_weights=_default_weights)


def is_torchvision_name(model) -> bool:
    return isinstance(model, str) and model in torchvision.models.list_models(
        module=torchvision.models)


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


def _min_input_size(name: str) -> int | None:
    """The weights' ``min_size`` where it is a limit of the architecture (below the crop size:
    Inception v3's 75 px, VGG's 32), not the one size a ViT or Swin was trained at."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    side = min(weights.meta.get("min_size", (1, 1)))
    standard = standard_preprocessing(name)
    return side if side > 1 and standard is not None and side < standard.crop_size else None


def standard_preprocessing(name: str) -> Preprocessing | None:
    """The family's standard preprocessing: that of ``name``'s ``DEFAULT`` weights (no download).

    Examples
    --------
    >>> standard_preprocessing("resnet18").crop_size, standard_preprocessing("inception_v3").crop_size
    (224, 299)
    """
    return preprocessing_of(torchvision.models.get_model_weights(name).DEFAULT)


def _build(name: str, weights) -> tuple[nn.Module, WeightsEnum | None]:
    _check_model_name(name)
    if weights is None:
        return _drop_auxiliary_heads(_get_model(name, None)), None
    enum = _torchvision_weights(name, weights)
    if enum is None:
        module = _get_model(name, None)
        path = checkpoint_path(weights)
        state = read_checkpoint(path)
        if not any(key.startswith(_AUX_PREFIXES) for key in state):  # saved without them
            _drop_auxiliary_heads(module)
        load_into(module, path, state)
        return _drop_auxiliary_heads(module), None
    try:
        return _drop_auxiliary_heads(_get_model(name, enum)), enum
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
                     "timm model, pass 'timm/<name>'; for a Hugging Face text model, its "
                     "'org/name' id or a local directory.)")


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
    if looks_like_path(weights):
        return None
    raise ValueError(
        f"weights={weights!r} is neither a weights name of {name} nor a checkpoint file: pass one "
        f"of {available}, None, or the path of a {'/'.join(CHECKPOINT_SUFFIXES)} file."
    )


def _get_model(name: str, weights: WeightsEnum | None) -> nn.Module:
    with warnings.catch_warnings():
        # GoogLeNet and Inception v3 warn that their default init may change; we keep the default.
        warnings.filterwarnings("ignore", message="The default weight initialization",
                                category=FutureWarning)
        return torchvision.models.get_model(name, weights=weights)


def _drop_auxiliary_heads(module: nn.Module) -> nn.Module:
    """Inception v3 and GoogLeNet without their auxiliary classifiers, as torchvision does for
    ``aux_logits=False`` after loading weights (which it refuses to take with weights)."""
    if isinstance(module, Inception3):
        module.aux_logits, module.AuxLogits = False, None
    elif isinstance(module, GoogLeNet):
        module.aux_logits, module.aux1, module.aux2 = False, None, None
    return module
