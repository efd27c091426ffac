"""Embeddings from a pretrained backbone, computed once and cached.

Two users of one engine (:func:`_embed`: look every sample up in the cache, run the network on
the missing ones only, in batches, and fill the cache):

- :class:`PretrainedFeatureExtractor`, an sklearn transformer: images, image paths, arrays or
  texts in, embeddings out, so ``make_pipeline(PretrainedFeatureExtractor(...),
  LogisticRegression())`` is a linear probe whose backbone runs once per sample however many
  folds and grid points reuse it;
- the fine-tuner's frozen-backbone path: :func:`cached_backbone_features` gives the input of the
  head for every sample, :func:`head_only_module` the part of the network that trains on it, and
  :func:`cache_applicable` / :func:`why_cache_not_applicable` say whether training the head on
  cached features is the same computation as training the whole network with a frozen backbone.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.utils.data import DataLoader
from torchvision.ops import StochasticDepth
from tqdm.auto import tqdm

from skadapt.finetune._cache import (
    EmbeddingCache,
    fingerprint,
    module_fingerprint,
    sample_keys,
    shared_cache,
    transform_fingerprint,
)
from skadapt.finetune._device import autocast, resolve_device
from skadapt.finetune._freezing import frozen_by_spec, inference_mode_modules, set_inference_mode
from skadapt.finetune._inputs import (
    InputDataset,
    Inputs,
    adapt_inputs,
    adapt_texts,
    make_transform,
)
from skadapt.networks import ResolvedNetwork, check_array_input, resolve_network, takes_texts
from skadapt.networks._source_hf_text import EMPTY_TEXT

__all__ = [
    "PretrainedFeatureExtractor",
    "cache_applicable",
    "cached_backbone_features",
    "head_only_module",
    "why_cache_not_applicable",
]

POOLINGS = ("avg", "max")
_N_SHOWN = 5


class _StopForward(Exception):
    """Raised by a hook once the wanted activation is captured: the rest is not run."""


# --------------------------------------------------------------------------- the engine
def _embed(forward: Callable[[torch.Tensor], np.ndarray], inputs: Inputs, transform, *,
           cache: EmbeddingCache | None, computation: str, batch_size: int, num_workers: int,
           progress: bool = False, collate: Callable | None = None) -> np.ndarray:
    """``forward`` of every sample, as float32 rows: cached ones looked up, the others computed
    (each distinct sample once) and cached. ``collate`` batches texts (tokenizes them)."""
    run = partial(_run, forward, transform=transform, batch_size=batch_size,
                  num_workers=num_workers, progress=progress, collate=collate)
    if cache is None:
        return run(inputs)
    keys = sample_keys(inputs, computation)
    rows = cache.get_many(keys)
    first_of_key: dict[str, int] = {}
    for index, (key, row) in enumerate(zip(keys, rows)):
        if row is None:
            first_of_key.setdefault(key, index)
    if first_of_key:
        missing = list(first_of_key.values())
        computed = run(inputs.subset(missing))
        fresh = {keys[i]: row.copy() for i, row in zip(missing, computed)}  # copies: no big base
        cache.put_many(list(fresh), list(fresh.values()))
        rows = [fresh[key] if row is None else row for key, row in zip(keys, rows)]
    return np.stack(rows).astype(np.float32, copy=False)


def _run(forward, inputs: Inputs, *, transform, batch_size: int, num_workers: int,
         progress: bool, collate: Callable | None) -> np.ndarray:
    loader = DataLoader(InputDataset(inputs, transform=transform), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers, collate_fn=collate)
    outputs = []
    with tqdm(total=len(inputs), desc="embedding", unit="sample", disable=not progress) as bar:
        for x, _ in loader:
            outputs.append(forward(x))
            bar.update(len(outputs[-1]))
    return np.concatenate(outputs)


def _pool(output: torch.Tensor, pooling: str) -> torch.Tensor:
    """``(n, d)`` from an activation: feature maps ``(n, c, *spatial)`` are pooled over their
    spatial dimensions, token sequences ``(n, tokens, d)`` over their tokens."""
    if output.ndim == 1:
        return output.reshape(-1, 1)
    if output.ndim == 2:
        return output
    dims = (1,) if output.ndim == 3 else tuple(range(2, output.ndim))
    return output.mean(dim=dims) if pooling == "avg" else output.amax(dim=dims)


def _first_tensor(output):
    """The main output of modules that return tuples (Inception's, transformer layers') or a
    Hugging Face ``ModelOutput`` (an ordered mapping whose first value is ``last_hidden_state``)."""
    while isinstance(output, (tuple, list, Mapping)):
        output = next(iter(output.values())) if isinstance(output, Mapping) else output[0]
    return output


# --------------------------------------------------------------------------- the transformer
class PretrainedFeatureExtractor(TransformerMixin, BaseEstimator):
    """Embed images, image paths, arrays or texts with a pretrained network, caching each one.

    The embedding of a sample is what the network feeds its head (the head is replaced by
    ``nn.Identity``), or, with ``layer=``, the pooled output of one layer group. For a Hugging Face
    text encoder it is the encoder's token states (of its last layer, or of ``layer``) pooled over
    the real tokens, padding left out: with ``pooling="avg"``, the sentence embedding that
    sentence-transformers models are trained to give. Embeddings are
    cached (see ``cache``), so fitting this transformer in every fold of a cross-validation or at
    every point of a grid search runs the backbone once per distinct sample.

    Parameters
    ----------
    model : str, torch.nn.Module or type
        As for ``PretrainedFineTuner``: a torchvision classification model name, a timm model
        ``"timm/<name>"`` (the embedding is timm's pre-logits features), your own module
        (instance, deep-copied, or class) whose head is its last ``nn.Linear`` (or ``head=``), or
        a Hugging Face text encoder (a local directory or an ``"org/name"`` id; ``X`` is then
        texts, and ``pip install skadapt[text]`` is needed).
    weights : str, path or None, default=None
        ``"DEFAULT"`` or a torchvision weights name, a checkpoint path, or None (the module's own
        weights; random for names). For timm names ``"DEFAULT"`` is timm's pretrained weights.
    head : str, optional
        Dotted name of the head to remove; by default the last ``nn.Linear`` (or the known head of
        SqueezeNet, Inception v3, GoogLeNet).
    layer : str, optional
        A layer group name (see ``PretrainedFineTuner(...).layer_table()``, e.g. ``"layer3"``):
        embed with that group's pooled output instead; the rest of the network is not run.
    pooling : {"avg", "max"}, default="avg"
        How an activation with more than two dimensions becomes one vector per sample: feature
        maps ``(n, c, h, w)`` are pooled over ``h, w``, token sequences ``(n, tokens, d)`` over
        the tokens (for texts, the real tokens only). Outputs that are already ``(n, d)`` are kept
        as they are. Channels-last maps (Swin's ``features.*``, ``(n, h, w, c)``) are not told
        apart: pool them yourself.
    image_size : int, optional
        Input size for image files and PIL images (by default the model's own; required for your
        own module); for arrays, resize to it.
    mean, std : sequence of float, optional
        Normalization; by default the weights' own (ImageNet's for images without weights).
        Arrays are taken as already normalized unless these are given.
    path_column : str, optional
        The column holding image paths when ``X`` is a DataFrame.
    max_length : int, default=128
        Text models: texts are truncated to this many tokens (part of the cache key).
    empty_text : {"raise", "allow"}, default="raise"
        Text models: missing (None/NaN) or empty texts raise an error naming their positions, or
        are embedded as empty texts.
    batch_size : int, default=64
    num_workers : int, default=0
        DataLoader workers (image files are decoded in parallel).
    cache : bool, default=True
        Keep embeddings in this process's in-memory cache (bounded: 512 MiB by default, least
        recently used first; see ``skadapt.finetune._cache``), keyed by each sample's content and
        a fingerprint of the backbone, its weights, ``layer``, ``pooling`` and the preprocessing
        (for texts, ``max_length``).
    cache_dir : str or path-like, optional
        Also keep embeddings on disk there, shared by processes (``GridSearchCV(n_jobs=...)``)
        and runs; corrupted entries are detected and recomputed.
    device : str, default="auto"
        ``"auto"``: a GPU when present, else the CPU. Embeddings are computed in float32.
    progress : bool, default=False
        Show a progress bar (tqdm) over the samples that are not in the cache.

    Attributes
    ----------
    network_ : ResolvedNetwork
        The network, its head replaced by ``nn.Identity``, in inference mode on ``device_``.
    n_features_out_ : int
        Embedding size.
    n_features_in_ : int
        Only for tabular ``(n, d)`` arrays: ``d``.
    device_ : torch.device

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skadapt.finetune._extractor import PretrainedFeatureExtractor
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ...                           torch.nn.Linear(8, 10))
    >>> X = np.random.default_rng(0).normal(size=(20, 3, 16, 16)).astype("float32")
    >>> embedder = PretrainedFeatureExtractor(net).fit(X)
    >>> embedder.transform(X).shape
    (20, 8)
    >>> embedder.get_feature_names_out()[:3].tolist()
    ['emb0', 'emb1', 'emb2']
    """

    def __init__(self, model, weights=None, *, head=None, layer=None, pooling="avg",
                 image_size=None, mean=None, std=None, path_column=None, max_length=128,
                 empty_text="raise", batch_size=64, num_workers=0, cache=True, cache_dir=None,
                 device="auto", progress=False):
        self.model = model
        self.weights = weights
        self.head = head
        self.layer = layer
        self.pooling = pooling
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.path_column = path_column
        self.max_length = max_length
        self.empty_text = empty_text
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache = cache
        self.cache_dir = cache_dir
        self.device = device
        self.progress = progress

    def fit(self, X, y=None):
        """Build the network (weights loaded, head removed); ``X`` only shows the input kind.

        Returns
        -------
        self
        """
        self._validate_parameters()
        inputs = self._adapt(X)
        device = resolve_device(self.device)
        network = resolve_network(self.model, self.weights, n_outputs=1, head=self.head,
                                  example_input=partial(self._example_batch, inputs))
        for name in network.head:
            network.module.set_submodule(name, nn.Identity())
        network.module.requires_grad_(False).eval().to(device)
        self._layer_module(network)  # a wrong layer name fails in fit, not in transform
        if inputs.kind == "array":
            check_array_input(network, inputs.items.shape, image_size=self.image_size)
        self.network_ = network
        self.device_ = device
        self.computation_ = fingerprint(module_fingerprint(network.module),
                                        f"layer={self.layer}", f"pooling={self.pooling}", "fp32",
                                        f"max_length={self.max_length}" if self._text else "")
        if inputs.kind == "array" and inputs.items.ndim == 2:
            self.n_features_in_ = inputs.items.shape[1]
        self.n_features_out_ = self._first_embedding(inputs).shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        """The embedding of each sample of ``X``.

        Returns
        -------
        ndarray of shape (n_samples, n_features_out_), float32
        """
        check_is_fitted(self, "network_")
        inputs = self._adapt(X)
        expected = getattr(self, "n_features_in_", None)
        if expected is not None and inputs.kind == "array" and inputs.items.ndim == 2 \
                and inputs.items.shape[1] != expected:
            raise ValueError(f"X has {inputs.items.shape[1]} features, but "
                             f"{type(self).__name__} is expecting {expected} features as input.")
        if inputs.kind == "array":
            check_array_input(self.network_, inputs.items.shape, image_size=self.image_size)
        return self._embed(inputs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # embeddings are float32 whatever X
        return tags

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """``emb0``, ``emb1``, ... one name per embedding dimension."""
        check_is_fitted(self, "n_features_out_")
        return np.asarray([f"emb{i}" for i in range(self.n_features_out_)], dtype=object)

    # ----------------------------------------------------------------- internals
    @property
    def _text(self) -> bool:
        return takes_texts(self.model)

    def _validate_parameters(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r}: pass one of {POOLINGS}.")
        if self.empty_text not in EMPTY_TEXT:
            raise ValueError(f"empty_text={self.empty_text!r}: pass 'raise' or 'allow'.")
        if self.layer is not None and not isinstance(self.layer, str):
            raise TypeError(f"layer={self.layer!r}: pass None or a layer group name (str).")
        for name, low in (("batch_size", 1), ("num_workers", 0), ("max_length", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name}={value!r}: pass an int >= {low}.")
        for name in ("cache", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}={getattr(self, name)!r}: pass True or False.")
        if self.cache_dir is not None:
            if not isinstance(self.cache_dir, (str, os.PathLike)):
                raise TypeError(f"cache_dir={self.cache_dir!r}: pass a folder path or None.")
            if not self.cache:
                raise ValueError("cache_dir is set but cache=False: pass cache=True to use the "
                                 "disk cache, or drop cache_dir.")

    def _adapt(self, X) -> Inputs:
        if self._text:  # the model decides: a path and a sentence are both str
            return adapt_texts(X, empty_text=self.empty_text)
        return adapt_inputs(X, path_column=self.path_column)

    def _transform(self, kind: str, preprocessing=None):
        return make_transform(kind, train=False, preprocessing=preprocessing,
                              image_size=self.image_size, mean=self.mean, std=self.std,
                              augment=False)

    def _example_batch(self, inputs: Inputs) -> torch.Tensor:
        """Two samples, for modules with lazy layers (their shapes are set by a first forward)."""
        dataset = InputDataset(inputs.subset(list(range(min(2, len(inputs))))),
                               transform=self._transform(inputs.kind))
        return torch.stack([dataset[i][0] for i in range(len(dataset))])

    def _layer_module(self, network: ResolvedNetwork) -> nn.Module | None:
        if self.layer is None:  # the head's input; for texts, the token states before pooling
            name = network.embedding_layer
            return network.module.get_submodule(name) if name else None
        groups = {group.name: group for group in network.groups}
        if self.layer not in groups:
            raise ValueError(f"layer={self.layer!r} is not a layer group of this network: pass one "
                             f"of {list(groups)}.")
        modules = groups[self.layer].modules
        if not modules:
            raise ValueError(f"layer={self.layer!r} is not a submodule whose output can be read: "
                             f"pass one of {[g for g in groups if groups[g].modules]}.")
        return network.module.get_submodule(modules[-1])

    def _first_embedding(self, inputs: Inputs) -> np.ndarray:
        """The first sample's embedding: a network that cannot take X fails here, clearly."""
        first = inputs.subset([0])
        try:
            return self._embed(first)
        except RuntimeError as error:  # torch's shape errors, e.g. "mat1 and mat2 shapes ..."
            if self._text:
                raise
            dataset = InputDataset(first, transform=self._transform(inputs.kind,
                                                                    self.network_.preprocessing))
            shape = tuple(dataset[0][0].shape)
            raise ValueError(f"the network cannot run on the samples of X (one sample, as the "
                             f"network sees it, has shape {shape}): {error}. Check that X has the "
                             "channels / features and size the network expects (image_size=, "
                             "mean=, std=).") from error

    def _embed(self, inputs: Inputs) -> np.ndarray:
        transform = self._transform(inputs.kind, self.network_.preprocessing)
        cache = shared_cache(self.cache_dir) if self.cache else None
        computation = fingerprint(self.computation_, transform_fingerprint(transform))
        forward = partial(_embedding_forward, self.network_.module,
                          self._layer_module(self.network_), self.pooling, self.device_)
        collate = self.network_.collate(self.max_length)
        return _embed(forward, inputs, transform, cache=cache, computation=computation,
                      batch_size=self.batch_size, num_workers=self.num_workers,
                      progress=self.progress, collate=collate)


