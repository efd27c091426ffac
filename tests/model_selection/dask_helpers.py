"""What the Dask tests send to the workers: importable there (a module, not a test function).

A worker process unpickles the estimators of a search, so their network's classes must be
importable by it; and it answers ``client.run`` calls that read and reset its counters.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from skadapt.finetune._embedding_cache import shared_cache

N_FEATURES = 6
# Samples that went through a CountingBackbone in this process (each worker has its own count).
_FORWARD_SAMPLES = [0]


class Counter(nn.Module):
    """The identity, counting the samples that pass: how often the backbone ran, per process."""

    def forward(self, x):
        _FORWARD_SAMPLES[0] += x.shape[0]
        return x


def make_network(n_outputs: int = 2) -> nn.Module:
    """A tiny pretrained-like network: a counted backbone and a linear head (``2`` replaced)."""
    torch.manual_seed(0)
    return nn.Sequential(Counter(), nn.Linear(N_FEATURES, 16), nn.ReLU(),
                         nn.Linear(16, n_outputs))


def classification_data(n_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % 2
    X = rng.normal(size=(n_samples, N_FEATURES)).astype(np.float32)
    X[:, 0] += 1.5 * (2 * y - 1)
    return X, y


def regression_data(n_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, N_FEATURES)).astype(np.float32)
    return X, (X[:, 0] - 0.5 * X[:, 1]).astype(np.float32)


def forward_samples() -> int:
    """The backbone's count in this process."""
    return _FORWARD_SAMPLES[0]


def reset(cache_dir: str | None = None) -> None:
    """Zero the count and forget this process's cached features (memory and statistics)."""
    _FORWARD_SAMPLES[0] = 0
    cache = shared_cache(cache_dir)
    cache.clear()
    cache.reset_stats()


def cache_stats(cache_dir: str | None = None) -> dict:
    """This process's embedding-cache statistics for ``cache_dir``."""
    stats = shared_cache(cache_dir).stats
    return {"computed": stats.computed, "waited": stats.waited, "hits": stats.hits}
