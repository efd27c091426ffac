"""Input adapters, datasets and image transforms for the fine-tuning estimators.

The estimators accept many kinds of ``X``; this module turns each into one of three kinds of
:class:`Inputs`, then into a torch ``Dataset`` that decodes and transforms one sample at a time.

Product decisions
-----------------
What ``X`` may be (:func:`adapt_inputs`):

- numpy arrays / torch tensors of numbers -> kind ``"array"``: float32 numpy ``(n, c, h, w)`` images
  or ``(n, d)`` tabular rows. They are taken as already preprocessed: no scaling to ``[0, 1]``, no
  normalization, no resizing, unless ``image_size`` / ``mean`` / ``std`` / ``augment`` ask for it.
  A float32 array is used as is (no copy); other numeric dtypes are cast to float32.
- a list / tuple / numpy array / pandas Series of ``str`` or ``pathlib.Path`` -> kind ``"files"``.
  Every path must exist when ``X`` is adapted (a cheap ``os.path.isfile`` per path): decoding is
  lazy, and a typo should fail before the first epoch, not in the middle of it.
- a pandas DataFrame: ``path_column`` names a column of paths; without it an all-numeric frame is an
  ``"array"`` of rows and a frame with one column of strings is ``"files"``. ``path_column`` only
  applies to DataFrames; other kinds of ``X`` are recognized by their type.
- a list of PIL images -> kind ``"pil"``.
- texts -> kind ``"texts"``, only through :func:`adapt_texts`, which the estimators call when the
  model is a text model: a path and a sentence are both strings, so the model decides, not ``X``.

How images are decoded (:func:`load_rgb`): any mode becomes RGB. Transparent images (RGBA, LA, and
palette or grayscale images with a transparency key) are composited on white, as a browser shows
them: ``convert("RGB")`` would keep whatever colour hides under transparent pixels, often black.
16-bit and 32-bit grayscale images are scaled to 8 bits (Pillow's ``convert`` clips them to 255,
which turns most 16-bit images white). The EXIF orientation tag is applied, so a phone photo is
upright, as it shows in a viewer. A file that cannot be decoded raises a ``ValueError`` naming it:
never a silent blank image.

How images are transformed (:func:`make_transform`): the size and normalization the network
expects (``preprocessing``, from the network registry) unless ``image_size`` / ``mean`` /
``std`` override them; with no known preprocessing and no ``mean`` / ``std``, the ImageNet mean
and std (what nearly all pretrained vision models expect). Every transform is a composition of
torchvision ``v2`` transforms and module-level classes, so datasets pickle for DataLoader workers
and joblib.
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import PIL.Image
import torch
from PIL import ImageOps
from scipy import sparse
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

__all__ = [
    "ArrayTransform",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InputDataset",
    "Inputs",
    "adapt_inputs",
    "adapt_texts",
    "find_unreadable",
    "load_rgb",
    "make_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's classification presets resize the short side to crop / 0.875 (224 -> 256).
_CROP_FRACTION = 0.875
_ARRAY_AUGMENT_SCALE = (0.5, 1.0)
_N_SHOWN = 5  # how many offending items an error message lists
_PATH_TYPES = (str, os.PathLike)
_KINDS = ("array", "files", "pil", "texts")


@dataclass
class Inputs:
    """``X`` in one of four kinds the fine-tuning datasets know how to read.

    Parameters
    ----------
    kind : {"array", "files", "pil", "texts"}
        ``"array"``: float32 numpy ``(n, c, h, w)`` images or ``(n, d)`` rows, used as they are;
        ``"files"``: image paths, decoded lazily; ``"pil"``: PIL images in memory; ``"texts"``:
        strings, tokenized per batch by the text network's ``collate_fn``.
    items : ndarray, list of str or list of PIL.Image.Image
        The samples.

    Examples
    --------
    >>> import numpy as np
    >>> inputs = adapt_inputs(np.zeros((4, 3, 8, 8)))
    >>> inputs.kind, len(inputs), inputs.items.dtype
    ('array', 4, dtype('float32'))
    """

    kind: Literal["array", "files", "pil", "texts"]
    items: np.ndarray | list[str] | list[PIL.Image.Image]

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices) -> Inputs:
        """The samples at ``indices``, of the same kind."""
        if isinstance(self.items, np.ndarray):
            return Inputs(kind=self.kind, items=self.items[indices])
        return Inputs(kind=self.kind, items=[self.items[i] for i in indices])


# --------------------------------------------------------------------------- adapting X
def adapt_inputs(X, *, path_column: str | None = None) -> Inputs:
    """Recognize what ``X`` is and return it as :class:`Inputs`.

    Parameters
    ----------
    X : array-like, tensor, list of paths or PIL images, pandas Series or DataFrame
        See the module docstring for what each becomes.
    path_column : str, optional
        For a DataFrame ``X``: the column holding image paths.

    Returns
    -------
    Inputs

    Raises
    ------
    TypeError, ValueError
        For an ``X`` of no known kind, empty, with missing values or non-finite numbers.
    FileNotFoundError
        When some paths do not exist (the first few are named).

    Examples
    --------
    >>> import pandas as pd
    >>> adapt_inputs(pd.DataFrame({"a": [1, 2], "b": [3.0, 4.0]})).items.shape
    (2, 2)
    """
    if isinstance(X, Inputs):
        return X
    if isinstance(X, pd.DataFrame):
        return _adapt_frame(X, path_column)
    if isinstance(X, pd.Series):
        what = "X" if X.name is None else f"X (Series {X.name!r})"
        return _adapt_sequence(X.tolist(), what=what)
    if isinstance(X, torch.Tensor):
        return _adapt_numeric(X.detach().cpu().numpy())
    if isinstance(X, (str, os.PathLike, PIL.Image.Image)):
        raise TypeError(f"X is a single {type(X).__name__}: pass a list of them, one per sample.")
    if sparse.issparse(X):
        raise TypeError("X is a sparse matrix, and sparse input is not supported: pass a dense "
                        "array (X.toarray()).")
    if isinstance(X, np.ndarray):
        if X.dtype.kind == "c":
            raise ValueError("Complex data not supported: X has complex numbers; pass real ones.")
        if X.dtype.kind in "biuf":
            return _adapt_numeric(X)
        if X.ndim == 1 and X.dtype.kind in "OUS":
            return _adapt_sequence(list(X), what="X")
        if X.dtype.kind == "O":
            return _adapt_numeric(_object_to_float(X))
        raise TypeError(f"X has dtype {X.dtype}: pass real numbers (int, float or bool), or a "
                        "1-D array / list of image paths.")
    if isinstance(X, (list, tuple)):
        return _adapt_sequence(list(X), what="X")
    if hasattr(X, "__array__"):
        return adapt_inputs(np.asarray(X), path_column=path_column)
    raise TypeError(
        f"X of type {type(X).__name__} is not supported: pass a numeric array or tensor, a list of "
        "image paths or PIL images, a pandas Series of paths, or a DataFrame."
    )


def _object_to_float(X: np.ndarray) -> np.ndarray:
    try:
        return X.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"X is a {X.ndim}-D array of dtype {X.dtype} holding non-numbers ({error}): "
                        "pass a numeric array, or a 1-D array / list of image paths.") from None


def _adapt_frame(X: pd.DataFrame, path_column: str | None) -> Inputs:
    columns = list(X.columns)
    if path_column is not None:
        if path_column not in X.columns:
            raise ValueError(f"path_column={path_column!r} is not a column of X; its columns are "
                             f"{columns}.")
        return _adapt_paths(X[path_column].to_numpy(dtype=object), what=f"column {path_column!r}")
    if X.shape[1] == 0:
        raise ValueError("X is a DataFrame with no columns.")
    if all(pd.api.types.is_numeric_dtype(dtype) for dtype in X.dtypes):
        rows = X.to_numpy(dtype=np.float32, na_value=np.nan)
        _check_finite(rows, where=lambda bad: f"columns {[columns[j] for j in _bad_columns(bad)]}")
        return _adapt_numeric(rows)
    if X.shape[1] == 1 and _all_paths(X.iloc[:, 0].dropna()):
        return _adapt_paths(X.iloc[:, 0].to_numpy(dtype=object), what=f"column {columns[0]!r}")
    raise ValueError(
        f"X is a DataFrame with columns {columns}: it is neither all numeric nor one column of "
        "image paths. Pass path_column='<name>' to read images from one of its columns, or select "
        "the numeric columns."
    )


def _adapt_sequence(items: list, what: str) -> Inputs:
    if not items:
        raise ValueError(f"{what} is empty: pass at least one sample.")
    if _all_paths(items):
        return _adapt_paths(items, what=what)
    if all(isinstance(item, PIL.Image.Image) for item in items):
        return Inputs(kind="pil", items=list(items))
    if any(_is_missing(item) for item in items) and _all_paths(
        [item for item in items if not _is_missing(item)]
    ):
        return _adapt_paths(items, what=what)  # paths with holes: let it name the missing ones
    if all(_is_number_like(item) for item in items):
        arrays = [item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else item
                  for item in items]
        try:
            stacked = np.stack([np.asarray(a) for a in arrays])
        except ValueError as error:
            raise ValueError(f"the samples in {what} cannot be stacked into one array ({error}): "
                             "pass samples of one shape.") from None
        return _adapt_numeric(stacked)
    kinds = sorted({type(item).__name__ for item in items})
    raise TypeError(
        f"{what} mixes or holds unsupported types {kinds}: pass only image paths (str or "
        "pathlib.Path), only PIL images, or a numeric array."
    )


def _adapt_paths(values: Sequence, what: str) -> Inputs:
    if len(values) == 0:
        raise ValueError(f"{what} is empty: pass at least one image path.")
    missing = [i for i, value in enumerate(values) if _is_missing(value)]
    if missing:
        raise ValueError(f"{what} has {len(missing)} missing path(s) (None or NaN) at positions "
                         f"{_shown(missing)}: drop those samples first.")
    not_paths = [i for i, value in enumerate(values) if not isinstance(value, _PATH_TYPES)]
    if not_paths:
        kinds = sorted({type(values[i]).__name__ for i in not_paths})
        raise TypeError(f"{what} should hold image paths (str or pathlib.Path) but holds {kinds} "
                        f"at positions {_shown(not_paths)}.")
    paths = [os.fspath(value) for value in values]
    absent = [path for path in paths if not os.path.isfile(path)]
    if absent:
        raise FileNotFoundError(
            f"{len(absent)} of {len(paths)} image path(s) in {what} do not exist or are not files: "
            f"{_shown([repr(p) for p in absent])}. Check the paths (relative ones are resolved "
            f"from the working directory {os.getcwd()!r})."
        )
    return Inputs(kind="files", items=paths)


def _adapt_numeric(X: np.ndarray) -> Inputs:
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X has dtype {X.dtype}: pass real numbers (int, float or bool).")
    if X.shape[0:1] == (0,):
        raise ValueError(f"X of shape {X.shape} is empty: pass at least one sample.")
    if X.size == 0:  # wording shared with sklearn's check_array
        raise ValueError(f"X has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if X.ndim == 1:
        raise ValueError("X has 1 dimension. Reshape your data to (n_samples, 1) for one feature, or pass "
                         "(n_samples, n_features) rows or (n_samples, channels, height, width) "
                         "images.")
    if X.ndim == 3:
        raise ValueError(f"X has 3 dimensions {X.shape}; pass (n_samples, channels, height, width) "
                         "images, e.g. X[:, None] for single-channel images.")
    if X.ndim > 4:
        raise ValueError(f"X has {X.ndim} dimensions {X.shape}; pass (n_samples, n_features) rows "
                         "or (n_samples, channels, height, width) images.")
    with np.errstate(over="ignore"):  # values too large for float32 become inf, reported below
        items = np.asarray(X, dtype=np.float32)  # no copy when already float32
    _check_finite(items, where=_bad_samples)
    return Inputs(kind="array", items=items)


def _check_finite(items: np.ndarray, where: Callable[[np.ndarray], str]) -> None:
    bad = ~np.isfinite(items)
    if bad.any():
        raise ValueError(
            f"X has {int(bad.sum())} NaN or infinite value(s) (or values too large for float32) "
            f"in {where(bad)}: impute or drop them first."
        )


def _bad_columns(bad: np.ndarray) -> list[int]:
    return np.flatnonzero(bad.any(axis=0)).tolist()


def _bad_samples(bad: np.ndarray) -> str:
    return f"samples {_shown(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1)).tolist())}"


def _all_paths(values) -> bool:
    values = list(values)
    return bool(values) and all(isinstance(value, _PATH_TYPES) for value in values)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _is_number_like(value) -> bool:
    if isinstance(value, (bool, numbers.Real)):
        return True
    if isinstance(value, torch.Tensor):
        return not value.is_complex()
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if isinstance(value, (list, tuple)):
        return np.asarray(value).dtype.kind in "biuf"
    return False


def _shown(values: Sequence) -> str:
    shown = ", ".join(str(value) for value in values[:_N_SHOWN])
    return shown + (f", ... ({len(values) - _N_SHOWN} more)" if len(values) > _N_SHOWN else "")


def adapt_texts(X, *, empty_text: str = "raise") -> Inputs:
    """Check that ``X`` holds one text per sample and return it as :class:`Inputs` of kind "texts".

    Parameters
    ----------
    X : list, tuple, 1-D numpy array, pandas Series or one-column DataFrame of str
    empty_text : {"raise", "allow"}, default="raise"
        Missing (``None``, NaN) and empty or blank texts raise a ``ValueError`` naming their
        positions, or, with ``"allow"``, become empty strings (the model then sees only its
        special tokens).

    Returns
    -------
    Inputs

    Examples
    --------
    >>> adapt_texts(["great phone", "battery died"]).kind
    'texts'
    >>> adapt_texts(["fine", None], empty_text="allow").items
    ['fine', '']
    """
    values = _text_values(X)
    if not values:
        raise ValueError("X is empty: pass at least one text.")
    missing = [i for i, value in enumerate(values) if _is_missing(value)]
    not_text = [i for i, value in enumerate(values)
                if not (isinstance(value, str) or _is_missing(value))]
    if not_text:
        kinds = sorted({type(values[i]).__name__ for i in not_text})
        raise TypeError(f"X should hold texts (str) but holds {kinds} at positions "
                        f"{_shown(not_text)}: convert them to str first.")
    empty = [i for i, value in enumerate(values) if isinstance(value, str) and not value.strip()]
    if empty_text == "raise" and (missing or empty):
        found = [f"{what} texts at positions {_shown(ids)}"
                 for what, ids in (("missing (None/NaN)", missing), ("empty", empty)) if ids]
        raise ValueError(f"X has {' and '.join(found)}: drop those samples, or pass "
                         "empty_text='allow' to treat them as empty texts.")
    return Inputs(kind="texts", items=["" if _is_missing(v) else str(v) for v in values])


def _text_values(X) -> list:
    if isinstance(X, Inputs):
        if X.kind != "texts":
            raise TypeError(f"X holds {X.kind!r} inputs, but the model is a text model: pass "
                            "texts.")
        return list(X.items)
    if isinstance(X, str):
        raise TypeError("X is a single str: pass a list of texts, one per sample.")
    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise ValueError(f"X is a DataFrame with columns {list(X.columns)}: a text model takes "
                             "one column of texts; select it, e.g. X['<name>'].")
        return X.iloc[:, 0].tolist()
    if isinstance(X, pd.Series):
        return X.tolist()
    if isinstance(X, np.ndarray):
        if X.ndim != 1:
            raise ValueError(f"X has shape {X.shape}: a text model takes a 1-D sequence of texts, "
                             "one per sample.")
        return X.tolist()
    if isinstance(X, (list, tuple)):
        return list(X)
    raise TypeError(f"X of type {type(X).__name__} is not supported by a text model: pass a list, "
                    "1-D numpy array or pandas Series of str.")


# --------------------------------------------------------------------------- decoding
def load_rgb(path: str) -> PIL.Image.Image:
    """Decode an image file of any mode into an RGB PIL image.

    Transparency is composited on white, 16/32-bit grayscale is scaled to 8 bits and the EXIF
    orientation is applied (see the module docstring for why).

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    PIL.Image.Image
        In mode ``"RGB"``.

    Raises
    ------
    ValueError
        When the file cannot be decoded (truncated, corrupted, not an image), naming the file.

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "gray.png")
    >>> Image.new("L", (4, 3)).save(path)
    >>> load_rgb(path).mode, load_rgb(path).size
    ('RGB', (4, 3))
    """
    try:
        with PIL.Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except Exception as error:  # Pillow's decoders raise many types; all mean "unreadable"
        raise ValueError(
            f"could not read image {os.fspath(path)!r}: {_reason(error)}. Remove it, or pass "
            "on_bad_image='skip' to leave unreadable images out of fit."
        ) from error


def _to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_8bit(image: PIL.Image.Image) -> PIL.Image.Image:
    """Scale a high-bit-depth grayscale image to 8 bits instead of clipping it at 255."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        # float images: [0, 1] is the usual convention; anything larger is taken as 0-255
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
    elif image.mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    else:  # mode "I": 16-bit PNGs open in this mode too; values above 255 mean 16 bits
        scale = 255.0 / 65535.0 if values.size and values.max() > 255 else 1.0
    scaled = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
    return PIL.Image.fromarray(scaled, mode="L")


