"""Tests of skadapt/finetune/_decoding.py: every image mode decodes to RGB, unreadable files are named."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skadapt.finetune._adapters import adapt_inputs
from skadapt.finetune._decoding import find_unreadable, load_rgb
from skadapt.finetune._transforms import make_transform
from tests.finetune import images
from tests.finetune.images import gradient

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
HYMENOPTERA_TRAIN = SHARED / "data" / "hymenoptera_data" / "train"


# fixtures shared by the input tests (assigned, not imported: an imported fixture reads as unused)
image_files = images.image_files
bad_files = images.bad_files


@pytest.mark.parametrize(
    "name", ["rgb.jpg", "gray.png", "palette.gif", "transparent.png", "cmyk.jpg", "gray16.png"]
)
def test_every_mode_becomes_a_three_channel_float_tensor(image_files, name):
    image = load_rgb(image_files[name])
    assert image.mode == "RGB" and image.size == (40, 30)
    x = make_transform("files", train=False, image_size=16)(image)
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16)


def test_transparency_is_white_and_16_bit_is_scaled_not_clipped(image_files):
    assert np.all(np.asarray(load_rgb(image_files["transparent.png"])) == 255)
    pixels = np.asarray(load_rgb(image_files["gray16.png"]))[..., 0]
    assert pixels[0, 0] == 0 and 225 <= pixels.max() <= 235  # 59950 / 65535 * 255 = 233
    assert len(np.unique(pixels)) > 100  # Pillow's own convert would clip nearly all to 255


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(gradient(40, 30)).save(path, exif=exif)
    assert load_rgb(str(path)).size == (30, 40)


def test_unreadable_files_raise_naming_the_file(bad_files):
    for path in bad_files.values():
        expected = rf"could not read image '{path}'.*on_bad_image='skip'"
        with pytest.raises(ValueError, match=expected):
            load_rgb(path)


def test_find_unreadable_finds_exactly_the_bad_files(image_files, bad_files):
    paths = [*image_files.values()]
    paths.insert(2, bad_files["truncated.jpg"])
    paths.append(bad_files["notes.jpg"])
    bad = find_unreadable(adapt_inputs(paths))
    assert [i for i, _ in bad] == [2, len(paths) - 1]
    assert "truncated" in bad[0][1].lower()
    assert "cannot identify" in bad[1][1]
    assert find_unreadable(adapt_inputs(np.zeros((2, 3)))) == []


@pytest.mark.slow
def test_every_hymenoptera_training_image_decodes_to_96_pixels():
    if not HYMENOPTERA_TRAIN.is_dir():
        pytest.skip(f"real data absent: {HYMENOPTERA_TRAIN} (../shared beside the repository)")
    paths = sorted(str(p) for p in HYMENOPTERA_TRAIN.glob("*/*") if p.is_file())
    assert any(p.endswith("imageNotFound.gif") for p in paths)
    inputs = adapt_inputs(paths)
    assert inputs.kind == "files" and len(inputs) == 245
    assert find_unreadable(inputs) == []
    transform = make_transform("files", train=False, image_size=96)
    for path in inputs.items:
        x = transform(load_rgb(path))
        assert x.shape == (3, 96, 96) and x.dtype == torch.float32, path
        assert torch.isfinite(x).all(), path
