"""What ``X`` is: the input adapters that turn each kind of ``X`` into :class:`Inputs`.

The estimators accept many kinds of ``X``; :func:`adapt_inputs` (and, for text models,
:func:`adapt_texts`) turns each into one of four kinds of :class:`Inputs`, which the datasets of
``_datasets.py`` then decode (``_decoding.py``) and transform (``_transforms.py``) one sample at a
time.

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
- texts -> kind ``"texts"``, only through :func:`adapt_texts`, when the model is a text model: a
  path and a sentence are both strings, so the model decides, not ``X`` (:func:`adapt_for`, the one
  place that decides it for every estimator and function).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import PIL.Image
import torch
from scipy import sparse

from skadapt.networks import ResolvedNetwork, sources, takes_texts

__all__ = ["Inputs", "adapt_for", "adapt_inputs", "adapt_texts"]

_N_SHOWN = 5  # how many offending items an error message lists
_PATH_TYPES = (str, os.PathLike)


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
def adapt_for(model, X, *, network: ResolvedNetwork | None = None, path_column: str | None = None,
              empty_text: str = "raise") -> Inputs:
    """``X`` as the input of ``model``: texts for a text model, else arrays or images.

    The model decides, never ``X``: an image path and a sentence are both strings. Once fitted,
    the resolved ``network`` decides (a loaded model's ``model`` may name a Hugging Face folder
    that is not on this machine).

    Examples
    --------
    >>> adapt_for("resnet18", np.zeros((2, 3, 8, 8))).kind
    'array'
    >>> adapt_for("sentence-transformers/all-MiniLM-L6-v2", ["a fine phone", "broken"]).kind
    'texts'
    """
    texts = (takes_texts(model) if network is None else
             any(source.takes_texts for source in sources() if source.name == network.source))
    if texts:
        return adapt_texts(X, empty_text=empty_text)
    return adapt_inputs(X, path_column=path_column)


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