def _reason(error: Exception) -> str:
    text = str(error).strip() or "no detail"
    return f"{type(error).__name__}: {text}"


def find_unreadable(inputs: Inputs) -> list[tuple[int, str]]:
    """Decode every file of ``inputs`` and list those that fail, with the reason.

    JPEGs are decoded at reduced scale (which still reads every byte, so truncation is caught) and
    files are decoded on a few threads (Pillow releases the GIL while decoding).

    Parameters
    ----------
    inputs : Inputs
        Only kind ``"files"`` can hold unreadable images; other kinds give ``[]``.

    Returns
    -------
    list of (int, str)
        ``(index, reason)`` of each unreadable file, in index order.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "not_an_image.jpg")
    >>> _ = open(path, "w").write("hello")
    >>> find_unreadable(Inputs(kind="files", items=[path]))[0][0]
    0
    """
    if inputs.kind != "files":
        return []
    n_threads = min(8, os.cpu_count() or 1, len(inputs.items)) or 1
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        reasons = list(pool.map(_decode_error, inputs.items))
    return [(i, reason) for i, reason in enumerate(reasons) if reason is not None]


def _decode_error(path: str) -> str | None:
    try:
        with PIL.Image.open(path) as image:
            image.draft("RGB", (64, 64))  # JPEG only: DCT-scaled decoding, several times faster
            image.load()
    except Exception as error:  # Pillow's decoders raise many types; all mean "unreadable"
        return _reason(error)
    return None


