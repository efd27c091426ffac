"""Image transforms: the per-sample resize, crop, augmentation and normalization of each input kind.

How images are transformed (:func:`make_transform`): the size and normalization the network
expects (``preprocessing``, from the network registry) unless ``image_size`` / ``mean`` /
``std`` override them; with no known preprocessing and no ``mean`` / ``std``, the ImageNet mean
and std (what nearly all pretrained vision models expect). Every transform is a composition of
torchvision ``v2`` transforms and module-level classes, so datasets pickle for DataLoader workers
and joblib.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ArrayTransform", "image_sizes", "make_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's classification presets resize the short side to crop / 0.875 (224 -> 256).
_CROP_FRACTION = 0.875
_ARRAY_AUGMENT_SCALE = (0.5, 1.0)
_KINDS = ("array", "files", "pil", "texts")


def make_transform(
    kind: str,
    *,
    train: bool,
    preprocessing=None,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    augment: bool | str | Callable = "auto",
) -> Callable | None:
    """Build the per-sample transform for one kind of input.

    Parameters
    ----------
    kind : {"array", "files", "pil"}
        The :attr:`Inputs.kind` the transform will receive (an RGB PIL image for files and PIL
        images, a ``(c, h, w)`` float tensor for arrays).
    train : bool
        Whether this is the training transform: augmentation is only ever applied at train time.
    preprocessing : Preprocessing, optional
        The network's preprocessing (``resize_size``, ``crop_size``, ``mean``, ``std``,
        ``interpolation``). Ignored for arrays, which are already preprocessed.
    image_size : int, optional
        Overrides the crop size (images: the short side is resized to ``image_size / 0.875``,
        then center-cropped to ``image_size``). Arrays are resized to ``image_size`` squared.
    mean, std : sequence of float, optional
        Override the normalization; one value per channel.
    augment : "auto", bool or callable, default="auto"
        ``"auto"``: random resized crop and horizontal flip for files and PIL images, nothing for
        arrays. ``True`` / ``False``: force it on / off. A callable replaces the default
        augmentation: it receives the RGB PIL image (or the tensor, for arrays) before the
        deterministic resize, crop and normalization.

    Returns
    -------
    callable or None
        ``None`` for arrays when nothing is asked of them: they pass through bit for bit.

    Examples
    --------
    >>> from PIL import Image
    >>> transform = make_transform("pil", train=False, image_size=32)
    >>> transform(Image.new("RGB", (50, 40))).shape
    torch.Size([3, 32, 32])
    """
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r}: pass one of {_KINDS}.")
    if kind == "texts":
        return None  # texts are tokenized per batch, by the text network's collate_fn
    _check_augment(augment)
    if image_size is not None:
        _check_image_size(image_size)
    mean = _check_stats("mean", mean)
    std = _check_stats("std", std, positive=True)
    if kind == "array":
        return _array_transform(train, image_size, mean, std, augment)
    return _image_transform(train, preprocessing, image_size, mean, std, augment)


def image_sizes(preprocessing=None, image_size=None) -> tuple[int, int, str]:
    """``(crop, resize, interpolation)`` for images: ``image_size`` wins over the weights' own."""
    if image_size is not None:
        crop, resize = image_size, round(image_size / _CROP_FRACTION)
    elif preprocessing is not None:
        crop, resize = int(preprocessing.crop_size), int(preprocessing.resize_size)
    else:
        raise ValueError("pass image_size=... (and mean=, std=) for your own module: its "
                         "expected input size is unknown (torchvision and timm names know theirs).")
    return crop, resize, preprocessing.interpolation if preprocessing else "bilinear"


def _image_transform(train, preprocessing, image_size, mean, std, augment) -> v2.Compose:
    crop, resize, interpolation = image_sizes(preprocessing, image_size)
    interpolation = _interpolation(interpolation)
    mean = mean or (tuple(preprocessing.mean) if preprocessing else IMAGENET_MEAN)
    std = std or (tuple(preprocessing.std) if preprocessing else IMAGENET_STD)
    for name, stats in (("mean", mean), ("std", std)):
        if len(stats) != 3:
            raise ValueError(f"{name}={stats!r} has {len(stats)} value(s): images are decoded as "
                             "RGB, so pass 3 (one per channel).")
    deterministic = [v2.Resize(resize, interpolation=interpolation, antialias=True),
                     v2.CenterCrop(crop)]
    if train and callable(augment):
        steps = [augment, *deterministic]
    elif train and augment in ("auto", True):
        steps = [v2.RandomResizedCrop(crop, interpolation=interpolation, antialias=True),
                 v2.RandomHorizontalFlip()]
    else:
        steps = deterministic
    return v2.Compose([*steps, v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(mean), list(std)), v2.ToPureTensor()])


