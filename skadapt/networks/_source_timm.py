"""timm models: ``model="timm/<name>"`` or ``"timm/<name>.<pretrained tag>"`` (as on the hub),
or a model timm built (``timm.create_model(..., drop_path_rate=0.1, img_size=...)``: deep-copied,
with ``weights`` None for its own or a state-dict file).

Needs the optional extra ``pip install skadapt[timm]``; timm is imported only when such a model
is asked for. The ``timm/`` prefix is parsed here (timm 1.0 itself would silently keep only the
last path part of ``"timm/efficientnet_b0"``).

``weights``:

- ``None``: random initialization (the pretrained tag still chooses the preprocessing);
- ``"DEFAULT"``: timm's pretrained weights for the name (and tag), downloaded from the Hugging
  Face hub to its cache; offline the error says how to pass a local file instead;
- a local file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``) holding the model's state dict as
  timm saves it (``model.state_dict()``, or the ``model.safetensors`` of a ``timm/`` hub repo).
  It goes through timm's own loading (``pretrained_cfg_overlay``, so timm's checkpoint filters
  apply); its classifier is dropped whatever its size, every other key must match.

The head is timm's classifier (``get_classifier()``: ResNet's ``fc``, EfficientNet's
``classifier``, ViT's ``head``, ConvNeXt's ``head.fc``), replaced by ``reset_classifier``; a
``drop_rate`` that a CNN applies as a function before it becomes a ``Dropout`` module in front of
it (the head is then ``classifier.fc``), so the feature cache still applies. The
layer groups are the model's own coarse ``group_matcher`` (stem, then each block or stage, as
timm's layer decay uses them), so ``freeze=k``, ``layer_decay`` and ``shift_profile`` follow
timm's blocks; parameters between the last block and the classifier (a final norm) are in the
last group. Preprocessing: ``timm.data.resolve_model_data_config`` (input size, ``crop_pct``,
interpolation, mean, std). What the new head reads (the cache's and the extractor's features) is
``forward_head(forward_features(x), pre_logits=True)``.
"""

from __future__ import annotations

import difflib
import math
import os
from collections import OrderedDict
from pathlib import Path

from torch import nn

from skadapt.networks._base import (
    LayerGroup,
    Preprocessing,
    ResolvedNetwork,
    Source,
    covering_modules,
)
from skadapt.networks._checkpoints import (
    CHECKPOINT_SUFFIXES,
    checkpoint_path,
    load_checkpoint,
    load_file_into,
)
from skadapt.networks._copy import copy_module

PREFIX = "timm/"
_INSTALL_HINT = "pip install skadapt[timm]"
_SHOWN = 10


def _claims(model) -> bool:
    return (isinstance(model, str) and model.startswith(PREFIX)) or _is_timm_module(model)


def _is_timm_module(model) -> bool:
    """A model built by timm: it carries timm's classifier and group interfaces and config."""
    return isinstance(model, nn.Module) and all(
        callable(getattr(model, name, None))
        for name in ("reset_classifier", "get_classifier", "group_matcher")
    ) and isinstance(getattr(model, "pretrained_cfg", None), dict)


def _default_weights(model) -> str | None:
    return None if isinstance(model, nn.Module) else "DEFAULT"  # a built model keeps its own


def timm_name(model: str) -> str:
    """``"timm/efficientnet_b0.ra_in1k"`` -> ``"efficientnet_b0.ra_in1k"``."""
    return model[len(PREFIX):]


def _resolve(model: str, weights, *, n_outputs: int, head, example_input, options
             ) -> ResolvedNetwork:
    if head is not None:
        raise ValueError(f"head={head!r}: a timm model's head is its own classifier "
                         "(get_classifier), replaced through reset_classifier; pass head=None.")
    timm = _import_timm()
    if isinstance(model, nn.Module):
        module = copy_module(model)
        if weights is not None:
            load_file_into(module, weights)
    else:
        name = timm_name(model)
        _check_name(timm, name)
        module = _build(timm, name, weights)
    module.reset_classifier(n_outputs)
    head_name = _dropout_into_head(module, _classifier_name(module))
    data = timm.data.resolve_model_data_config(module)
    return ResolvedNetwork(module=module, head=(head_name,),
                           groups=_groups(module, head_name), preprocessing=_preprocessing(data),
                           source="timm",
                           channels_last=getattr(module, "output_fmt", "NCHW") == "NHWC")


SOURCE = Source(name="timm", priority=10, claims=_claims, resolve=_resolve,
                default_weights=_default_weights)


def _import_timm():
    try:
        import timm
        import timm.data
    except ImportError as error:
        raise ImportError(f"timm models need the timm package: {_INSTALL_HINT}") from error
    return timm


def _check_name(timm, name: str) -> None:
    architecture = name.split(".", 1)[0]
    if not name or not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture.lower(), timm.list_models(), n=5)
        hint = (f"did you mean {', '.join(repr(PREFIX + c) for c in close)}?" if close
                else "see timm.list_models().")
        raise ValueError(f"model={PREFIX + name!r} is not a timm model: {hint}")