def _embedding_forward(module: nn.Module, layer: nn.Module | None, pooling: str,
                       device: torch.device, x: torch.Tensor | Mapping) -> np.ndarray:
    if isinstance(x, Mapping):  # tokenized texts
        return _text_embedding(module, layer, pooling, device, x)
    x = x.to(device, non_blocking=True)
    with torch.inference_mode():
        output = module(x) if layer is None else _output_of(module, layer, x)
        return _pool(_first_tensor(output), pooling).float().cpu().numpy()


def _text_embedding(module: nn.Module, layer: nn.Module, pooling: str, device: torch.device,
                    batch: Mapping) -> np.ndarray:
    """``layer``'s token states pooled over the real tokens: padding must not count, or a text's
    embedding would depend on the longest text of its batch."""
    batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
    with torch.inference_mode():
        states = _first_tensor(_output_of(module, layer, batch)).float()
        real = batch["attention_mask"].unsqueeze(-1).bool()
        if pooling == "avg":
            pooled = (states * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)
        else:
            pooled = states.masked_fill(~real, float("-inf")).amax(dim=1)
        return pooled.cpu().numpy()


def _output_of(module: nn.Module, layer: nn.Module, x) -> torch.Tensor:
    """The output of ``layer`` when ``module`` runs on ``x``; what follows it is not run."""
    return _intercept(module, layer, x, take_input=False, what="layer")