# --------------------------------------------------------------------------- transforms
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


# --------------------------------------------------------------------------- dataset
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
        self.y = _as_targets(y, len(inputs))
        # "features": backbone outputs cached by the fine-tuner, used as they are
        self._array = _tensor_view(inputs.items) if inputs.kind in ("array", "features") else None
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
            image = _to_rgb(self.inputs.items[index])
        transform = self.transform if self.transform is not None else _TO_TENSOR
        return transform(image)


def _tensor_view(items: np.ndarray) -> torch.Tensor:
    """One tensor over the whole array, no copy, so that indexing a sample is cheap."""
    with warnings.catch_warnings():
        # read-only arrays (pandas' copy-on-write views) are fine: samples are never written to
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(items)


_TO_TENSOR = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.ToPureTensor()])


def _as_targets(y, n_samples: int) -> torch.Tensor | None:
    if y is None:
        return None
    y = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else np.asarray(y)
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)}: they must match.")
    if y.dtype.kind == "f":
        return torch.from_numpy(y.astype(np.float32))
    if y.dtype.kind in "biu":
        return torch.from_numpy(y.astype(np.int64))
    raise TypeError(f"y has dtype {y.dtype}: encode the targets as numbers first "
                    "(e.g. with sklearn.preprocessing.LabelEncoder).")

