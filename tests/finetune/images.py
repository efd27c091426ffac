"""Small image files in every mode the decoder handles, and unreadable ones, for the input tests.

The test modules take the fixtures as ``image_files = images.image_files``.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def gradient(width=40, height=30) -> np.ndarray:
    """An RGB image with structure, so crops and flips change it."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    return np.concatenate(
        [np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
         np.full((height, width, 1), 100.0)], axis=2,
    ).astype(np.uint8)


@pytest.fixture
def image_files(tmp_path) -> dict[str, str]:
    """One small file per mode the decoder must handle."""
    rgb = Image.fromarray(gradient())
    files = {}

    def save(name, image, **kwargs):
        files[name] = str(tmp_path / name)
        image.save(files[name], **kwargs)

    save("rgb.jpg", rgb, quality=95)
    save("gray.png", rgb.convert("L"))
    save("palette.gif", rgb.convert("P"))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.new("L", rgb.size, 0))  # fully transparent: should come out white
    save("transparent.png", rgba)
    save("cmyk.jpg", rgb.convert("CMYK"))
    wide = (np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)  # max 59950 of 65535
    save("gray16.png", Image.fromarray(wide))
    return files


@pytest.fixture
def bad_files(tmp_path, image_files) -> dict[str, str]:
    data = Path(image_files["rgb.jpg"]).read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    return {"truncated.jpg": str(truncated), "notes.jpg": str(text)}


def colour_folder(folder: Path, per_class: int, size: int, rng: np.random.Generator,
                  labels=("red", "blue"), suffix: str = "png") -> list[tuple[Path, str]]:
    """An image folder of two classes told apart by colour: ``folder/<label>/<i>.<suffix>``, a
    noisy square with the first label's red channel or the second's blue one raised. Returns
    each file and its label, in the order written."""
    written = []
    for label, channel in zip(labels, (0, 2)):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 100, size=(size, size, 3), dtype=np.uint8)
            pixels[..., channel] += 150
            path = folder / label / f"{i}.{suffix}"
            Image.fromarray(pixels).save(path)
            written.append((path, label))
    return written
