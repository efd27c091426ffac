"""``PretrainedFeatureExtractor``: embeddings from a pretrained backbone, computed once and cached.

An sklearn transformer: images, image paths, arrays or texts in, embeddings out, so
``make_pipeline(PretrainedFeatureExtractor(...), LogisticRegression())`` is a linear probe whose
backbone runs once per sample however many folds and grid points reuse it. The network's
activations are read and pooled by ``skadapt.networks._embedding``; the cache lookups are
``_cached_features.cached_embeddings``.
"""

from __future__ import annotations

import os
import warnings
from functools import partial
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import (
    Hidden,
    InvalidParameterError,
    Options,
    StrOptions,
)
from sklearn.utils.validation import check_is_fitted
from torch import nn

from skadapt._constraints import Number
from skadapt.finetune._adapters import Inputs, adapt_for
from skadapt.finetune._cached_features import cached_embeddings
from skadapt.finetune._clone import clone_sharing_model
from skadapt.finetune._datasets import InputDataset
from skadapt.finetune._device import resolve_device
from skadapt.finetune._embedding_cache import shared_cache
from skadapt.finetune._fingerprint import fingerprint, module_fingerprint, transform_fingerprint
from skadapt.finetune._transforms import make_transform
from skadapt.networks import ResolvedNetwork, check_array_input, inference_network, takes_texts
from skadapt.networks._embedding import embed, to_device

__all__ = ["PretrainedFeatureExtractor"]

# the pooling as the cache key has always spelled it: caches written before "mean" stay valid
_KEYED_POOLING = {"mean": "avg", "avg": "avg", "max": "max", "cls": "cls"}


