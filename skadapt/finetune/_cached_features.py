"""What a network computes for each sample, computed once: looked up in the embedding cache, and
run through the network only for the samples missing from it.

Two users:

- ``PretrainedFeatureExtractor`` (``_extractor``) embeds samples with :func:`cached_embeddings`;
- the fine-tuner's frozen-backbone path trains its head on :func:`cached_backbone_features`, the
  input of the head for every sample (``_cacheability`` says when that is the same computation as
  training the whole network with a frozen backbone).

The network's activations are read by ``skadapt.networks._embedding`` (tap a layer, pool it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from skadapt.finetune._adapters import Inputs
from skadapt.finetune._datasets import InputDataset
from skadapt.finetune._embedding_cache import EmbeddingCache
from skadapt.finetune._fingerprint import (
    fingerprint,
    module_fingerprint,
    sample_keys,
    transform_fingerprint,
)
from skadapt.finetune._precision import autocast_for, resolve_precision
from skadapt.networks import ResolvedNetwork
from skadapt.networks._embedding import tap_one, to_device

__all__ = ["cached_backbone_features", "cached_embeddings", "inference_modes"]

# With a shared cache folder, missing samples are claimed and computed this many batches at a time.
_CHUNK_BATCHES, _MIN_CHUNK = 32, 256


def cached_embeddings(forward: Callable, inputs: Inputs, transform, *,
                      cache: EmbeddingCache | None, computation: str, batch_size: int,
                      num_workers: int, progress: bool = False,
                      collate: Callable | None = None) -> np.ndarray:
    """``forward`` of every sample, as float32 rows: cached ones looked up, the others computed
    (each distinct sample once) and cached.

    Parameters
    ----------
    forward : callable
        A batch (as the DataLoader gives it) to an ``(n, d)`` array.
    inputs : Inputs
    transform : callable or None
        Each sample's preprocessing (the DataLoader's).
    cache : EmbeddingCache or None
        None computes everything and keeps nothing.
    computation : str
        What ``forward`` and ``transform`` compute (a fingerprint): with each sample's content,
        its cache key.
    batch_size, num_workers : int
        Of the DataLoader over the samples missing from the cache.
    progress : bool, default=False
        A progress bar (tqdm) over those samples.
    collate : callable, optional
        The DataLoader's ``collate_fn`` (texts: the tokenizer).

    Returns
    -------
    ndarray of shape (n_samples, d), float32
    """
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
        # each missing entry computed once, also across processes sharing the cache's folder
        fresh = cache.compute_missing(
            list(first_of_key), lambda wanted: run(inputs.subset([first_of_key[key] for key in wanted])),
            chunk_size=max(_MIN_CHUNK, _CHUNK_BATCHES * batch_size))
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


def cached_backbone_features(network: ResolvedNetwork, inputs: Inputs, transform, *,
                             cache: EmbeddingCache | None, batch_size: int, num_workers: int,
                             device, precision: str = "auto", collate: Callable | None = None,
                             options: str = "", backbone: str | None = None) -> torch.Tensor:
    """The input of the network's head for every sample, from the cache or computed once.

    Parameters
    ----------
    network : ResolvedNetwork
        Its module already on ``device``. Its backbone must stay frozen while these features are
        used (see ``_cacheability.cache_applicable``); the head (``network.head``) is left out of
        the cache key, so a new head every fit still finds the features of earlier fits.
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
        Where the module is.
    precision : {"auto", "32", "bf16-mixed", "16-mixed"}, default="auto"
        The fine-tuner's ``precision``: the backbone runs under its autocast (``"auto"``:
        bfloat16 on CUDA, float32 elsewhere); the precision is part of the cache key.
    collate : callable, optional
        The DataLoader's ``collate_fn`` (texts: the tokenizer, see ``TextNetwork.collate``).
    options : str
        Whatever else decides the features and belongs in the cache key (texts: ``max_length``
        and the pooling).
    backbone : str, optional
        ``module_fingerprint(network.module, exclude=network.head)``, when the caller has just
        computed it (computed here otherwise).

    Returns
    -------
    torch.Tensor of shape (n_samples, n_features), float32, on the CPU
        Computed in inference mode; every module's training flag is restored afterwards.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skadapt.networks import resolve_network
    >>> from skadapt.finetune._adapters import adapt_inputs
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
    if backbone is None:
        backbone = module_fingerprint(module, exclude=network.head)
    computation = fingerprint(backbone, "head-input",
                              _PRECISION_KEYS[resolve_precision(precision, device)],
                              transform_fingerprint(transform), options)
    forward = partial(_head_input, module, head, device, precision)
    with inference_modes(module):
        rows = cached_embeddings(forward, inputs, transform, cache=cache, computation=computation,
                                 batch_size=batch_size, num_workers=num_workers, collate=collate)
    return torch.from_numpy(rows)


def _head_input(module: nn.Module, head: nn.Module, device: torch.device, precision: str,
                x) -> np.ndarray:
    with torch.inference_mode(), autocast_for(device, precision):
        features = tap_one(module, head, to_device(x, device), side="input", what="head")
    return features.float().cpu().numpy()


# the precision in the cache key, as it was named before precision was a parameter
_PRECISION_KEYS = {"32": "float32", "bf16-mixed": "bfloat16-autocast",
                   "16-mixed": "float16-autocast"}


@contextlib.contextmanager
def inference_modes(module: nn.Module):
    """Inference mode for every submodule, and each one's own training flag back afterwards (the
    fine-tuner keeps frozen parts in inference mode inside a training network)."""
    flags = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for sub, training in flags:
            sub.training = training