def _input_of(module: nn.Module, layer: nn.Module, x) -> torch.Tensor:
    """The first input of ``layer`` (the head) when ``module`` runs on ``x``; it is not run."""
    return _intercept(module, layer, x, take_input=True, what="head")


def _intercept(module: nn.Module, layer: nn.Module, x, *, take_input: bool,
               what: str) -> torch.Tensor:
    captured = []

    def capture(_module, inputs, output=None):
        captured.append(inputs[0] if take_input else output)
        raise _StopForward  # nothing after this layer is needed

    handle = (layer.register_forward_pre_hook(capture) if take_input
              else layer.register_forward_hook(capture))
    try:
        _call(module, x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"the {what} {type(layer).__name__} did not run in the network's "
                         f"forward pass: pick a {what} that does.")
    return captured[0]


def _call(module: nn.Module, x):
    return module(**x) if isinstance(x, Mapping) else module(x)


# --------------------------------------------------------------------------- fine-tuner's path
def cached_backbone_features(network: ResolvedNetwork, inputs: Inputs, transform, *,
                             cache: EmbeddingCache | None, batch_size: int, num_workers: int,
                             device, collate: Callable | None = None,
                             options: str = "") -> torch.Tensor:
    """The input of the network's head for every sample, from the cache or computed once.

    Parameters
    ----------
    network : ResolvedNetwork
        Its module already on ``device``. Its backbone must stay frozen while these features are
        used (see :func:`cache_applicable`); the head (``network.head``) is left out of the cache
        key, so a new head every fit still finds the features of earlier fits.
    inputs : Inputs
        Arrays, image files, PIL images or texts (one feature row per sample, in order).
    transform : callable or None
        The deterministic preprocessing (``make_transform(kind, train=False, ...)``); part of the
        cache key.
    cache : EmbeddingCache or None
        E.g. ``shared_cache(cache_dir)``; None computes everything and keeps nothing.
    batch_size, num_workers : int
        Of the DataLoader over the samples missing from the cache.
    device : str or torch.device
        Where the module is. On CUDA the backbone runs under bfloat16 autocast, as the fine-tuner
        does; the precision is part of the cache key.
    collate : callable, optional
        The DataLoader's ``collate_fn`` (texts: the tokenizer, see ``TextNetwork.collate``).
    options : str
        Whatever else decides the features and belongs in the cache key (texts: ``max_length``
        and the pooling).

    Returns
    -------
    torch.Tensor of shape (n_samples, n_features), float32, on the CPU
        Computed in inference mode; every module's training flag is restored afterwards.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skadapt.networks import resolve_network
    >>> from skadapt.finetune._inputs import adapt_inputs
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> network = resolve_network(net, n_outputs=2)
    >>> X = adapt_inputs(np.ones((5, 4), dtype="float32"))
    >>> features = cached_backbone_features(network, X, None, cache=None, batch_size=2,
    ...                                     num_workers=0, device="cpu")
    >>> features.shape
    torch.Size([5, 8])
    """
    device = torch.device(device)
    module = network.module
    head = module.get_submodule(network.head[-1])
    computation = fingerprint(module_fingerprint(module, exclude=network.head), "head-input",
                              _precision(device), transform_fingerprint(transform), options)
    forward = partial(_head_input_forward, module, head, device)
    with _inference_modes(module):
        rows = _embed(forward, inputs, transform, cache=cache, computation=computation,
                      batch_size=batch_size, num_workers=num_workers, collate=collate)
    return torch.from_numpy(rows)


