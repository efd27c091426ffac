"""Image decoding: an image file of any mode into an RGB PIL image, and finding unreadable files.

How images are decoded (:func:`load_rgb`): any mode becomes RGB. Transparent images (RGBA, LA, and
palette or grayscale images with a transparency key) are composited on white, as a browser shows
them: ``convert("RGB")`` would keep whatever colour hides under transparent pixels, often black.
16-bit and 32-bit grayscale images are scaled to 8 bits (Pillow's ``convert`` clips them to 255,
which turns most 16-bit images white). The EXIF orientation tag is applied, so a phone photo is
upright, as it shows in a viewer. A file that cannot be decoded raises a ``ValueError`` naming it:
never a silent blank image. :func:`find_unreadable` lists such files before a fit starts.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL.Image
from PIL import ImageOps

from skadapt.finetune._adapters import Inputs

__all__ = ["find_unreadable", "load_rgb", "to_rgb"]


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
            return to_rgb(image)
    except Exception as error:  # Pillow's decoders raise many types; all mean "unreadable"
        raise ValueError(
            f"could not read image {os.fspath(path)!r}: {_reason(error)}. Remove it, or pass "
            "on_bad_image='skip' to leave unreadable images out of fit."
        ) from error


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """An image of any mode as RGB: transparency composited on white, high bit depths scaled."""
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
