"""One registry of network sources: which source a ``model`` belongs to, and resolving it.

Every module of this package named ``_source_<name>.py`` defines ``SOURCE``, a
:class:`~skadapt.networks._base.Source`; the registry finds them by that name, so adding a
source is adding one file. Sources are asked in increasing ``priority``: timm (``"timm/<name>"``),
Hugging Face image models (a folder, or a cached ``"org/name"``, whose config has
``num_channels``), Hugging Face text encoders (any other folder or ``"org/name"`` id), your own
modules, and last torchvision, which takes every other name (and says which names it knows).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping

import torch

from skadapt.networks._base import ResolvedNetwork, Source, check_n_outputs
from skadapt.networks._memo import memoized_inference, memoized_resolve, network_key


@functools.cache
def sources() -> tuple[Source, ...]:
    """Every source, in the order they are asked."""
    package = __name__.rpartition(".")[0]
    path = importlib.import_module(package).__path__
    found = [importlib.import_module(f"{package}.{info.name}").SOURCE
             for info in pkgutil.iter_modules(path) if info.name.startswith("_source_")]
    return tuple(sorted(found, key=lambda source: source.priority))


def source_of(model) -> Source | None:
    """The source that claims ``model``, or None.

    Examples
    --------
    >>> source_of("resnet18").name, source_of("timm/resnet18").name
    ('torchvision', 'timm')
    """
    return next((source for source in sources() if source.claims(model)), None)


def takes_texts(model) -> bool:
    """Whether ``X`` is texts for ``model`` (a Hugging Face text encoder), decided from the model
    alone: an image path and a sentence are both strings.

    Examples
    --------
    >>> takes_texts("sentence-transformers/all-MiniLM-L6-v2"), takes_texts("resnet18")
    (True, False)
    """
    source = source_of(model)
    return source is not None and source.takes_texts


def default_weights(model):
    """What ``--weights auto`` means for ``model``: pretrained for names (``"DEFAULT"``), the
    module's own weights (None) otherwise."""
    source = source_of(model)
    return None if source is None else source.default_weights(model)


def resolve_network(model, weights=None, n_outputs: int = 2, head: str | None = None,
                    example_input: torch.Tensor | Callable[[], torch.Tensor] | None = None,
                    *, text_options: Mapping | None = None) -> ResolvedNetwork:
    """Build ``model`` with ``weights``, replace its head, and split its backbone into groups.

    Parameters
    ----------
    model : str, path-like, nn.Module or nn.Module subclass
        A torchvision classification model name (``"resnet18"``), a timm model
        (``"timm/<name>"`` or ``"timm/<name>.<pretrained tag>"``), a Hugging Face image model or
        text encoder (a local directory or an ``"org/name"`` hub id), a module instance
        (deep-copied) or a module class (built with no arguments).
    weights : None, str or path-like, default=None
        ``None``: random weights for names, the module's own for modules. torchvision names:
        ``"DEFAULT"`` or a weights name such as ``"IMAGENET1K_V1"`` (downloaded to the torch hub
        cache), or a ``WeightsEnum`` member. timm names: ``"DEFAULT"`` (timm's pretrained
        weights, downloaded). Any image model: a checkpoint file (``.pt``, ``.pth``, ``.th``,
        ``.bin``, ``.safetensors``) loaded into the architecture as built.
    n_outputs : int, default=2
        Outputs of the new head.
    head : str, optional
        Dotted name of the layer to replace; by default the source's own rule.
    example_input : torch.Tensor or callable returning one, optional
        A small batch run once through a module with lazy layers (``nn.LazyLinear``...) so that
        their shapes are known before the head and the groups are read; a callable is only called
        when the module has lazy layers.
    text_options : mapping, optional
        Options of particular sources (text models: ``pooling``, ``adapter``, ``lora_r``,
        ``lora_alpha``); ignored by the others.

    Returns
    -------
    ResolvedNetwork
        A new network every call (no two calls share a weight tensor). Pretrained weights are
        loaded once per process: the network is kept in a small memo keyed by the model and the
        weights' identity (file path, size and modification time; names; your module's
        architecture), and each call gets a fresh copy with new heads (see
        ``skadapt.networks._memo``; ``skadapt.networks._memo.clear_network_memo()`` empties it).

    Examples
    --------
    >>> network = resolve_network("resnet18", weights=None, n_outputs=2)
    >>> network.head, network.module.fc.out_features
    (('fc',), 2)
    """
    check_n_outputs(n_outputs)
    build, key = _build_and_key(model, weights, n_outputs, head, example_input, text_options)
    return memoized_resolve(build, key, n_outputs)


def inference_network(model, weights=None, head: str | None = None,
                      example_input: torch.Tensor | Callable[[], torch.Tensor] | None = None,
                      *, device: torch.device | str = "cpu") -> ResolvedNetwork:
    """``model`` with ``weights`` for inference only: heads removed, frozen, ``eval``, on ``device``.

    Parameters are those of :func:`resolve_network`. Unlike it, every call for the same model,
    weights, head and device returns the *same* network (built once per process, then shared,
    not copied): it is read-only, for callers that never train it. A caller that changes its
    weights in place keeps the changed network; the next call builds a new one.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> shared = inference_network(net)
    >>> shared.module[2], shared is inference_network(net)
    (Identity(), True)
    """
    build, key = _build_and_key(model, weights, 1, head, example_input, None)
    return memoized_inference(build, key, torch.device(device))


def _build_and_key(model, weights, n_outputs, head, example_input, text_options):
    """How the source of ``model`` builds it, and the network memo's key for it."""
    source = source_of(model)
    if source is None:
        raise TypeError(
            "model must be a torchvision model name (str), 'timm/<name>', a Hugging Face model "
            "directory or 'org/name' id, an nn.Module instance or an nn.Module subclass; got a "
            f"{type(model).__name__}."
        )
    options = text_options or {}

    def build() -> ResolvedNetwork:
        return source.resolve(model, weights, n_outputs=n_outputs, head=head,
                              example_input=example_input, options=options)

    return build, network_key(source.name, model, weights, n_outputs=n_outputs, head=head,
                              options=options)
