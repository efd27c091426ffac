"""Sample and class weights: one weight per training sample, and the weighted loss.

``fit(X, y, sample_weight=w)`` and the classifier's ``class_weight`` combine into one weight per
sample (their product), rescaled to average 1 over the samples of the fit: only their ratios
matter, so the learning rate keeps its meaning whatever their scale. The gradient path sees them
through :class:`WeightedDataset` (each target travels with its weight) and :func:`weighted_loss`
(``sum(w_i * loss_i) / batch size``); the convex head passes them to the solver. Equal weights are
no weights: the fit is then exactly the unweighted one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import _check_sample_weight
from torch.utils.data import Dataset


def fit_weights(y: np.ndarray, n_samples: int, sample_weight=None,
                class_weight=None) -> np.ndarray | None:
    """One weight per sample, averaging 1, or None when every sample weighs the same.

    Parameters
    ----------
    y : ndarray
        The targets as the estimator encodes them (class codes for a classifier).
    n_samples : int
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative; at least one must be positive.
    class_weight : None, "balanced" or dict, optional
        As in sklearn: ``"balanced"`` weighs each class by ``n_samples / (n_classes * count)``;
        a dict maps (encoded) classes to weights, missing classes weigh 1.

    Examples
    --------
    >>> [round(float(w), 3) for w in fit_weights(np.array([0, 0, 0, 1]), 4, class_weight="balanced")]
    [0.667, 0.667, 0.667, 2.0]
    >>> print(fit_weights(np.array([0, 1]), 2, sample_weight=[3, 3]))
    None
    """
    weights = np.ones(n_samples)
    if sample_weight is not None:
        try:
            weights = _check_sample_weight(sample_weight, np.empty((n_samples, 0)),
                                           ensure_non_negative=True)
        except ValueError as error:
            raise ValueError(f"sample_weight is not usable: {error} Pass one non-negative "
                             f"number per sample ({n_samples}).") from error
        if not weights.sum() > 0:
            raise ValueError("sample_weight sums to 0: at least one sample must weigh more than 0.")
    if class_weight is not None:
        weights = weights * compute_sample_weight(class_weight, y)
    if np.all(weights == weights[0]):
        return None
    return (weights * (n_samples / weights.sum())).astype(np.float32)


class WeightedDataset(Dataset):
    """A dataset whose targets travel with their weights: ``(x, {"target": y, "weight": w})``.

    Examples
    --------
    >>> data = WeightedDataset([(torch.zeros(2), torch.tensor(1))], np.array([0.5]))
    >>> x, target = data[0]
    >>> int(target["target"]), float(target["weight"])
    (1, 0.5)
    """

    def __init__(self, dataset: Dataset, weights: np.ndarray):
        if len(dataset) != len(weights):
            raise ValueError(f"{len(dataset)} samples but {len(weights)} weights: they must match.")
        self.dataset = dataset
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index]
        return x, {"target": y, "weight": self.weights[index]}


def target_of(y):
    """The target part of a batch's ``y`` (weighted or not), e.g. for skorch's scoring callbacks."""
    return y["target"] if isinstance(y, Mapping) else y


def weighted_loss(criterion: torch.nn.Module, y_pred: torch.Tensor, target: torch.Tensor,
                  weights: torch.Tensor) -> torch.Tensor:
    """``sum(w_i * loss_i) / n`` over a batch, from a criterion with a ``reduction`` attribute
    (``sum(w_i * loss_i)`` for ``reduction="sum"``: the criterion's own scale, weighted).

    Dividing by the batch size rather than by the batch's total weight keeps the weighting across
    batches: a batch of heavy samples moves the weights more than a batch of light ones.
    """
    reduction = getattr(criterion, "reduction", None)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"sample_weight and class_weight need a criterion with reduction='mean' "
                         f"(like torch's losses); {type(criterion).__name__} has "
                         f"reduction={reduction!r}. Weigh the samples in your criterion instead.")
    criterion.reduction = "none"
    try:
        per_element = criterion(y_pred, target)
    finally:
        criterion.reduction = reduction
    per_element = per_element.reshape(len(weights), -1)
    per_sample = per_element.sum(dim=1) if reduction == "sum" else per_element.mean(dim=1)
    total = (per_sample * weights.to(per_sample.dtype)).sum()
    return total if reduction == "sum" else total / len(weights)