class PretrainedFeatureExtractor(TransformerMixin, BaseEstimator):
    """Embed images, image paths, arrays or texts with a pretrained network, caching each one.

    The embedding of a sample is what the network feeds its head (the head is replaced by
    ``nn.Identity``), or, with ``layer=``, the pooled output of one layer group. For a Hugging Face
    text encoder it is the encoder's token states (of its last layer, or of ``layer``) pooled over
    the real tokens, padding left out: with ``pooling="mean"``, the sentence embedding that
    sentence-transformers models are trained to give. Embeddings are cached (see
    ``feature_cache``), so fitting this transformer in every fold of a cross-validation or at
    every point of a grid search runs the backbone once per distinct sample.

    Parameters
    ----------
    model : str, torch.nn.Module or type
        As for ``PretrainedFineTuner``: a torchvision classification model name, a timm model
        ``"timm/<name>"`` (the embedding is timm's pre-logits features), your own module
        (an instance, never changed and shared by ``clone``, or a class) whose head is its last
        ``nn.Linear`` (or ``head=``), or a Hugging Face text encoder (a local directory or an
        ``"org/name"`` id; ``X`` is then texts, and ``pip install skadapt[text]`` is needed).
    weights : str, path or None, default=None
        ``"DEFAULT"`` or a torchvision weights name, a checkpoint path, or None (the module's own
        weights; random for names). For timm names ``"DEFAULT"`` is timm's pretrained weights.
    head : str, optional
        Dotted name of the head to remove; by default the last ``nn.Linear`` (or the known head of
        SqueezeNet, Inception v3, GoogLeNet).
    layer : str, optional
        A layer group name (see ``PretrainedFineTuner(...).layer_table()``, e.g. ``"layer3"``):
        embed with that group's pooled output instead; the rest of the network is not run.
        Channels-last feature maps (Swin's ``features.*``, timm's NHWC models) are pooled over
        their spatial dimensions too.
    pooling : {"mean", "max", "cls"}, default="mean"
        How an activation with more than two dimensions becomes one vector per sample, as the
        fine-tuner's ``pooling`` says it: ``"mean"`` and ``"max"`` pool feature maps
        ``(n, c, h, w)`` over ``h, w`` and token sequences ``(n, tokens, d)`` over the tokens (for
        texts, the real tokens only); ``"cls"`` is the first token of a token sequence (texts, or
        a transformer layer's output; any other shape is an error). Outputs that are already
        ``(n, d)`` are kept as they are by ``"mean"`` and ``"max"``. ``"avg"`` is the former name
        of ``"mean"``: deprecated, it warns.
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
    feature_cache : "auto" or False, default="auto"
        ``"auto"``: keep embeddings in this process's in-memory cache (bounded: 512 MiB by
        default, least recently used first; see ``skadapt.set_config``), keyed by each sample's
        content and a fingerprint of the backbone, its weights, ``layer``, ``pooling`` and the
        preprocessing (for texts, ``max_length``); the fine-tuner's ``feature_cache`` is the same
        cache. False: compute every embedding, keep none.
    cache : bool, optional
        Deprecated: pass ``feature_cache="auto"`` (for True) or ``feature_cache=False``. When
        given, it warns and wins over ``feature_cache``.
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
        Read-only: the extractors of the same model, weights and device in one process share it
        (it is built once, not copied per fit); deep-copy it before changing it.
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
    >>> PretrainedFeatureExtractor(net, layer="0", pooling="max").fit_transform(X).shape
    (20, 8)
    """

    # Each parameter's valid values, checked when fit starts (sklearn's InvalidParameterError);
    # model and weights are checked by resolve_network, which names what it takes.
    _parameter_constraints: dict = {
        "model": "no_validation",
        "weights": "no_validation",
        "head": [str, None],
        "layer": [str, None],
        "pooling": [StrOptions({"mean", "max", "cls", "avg"}, deprecated={"avg"})],
        "image_size": [Number(Integral, 1, None, closed="left"), None],
        "mean": ["array-like", None],
        "std": ["array-like", None],
        "path_column": [str, None],
        "max_length": [Number(Integral, 2, None, closed="left")],
        "empty_text": [StrOptions({"raise", "allow"})],
        "batch_size": [Number(Integral, 1, None, closed="left")],
        "num_workers": [Number(Integral, 0, None, closed="left")],
        "feature_cache": [StrOptions({"auto"}), Options(bool, {False})],
        "cache": ["boolean", Hidden(StrOptions({"deprecated"}))],
        "cache_dir": [str, os.PathLike, None],
        "device": [str, torch.device, None],
        "progress": ["boolean"],
    }

    def __init__(self, model, weights=None, *, head=None, layer=None, pooling="mean",
                 image_size=None, mean=None, std=None, path_column=None, max_length=128,
                 empty_text="raise", batch_size=64, num_workers=0, feature_cache="auto",
                 cache="deprecated", cache_dir=None, device="auto", progress=False):
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
        self.feature_cache = feature_cache
        self.cache = cache
        self.cache_dir = cache_dir
        self.device = device
        self.progress = progress

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Build the network (weights loaded, head removed); ``X`` only shows the input kind.

        Returns
        -------
        self
        """
        self._check_deprecated_and_combined()
        inputs = self._adapt(X, fitting=True)
        device = resolve_device(self.device)
        # shared read-only by the extractors of this model (it never trains): not copied per fit
        network = inference_network(self.model, self.weights, head=self.head,
                                    example_input=partial(self._example_batch, inputs),
                                    device=device)
        self._layer_module(network)  # a wrong layer name fails in fit, not in transform
        if inputs.kind == "array":
            check_array_input(network, inputs.items.shape, image_size=self.image_size)
        self.network_ = network
        self.device_ = device
        # channels-last maps were pooled over the wrong dimensions before: new cache entries
        maps = ["channels-last"] if network.channels_last and self.layer is not None else []
        self.computation_ = fingerprint(module_fingerprint(network.module),
                                        f"layer={self.layer}",
                                        f"pooling={_KEYED_POOLING[self.pooling]}", "fp32",
                                        f"max_length={self.max_length}" if self._text else "",
                                        *maps)
        if inputs.kind == "array" and inputs.items.ndim == 2:
            self.n_features_in_ = inputs.items.shape[1]
        self.input_kind_ = inputs.kind
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

    def __sklearn_clone__(self):
        return clone_sharing_model(self)  # the pretrained module is read, never changed

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

    @property
    def _cached(self) -> bool:
        """Whether embeddings go through the cache: ``cache`` (deprecated) wins when given."""
        return self.cache if self.cache != "deprecated" else self.feature_cache == "auto"

    def _check_deprecated_and_combined(self) -> None:
        """The deprecated spellings (a FutureWarning each) and the rules tying parameters."""
        if self.pooling == "avg":
            warnings.warn("pooling='avg' is deprecated and will be removed in a future release: "
                          "pass pooling='mean' (the same embeddings).", FutureWarning, stacklevel=4)
        if self.cache != "deprecated":
            instead = "feature_cache='auto'" if self.cache else "feature_cache=False"
            warnings.warn(f"cache={self.cache!r} is deprecated and will be removed in a future "
                          f"release: pass {instead}.", FutureWarning, stacklevel=4)
        if self.cache_dir is not None and not self._cached:
            off = "cache=False" if self.cache != "deprecated" else "feature_cache=False"
            raise InvalidParameterError(f"cache_dir is set but {off}: pass feature_cache='auto' "
                                        "to use the disk cache, or drop cache_dir.")

    def _adapt(self, X, *, fitting: bool = False) -> Inputs:
        network = None if fitting else getattr(self, "network_", None)
        return adapt_for(self.model, X, network=network, path_column=self.path_column,
                         empty_text=self.empty_text)

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
        cache = shared_cache(self.cache_dir) if self._cached else None
        computation = fingerprint(self.computation_, transform_fingerprint(transform))
        pooling = "mean" if self.pooling == "avg" else self.pooling
        forward = partial(_embedding_forward, self.network_.module,
                          self._layer_module(self.network_), pooling,
                          self.network_.channels_last, self.device_)
        return cached_embeddings(forward, inputs, transform, cache=cache, computation=computation,
                                 batch_size=self.batch_size, num_workers=self.num_workers,
                                 progress=self.progress,
                                 collate=self.network_.collate(self.max_length))


def _embedding_forward(module: nn.Module, layer: nn.Module | None, pooling: str,
                       channels_last: bool, device: torch.device, x) -> np.ndarray:
    with torch.inference_mode():
        return embed(module, to_device(x, device), layer=layer, pooling=pooling,
                     channels_last=channels_last).cpu().numpy()
