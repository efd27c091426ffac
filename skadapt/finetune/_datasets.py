"""The torch ``Dataset`` over :class:`Inputs`: decode and transform one sample at a time.

:class:`InputDataset` is what the estimators fit and predict on. Files are decoded
(``_decoding.py``) and transformed (``_transforms.py``) on every access, in DataLoader workers when
there are some. A frozen-backbone fit that decodes the same files every epoch reads them from the
decoded-image cache instead (``_image_cache.py``). Cached backbone features are read a batch at a
time instead (``_feature_batches.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from skadapt.finetune._adapters import Inputs
from skadapt.finetune._decoding import load_rgb, to_rgb

__all__ = ["InputDataset", "as_targets", "target_tensor", "tensor_view"]


class InputDataset(Dataset):
    """A torch Dataset over :class:`Inputs` that decodes and transforms one sample at a time.

    Files are decoded in ``__getitem__``, so DataLoader workers decode in parallel; the dataset
    pickles (paths, arrays and picklable transforms only).

    Parameters
    ----------
    inputs : Inputs
    y : ndarray, optional
        Numeric targets, one per sample: floats become float32, integers int64 tensors.
    transform : callable, optional
        From :func:`make_transform`. ``None``: arrays pass through as they are, images only
        become float tensors in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from skadapt.finetune._adapters import adapt_inputs
    >>> data = InputDataset(adapt_inputs(np.ones((2, 3, 4, 4))), y=np.array([0, 1]))
    >>> x, target = data[1]
    >>> x.shape, int(target)
    (torch.Size([3, 4, 4]), 1)
    """

    def __init__(self, inputs: Inputs, y: np.ndarray | None = None,
                 transform: Callable | None = None):
        if not isinstance(inputs, Inputs):
            raise TypeError(f"inputs is a {type(inputs).__name__}: pass adapt_inputs(X).")
        self.inputs = inputs
        self.transform = transform
        self.y = as_targets(y, len(inputs))
        self._array = tensor_view(inputs.items) if inputs.kind == "array" else None
        if inputs.kind == "array" and hasattr(transform, "check_inputs"):
            transform.check_inputs(inputs.items)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._sample(index)
        target = self.y[index] if self.y is not None else torch.tensor(0)
        return x, target

    def _sample(self, index: int) -> torch.Tensor | str:
        if self.inputs.kind == "texts":
            return self.inputs.items[index]
        if self._array is not None:
            x = self._array[index]
            return self.transform(x) if self.transform is not None else x
        if self.inputs.kind == "files":
            image = load_rgb(self.inputs.items[index])
        else:
            image = to_rgb(self.inputs.items[index])
        transform = self.transform if self.transform is not None else _TO_TENSOR
        return transform(image)


def tensor_view(items: np.ndarray) -> torch.Tensor:
    """One tensor over the whole array, no copy, so that indexing a sample is cheap."""
    with warnings.catch_warnings():
        # read-only arrays (pandas' copy-on-write views) are fine: samples are never written to
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(items)


_TO_TENSOR = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.ToPureTensor()])


def as_targets(y, n_samples: int) -> torch.Tensor | None:
    """``y`` (array, Series or DataFrame) as a tensor of one target per sample, or None."""
    if y is None:
        return None
    y = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else np.asarray(y)
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)}: they must match.")
    return target_tensor(y)


def target_tensor(y: np.ndarray) -> torch.Tensor:
    """Numeric targets as a tensor: floats become float32, integers and booleans int64."""
    if y.dtype.kind == "f":
        return torch.from_numpy(y.astype(np.float32))
    if y.dtype.kind in "biu":
        return torch.from_numpy(y.astype(np.int64))
    raise TypeError(f"y has dtype {y.dtype}: encode the targets as numbers first "
                    "(e.g. with sklearn.preprocessing.LabelEncoder).")
