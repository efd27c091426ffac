"""Cached backbone features, read a batch at a time.

A head trained on cached features reads rows of one in-memory array. Through a plain
``Dataset`` the DataLoader fetches them one sample at a time and stacks them again (``collate``):
for a linear head that Python work cost more than the head's own forward pass. The DataLoader
asks a dataset with ``__getitems__`` for a whole batch of indices at once; :class:`FeatureBatches`
answers with the batch already stacked (one index operation), and :func:`whole_batch` is the
``collate_fn`` that passes it on as it is. The sampler, and so the order of the samples and the
random numbers drawn, are the DataLoader's own: a fit gives the same result either way.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.utils.data import Dataset

from skadapt.finetune._datasets import as_targets, tensor_view

__all__ = ["FeatureBatches", "whole_batch"]


class FeatureBatches(Dataset):
    """Rows of a feature matrix and their targets (and sample weights), fetched batch by batch.

    Items are what the fine-tuner's other datasets give: ``(x, y)``, or ``(x, {"target": y,
    "weight": w})`` with sample weights (see ``WeightedDataset``).

    Parameters
    ----------
    features : ndarray of shape (n_samples, ...)
        Used without a copy.
    y : array-like of shape (n_samples, ...), optional
        Targets (as ``InputDataset`` converts them); without them each target is 0 (prediction).

    Examples
    --------
    >>> import numpy as np
    >>> from torch.utils.data import DataLoader
    >>> data = FeatureBatches(np.arange(10.0).reshape(5, 2), y=np.array([0, 1, 0, 1, 1]))
    >>> x, y = next(iter(DataLoader(data, batch_size=4, collate_fn=whole_batch)))
    >>> x.shape, y.tolist()
    (torch.Size([4, 2]), [0, 1, 0, 1])
    """

    def __init__(self, features: np.ndarray, y=None):
        self.features = tensor_view(features)
        targets = as_targets(y, len(self.features))
        self.y = targets if targets is not None else torch.zeros(len(self.features),
                                                                 dtype=torch.long)
        self.weights = None

    def with_weights(self, weights) -> FeatureBatches:
        """The same rows, each with its sample weight."""
        twin = copy.copy(self)
        if len(weights) != len(self):
            raise ValueError(f"{len(self)} samples but {len(weights)} weights: they must match.")
        twin.weights = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        return twin

    def per_sample(self) -> FeatureBatches:
        """The same rows, fetched one at a time, for a DataLoader with a ``collate_fn`` of the
        user's (which expects samples)."""
        twin = copy.copy(self)
        twin.__getitems__ = None  # the DataLoader then indexes samples one by one
        return twin

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int):
        return self._rows(index)

    def __getitems__(self, indices: list[int]):
        return self._rows(torch.as_tensor(indices, dtype=torch.long))

    def _rows(self, index):
        if self.weights is None:
            return self.features[index], self.y[index]
        return self.features[index], {"target": self.y[index], "weight": self.weights[index]}


def whole_batch(batch):
    """The DataLoader's ``collate_fn`` for :class:`FeatureBatches`: the batch is stacked already."""
    return batch
