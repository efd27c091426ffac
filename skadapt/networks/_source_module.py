"""Your own network: an ``nn.Module`` instance (deep-copied, never mutated) or subclass (built with
no arguments), with ``weights`` ``None`` (its own) or a checkpoint file loaded into it as built.

Head: the last ``nn.Linear`` (or ``head=``); torchvision's Inception v3, GoogLeNet and SqueezeNet
instances keep their known heads. Layer groups: the generic rule. Preprocessing: unknown (None),
so image files need ``image_size=``.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import SwinTransformer, WeightsEnum

from skadapt.networks._base import (
    ResolvedNetwork,
    Source,
    find_heads,
    layer_groups,
    materialize_lazy_layers,
    replace_heads,
)
from skadapt.networks._checkpoints import load_file_into
from skadapt.networks._copy import copy_module
from skadapt.networks._source_torchvision import KNOWN_HEADS


def _claims(model) -> bool:
    return isinstance(model, nn.Module) or (isinstance(model, type) and issubclass(model, nn.Module))


def _resolve(model, weights, *, n_outputs: int, head, example_input, options) -> ResolvedNetwork:
    module = copy_module(model) if isinstance(model, nn.Module) else _instantiate(model)
    if weights is not None:
        if isinstance(weights, WeightsEnum):
            raise ValueError(
                f"weights={weights} are torchvision weights: they apply when model is a "
                "torchvision model name (e.g. model='resnet18'). For your own module, pass a "
                "checkpoint path.")
        load_file_into(module, weights)
    materialize_lazy_layers(module, example_input)
    if isinstance(module, nn.Linear):  # a bare layer is all head: give it a name to replace
        module = nn.Sequential(module)
    heads = find_heads(module, head, KNOWN_HEADS)
    replace_heads(module, heads, n_outputs)
    return ResolvedNetwork(module=module, head=heads, groups=layer_groups(module, heads),
                           preprocessing=None, source="module",
                           channels_last=isinstance(module, SwinTransformer))


SOURCE = Source(name="module", priority=50, claims=_claims, resolve=_resolve)


def _instantiate(cls: type[nn.Module]) -> nn.Module:
    try:
        return cls()
    except TypeError as error:
        raise TypeError(
            f"could not build {cls.__name__}() with no arguments ({error}): pass an instance "
            f"instead, e.g. model={cls.__name__}(...)."
        ) from error