def _build(timm, name: str, weights) -> nn.Module:
    """The model without a classifier (``num_classes=0``), its pretrained weights loaded."""
    if weights is None:
        return timm.create_model(name, pretrained=False, num_classes=0)
    if isinstance(weights, str) and weights == "DEFAULT":
        try:
            return timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as error:  # hub, network and cache errors come in many types
            raise RuntimeError(
                f"could not download timm's pretrained weights for {name!r} "
                f"({type(error).__name__}: {str(error).strip()[:300]}). Offline, pass a local "
                f"file as weights=...: the model.safetensors of the hub repo 'timm/{name}', or "
                "torch.save(timm.create_model(...).state_dict(), path) made where there is "
                "network.") from error
    if isinstance(weights, str) and not _looks_like_file(weights):
        raise ValueError(f"weights={weights!r}: for a timm model pass None, 'DEFAULT' or the path "
                         f"of a local {'/'.join(CHECKPOINT_SUFFIXES)} file.")
    path = checkpoint_path(weights, names_hint="for timm's own pretrained weights pass 'DEFAULT'")
    state = load_checkpoint(path)
    module = timm.create_model(name, pretrained=True, num_classes=0,
                               pretrained_cfg_overlay={"state_dict": dict(state)})
    _check_keys(module, state, path)
    return module


def _looks_like_file(text: str) -> bool:
    return (Path(text).suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in text or "/" in text
            or Path(text).exists())


def _check_keys(module: nn.Module, state: dict, path: Path) -> None:
    """timm loads non-strictly once the classifier is dropped: check the rest matched."""
    classifiers = module.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    heads = tuple(f"{name}." for name in classifiers)
    expected = set(module.state_dict())
    missing = [key for key in module.state_dict() if key not in state]
    unexpected = [key for key in state if key not in expected and not key.startswith(heads)]
    if missing or unexpected:
        parts = "; ".join(f"{len(keys)} {what}: {keys[:_SHOWN]}" for what, keys in
                          (("missing key(s)", missing), ("unexpected key(s)", unexpected)) if keys)
        raise ValueError(f"checkpoint {str(path)!r} does not match timm's "
                         f"{module.pretrained_cfg.get('architecture')!r}: {parts}. Pass a state "
                         "dict saved from this timm architecture (model.state_dict()).")


def _classifier_name(module: nn.Module) -> str:
    classifier = module.get_classifier()
    name = next((n for n, sub in module.named_modules() if sub is classifier and n), None)
    if name is None:
        raise ValueError(f"{type(module).__name__}'s classifier is not one of its submodules: "
                         "skadapt cannot replace it.")
    return name


def _dropout_into_head(module: nn.Module, head: str) -> str:
    """Many timm CNNs (ResNet, EfficientNet, MobileNetV3...) apply their ``drop_rate`` before the
    classifier as a function (``F.dropout(x, training=self.training)``): made a ``nn.Dropout``
    module in front of the classifier, it is the same computation, and one the feature cache can
    reproduce on cached features (a functional one would make the frozen backbone look random).
    Returns the new name of the classifier."""
    rate = getattr(module, "drop_rate", 0.0)
    if not (isinstance(rate, float) and rate > 0):
        return head
    parent, _, child = head.rpartition(".")
    siblings = list(module.get_submodule(parent).named_children())
    at = [name for name, _ in siblings].index(child)
    if at > 0 and isinstance(siblings[at - 1][1], nn.Dropout):  # a module already (ViT, ConvNeXt)
        return head
    module.drop_rate = 0.0
    classifier = module.get_submodule(head)
    module.set_submodule(head, nn.Sequential(OrderedDict(drop=nn.Dropout(rate), fc=classifier)))
    return f"{head}.fc"


def _groups(module: nn.Module, head: str) -> tuple[LayerGroup, ...]:
    """timm's coarse layer groups, the head left out, named after their first module."""
    from timm.models._manipulate import group_parameters

    in_head = (head + ".",)
    grouped = group_parameters(module, module.group_matcher(coarse=True))
    groups, used = [], set()
    for params in grouped.values():
        params = [p for p in params if not p.startswith(in_head)]
        if not params:
            continue
        modules = covering_modules(module, params)
        name = modules[0] if modules else params[0].rpartition(".")[0] or params[0]
        while name in used:
            name += "_"
        used.add(name)
        groups.append(LayerGroup(name=name, modules=modules, params=tuple(params)))
    return tuple(groups)


def _preprocessing(data: dict) -> Preprocessing:
    crop = int(data["input_size"][-1])
    crop_pct = float(data.get("crop_pct") or 0.875)
    return Preprocessing(resize_size=math.floor(crop / crop_pct), crop_size=crop,
                         mean=tuple(float(m) for m in data["mean"]),
                         std=tuple(float(s) for s in data["std"]),
                         interpolation=str(data.get("interpolation") or "bilinear"))