def _array_transform(train, image_size, mean, std, augment) -> ArrayTransform | None:
    augmenting = train and (augment is True or callable(augment))
    if image_size is None and mean is None and std is None and not augmenting:
        return None  # "auto" and eval: arrays are already preprocessed
    steps: list[Callable] = []
    if augmenting and callable(augment):
        steps.append(augment)
    elif augmenting:
        steps += [_RandomResizedCropTo(image_size, scale=_ARRAY_AUGMENT_SCALE),
                  v2.RandomHorizontalFlip()]
    if image_size is not None and not (augmenting and augment is True):
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    if mean is not None or std is not None:
        steps.append(_Normalize(mean, std))
    requested = [name for name, value in
                 (("image_size", image_size), ("mean", mean), ("std", std)) if value is not None]
    if augmenting:
        requested.append(f"augment={augment!r}")
    return ArrayTransform(v2.Compose(steps), requested=requested, channels=_n_channels(mean, std))


class ArrayTransform:
    """The transform of ``(c, h, w)`` image arrays, which checks the arrays can take it.

    ``make_transform`` cannot see the data, so :class:`InputDataset` calls
    :meth:`check_inputs` when it is built: a wrong number of ``mean`` values or an image transform
    asked of tabular rows fails at once with a clear message, not inside a DataLoader worker.
    """

    def __init__(self, transform: Callable, requested: list[str], channels: int | None):
        self.transform = transform
        self.requested = requested
        self.channels = channels

    def check_inputs(self, items: np.ndarray) -> None:
        if items.ndim != 4:
            raise ValueError(
                f"{', '.join(self.requested)} apply to (n, channels, height, width) images, but X "
                f"holds tabular rows of shape {items.shape}: leave them unset for tabular X."
            )
        if self.channels is not None and self.channels != items.shape[1]:
            raise ValueError(f"mean/std have {self.channels} value(s) but the images in X have "
                             f"{items.shape[1]} channel(s): pass one value per channel.")

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.transform(tensor)

    def __repr__(self) -> str:
        return f"ArrayTransform({self.transform!r})"


class _RandomResizedCropTo(torch.nn.Module):
    """Random resized crop back to ``size``, or to the input's own size when ``size`` is None."""

    def __init__(self, size: int | None, scale: tuple[float, float]):
        super().__init__()
        self.size = size
        self.scale = scale
        self.ratio = (3 / 4, 4 / 3)

    def extra_repr(self) -> str:
        return f"size={self.size or 'input size'}, scale={self.scale}"

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        height, width = tensor.shape[-2:]
        size = [self.size, self.size] if self.size is not None else [height, width]
        crop = v2.RandomResizedCrop(size, scale=self.scale, ratio=self.ratio, antialias=True)
        return crop(tensor)


class _Normalize(torch.nn.Module):
    """``Normalize`` where a missing mean is 0 and a missing std is 1, sized to the input."""

    def __init__(self, mean: tuple | None, std: tuple | None):
        super().__init__()
        self.mean = mean
        self.std = std

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        channels = tensor.shape[0]
        mean = list(self.mean) if self.mean is not None else [0.0] * channels
        std = list(self.std) if self.std is not None else [1.0] * channels
        return F.normalize(tensor, mean, std)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


def _n_channels(mean, std) -> int | None:
    if mean is not None and std is not None and len(mean) != len(std):
        raise ValueError(f"mean has {len(mean)} values and std {len(std)}: pass one value per "
                         "channel to both.")
    stats = mean if mean is not None else std
    return None if stats is None else len(stats)


def _check_augment(augment) -> None:
    if augment in ("auto", True, False) or (callable(augment) and not isinstance(augment, str)):
        return
    raise ValueError(f"augment={augment!r}: pass 'auto', True, False, or a callable transform.")


def _check_image_size(image_size) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) \
            or image_size < 1:
        raise ValueError(f"image_size={image_size!r}: pass a positive int (the side in pixels).")


def _check_stats(name: str, values, positive: bool = False) -> tuple[float, ...] | None:
    if values is None:
        return None
    try:
        stats = tuple(float(value) for value in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={values!r}: pass a sequence of numbers, one per channel, "
                         "e.g. (0.485, 0.456, 0.406).") from None
    if not stats or not all(np.isfinite(stats)) or (positive and min(stats) <= 0):
        need = "positive numbers" if positive else "finite numbers"
        raise ValueError(f"{name}={values!r}: pass {need}, one per channel.")
    return stats


def _interpolation(value) -> InterpolationMode:
    if isinstance(value, InterpolationMode):
        return value
    try:
        return InterpolationMode(str(value).lower())
    except ValueError:
        modes = [mode.value for mode in InterpolationMode]
        raise ValueError(f"interpolation={value!r}: pass one of {modes}.") from None
