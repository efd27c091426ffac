"""What one sample of ``X`` looks like in a report: a thumbnail for an image, the text for a text.

Images come as arrays (``(N, C, H, W)``, ``(N, H, W, C)`` or ``(N, H, W)``, any scale: each is
stretched to its own min-max range), torch tensors, PIL images, or paths of image files. Other strings
are texts; rows of a table are shown as ``name=value`` pairs. Thumbnails are small PNGs embedded in
the page, so a report stays one offline file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.utils import _safe_indexing

from skadapt.evaluation._html import Raw, png_img

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}
THUMBNAIL = 96  # pixels, the longer side
TEXT_LENGTH = 200  # characters shown of a text


def sample(inputs, position: int):
    """The sample at ``position`` of ``inputs`` (arrays, lists, DataFrames, tensors)."""
    if hasattr(inputs, "detach") and hasattr(inputs, "cpu"):  # a torch tensor
        return inputs[position].detach().cpu().numpy()
    if isinstance(inputs, pd.DataFrame | pd.Series):  # by position, whatever the index
        return inputs.iloc[position]
    return _safe_indexing(inputs, [position])[0]


def as_image(value) -> Image.Image | None:
    """``value`` as an RGB or greyscale PIL image, or None when it is not an image."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, str | Path):
        path = Path(value)
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            return None
        try:
            with Image.open(path) as image:
                image.load()
                return image.convert("RGB") if image.mode not in ("RGB", "L") else image.copy()
        except OSError:
            return None
    array = np.asarray(value) if not isinstance(value, pd.Series) else None
    if array is None or array.dtype.kind not in "biuf" or array.ndim not in (2, 3):
        return None
    if array.ndim == 3:
        if array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)  # channels first
        elif array.shape[-1] not in (1, 3, 4):
            return None
        array = array[..., :3] if array.shape[-1] >= 3 else array[..., 0]
    if min(array.shape[:2]) < 2:
        return None
    array = array.astype(np.float64)
    low, high = np.nanmin(array), np.nanmax(array)
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return Image.fromarray(np.round(np.nan_to_num(scaled) * 255).astype(np.uint8))


def thumbnail(image: Image.Image, size: int = THUMBNAIL) -> Image.Image:
    """At most ``size`` pixels on the longer side; small images are enlarged, pixels kept sharp."""
    scale = size / max(image.size)
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    width, height = (max(1, round(side * scale)) for side in image.size)
    return image.resize((width, height), resample)


def as_text(value, limit: int = TEXT_LENGTH) -> str:
    """A short text for a non-image sample: the text itself, or a table row as name=value."""
    if isinstance(value, pd.Series):
        text = ", ".join(f"{name}={_short(item)}" for name, item in value.items())
    elif isinstance(value, np.ndarray) and value.ndim == 1:
        text = ", ".join(_short(item) for item in value)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float | np.floating) else str(value)


def preview_html(inputs, position: int) -> Raw:
    """The HTML of one sample: an embedded thumbnail, or the (escaped, truncated) text."""
    value = sample(inputs, position)
    image = as_image(value)
    if image is None:
        import html

        return Raw(f"<span class='sample-text'>{html.escape(as_text(value))}</span>")
    buffer = io.BytesIO()
    thumbnail(image).save(buffer, format="PNG")
    return png_img(buffer.getvalue(), alt=f"sample {position}", css="thumb")