def _head_input_forward(module: nn.Module, head: nn.Module, device: torch.device,
                        x: torch.Tensor | Mapping) -> np.ndarray:
    if isinstance(x, Mapping):  # tokenized texts
        x = {key: value.to(device, non_blocking=True) for key, value in x.items()}
    else:
        x = x.to(device, non_blocking=True)
    with torch.inference_mode(), autocast(device):
        features = _input_of(module, head, x)
    return features.float().cpu().numpy()


def head_only_module(network: ResolvedNetwork) -> nn.Module:
    """The part of the network that trains on :func:`cached_backbone_features`.

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
        with _inference_modes(module), torch.no_grad():
            network_output, head_outputs, inference_input = _run_with_head_hook(module, head, x)
            if len(head_outputs) != 1:
                return f"the head {name!r} ran {len(head_outputs)} times in one forward pass."
            if not torch.equal(_first_tensor(network_output), head_outputs[0]):
                return (f"the network's output is not its head's ({name!r}): layers after the head "
                        "would have to run on every batch.")
            module.train()
            set_inference_mode(_frozen_backbone_parts(network))  # as the fine-tuner trains
            trailing = _dropout_before(module, name)
            if trailing is not None:  # it feeds the head: head_only_module keeps it
                trailing[1].eval()
            training_input = _input_of(module, head, x)
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


def _run_with_head_hook(module: nn.Module, head: nn.Module, x):
    """The network's output, the head's outputs (one per call) and the head's first input."""
    outputs, inputs = [], []

    def capture(_module, args, output):
        inputs.append(args[0])
        outputs.append(output)

    handle = head.register_forward_hook(capture)
    try:
        network_output = _call(module, x)
    finally:
        handle.remove()
    return network_output, outputs, (inputs[0] if inputs else None)


@contextlib.contextmanager
def _inference_modes(module: nn.Module):
    """Inference mode for every submodule, and each one's own training flag back afterwards (the
    fine-tuner keeps frozen parts in inference mode inside a training network)."""
    flags = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for sub, training in flags:
            sub.training = training


def _precision(device: torch.device) -> str:
    return "bfloat16-autocast" if device.type == "cuda" else "float32"


def _shown(names: list[str]) -> str:
    more = f", ... ({len(names) - _N_SHOWN} more)" if len(names) > _N_SHOWN else ""
    return "[" + ", ".join(repr(n) for n in names[:_N_SHOWN]) + more + "]"
