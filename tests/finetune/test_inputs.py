"""Tests of skadapt/finetune/_inputs.py: input adapters, image decoding, transforms, dataset."""

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from skadapt.finetune._inputs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputDataset,
    Inputs,
    adapt_inputs,
    find_unreadable,
    load_rgb,
    make_transform,
)
from skadapt.networks import Preprocessing

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
HYMENOPTERA_TRAIN = SHARED / "data" / "hymenoptera_data" / "train"


def _gradient(width=40, height=30) -> np.ndarray:
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
    rgb = Image.fromarray(_gradient())
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


# --------------------------------------------------------------------------- adapt_inputs
def test_float32_array_is_used_as_is_without_copy():
    X = np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32)
    inputs = adapt_inputs(X)
    assert inputs.kind == "array" and len(inputs) == 4
    assert np.shares_memory(inputs.items, X)


def test_list_of_image_arrays_is_stacked():
    inputs = adapt_inputs([np.zeros((3, 4, 4)), torch.ones(3, 4, 4)])
    assert inputs.kind == "array" and inputs.items.shape == (2, 3, 4, 4)
    assert inputs.items[1].min() == 1


def test_tensor_and_int_arrays_become_float32():
    inputs = adapt_inputs(torch.arange(12).reshape(6, 2))
    assert inputs.kind == "array" and inputs.items.dtype == np.float32
    np.testing.assert_array_equal(inputs.items, np.arange(12).reshape(6, 2))


def test_paths_in_every_container_become_files(image_files):
    paths = [image_files["rgb.jpg"], image_files["gray.png"]]
    for X in (paths, tuple(paths), np.array(paths), pd.Series(paths),
              [Path(p) for p in paths], pd.DataFrame({"image": paths})):
        inputs = adapt_inputs(X)
        assert inputs.kind == "files"
        assert inputs.items == paths


def test_dataframe_with_path_column(image_files):
    frame = pd.DataFrame({"id": [1, 2], "image": [image_files["rgb.jpg"], image_files["cmyk.jpg"]],
                          "note": ["a", "b"]})
    inputs = adapt_inputs(frame, path_column="image")
    assert inputs.kind == "files" and inputs.items == list(frame["image"])
    with pytest.raises(ValueError, match=r"columns \['id', 'image', 'note'\].*path_column="):
        adapt_inputs(frame)
    with pytest.raises(ValueError, match="'img' is not a column.*'image'"):
        adapt_inputs(frame, path_column="img")


def test_read_only_float32_frame_is_viewed_without_warning(recwarn):
    frame = pd.DataFrame({"a": np.ones(3, dtype=np.float32), "b": np.zeros(3, dtype=np.float32)})
    x, _ = InputDataset(adapt_inputs(frame))[2]
    assert x.tolist() == [1.0, 0.0]
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_numeric_dataframe_becomes_rows_and_nan_names_the_column():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5], "flag": [True, False, True]})
    inputs = adapt_inputs(frame)
    assert inputs.kind == "array" and inputs.items.shape == (3, 3)
    frame.loc[1, "b"] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*\['b'\]"):
        adapt_inputs(frame)


def test_pil_images(image_files):
    images = [Image.open(image_files["gray.png"]), Image.new("RGB", (5, 5))]
    inputs = adapt_inputs(images)
    assert inputs.kind == "pil" and inputs.items == images


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        ([], ValueError, "empty"),
        (np.zeros((0, 3, 4, 4)), ValueError, "empty"),
        (np.zeros(5), ValueError, r"1 dimension. Reshape your data to \(n_samples, 1\)"),
        (np.zeros((5, 4, 4)), ValueError, r"3 dimensions.*X\[:, None\]"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), ValueError, "NaN or infinite.*samples 0"),
        (np.array([1e39, 0.0]).reshape(2, 1), ValueError, "too large for float32"),
        (np.array([{"a": 1}, {"b": 2}], dtype=object), TypeError, r"\['dict'\]"),
        (["a.jpg", Image.new("RGB", (2, 2))], TypeError, r"mixes.*\['Image', 'str'\]"),
        ([np.zeros((3, 4, 4)), np.zeros((3, 5, 5))], ValueError, "pass samples of one shape"),
        (pd.Series([0.5, 1.5]), ValueError, "1 dimension"),
        ("photo.jpg", TypeError, "single str: pass a list"),
        ({"a": 1}, TypeError, "dict is not supported"),
        (np.zeros((2, 2), dtype=complex), ValueError, "Complex data not supported"),
        (np.array([["a", 1], ["b", 2]], dtype=object), TypeError, "2-D.*holding non-numbers"),
    ],
)
def test_unusable_X_raises_a_clear_error(X, error, message):
    with pytest.raises(error, match=message):
        adapt_inputs(X)


def test_missing_paths_are_named(image_files, tmp_path):
    with pytest.raises(ValueError, match=r"2 missing path\(s\).*positions 1, 2"):
        adapt_inputs(pd.Series([image_files["rgb.jpg"], None, np.nan]))
    absent = [str(tmp_path / f"absent{i}.jpg") for i in range(7)]
    with pytest.raises(FileNotFoundError, match=r"7 of 8 .*absent0\.jpg.*\(2 more\)"):
        adapt_inputs([image_files["rgb.jpg"], *absent])
    with pytest.raises(FileNotFoundError, match="not files"):
        adapt_inputs([str(tmp_path)])  # a directory is no image


# --------------------------------------------------------------------------- decoding
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
    Image.fromarray(_gradient(40, 30)).save(path, exif=exif)
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


# --------------------------------------------------------------------------- transforms
def test_eval_is_deterministic_and_train_augmentation_is_random():
    image = Image.fromarray(_gradient(64, 48))
    evaluate = make_transform("pil", train=False, image_size=32)
    assert torch.equal(evaluate(image), evaluate(image))
    train = make_transform("pil", train=True, image_size=32)
    torch.manual_seed(0)
    outputs = [train(image) for _ in range(5)]
    assert all(x.shape == (3, 32, 32) for x in outputs)
    assert not all(torch.equal(outputs[0], x) for x in outputs[1:])
    no_augment = make_transform("pil", train=True, image_size=32, augment=False)
    assert torch.equal(no_augment(image), evaluate(image))


def test_normalization_applies_mean_and_std():
    image = Image.new("RGB", (8, 8), (255, 0, 51))  # 1.0, 0.0, 0.2 once scaled
    x = make_transform("pil", train=False, image_size=8)(image)
    expected = (torch.tensor([1.0, 0.0, 0.2]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(
        IMAGENET_STD)
    torch.testing.assert_close(x[:, 4, 4], expected, atol=1e-5, rtol=0)
    x = make_transform("pil", train=False, image_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 1, 2))(
        image)
    torch.testing.assert_close(x[:, 4, 4], torch.tensor([1.0, -0.5, -0.15]), atol=1e-5, rtol=0)


def test_weights_preprocessing_sets_sizes_and_is_overridden_by_explicit_values():
    weights = Preprocessing(resize_size=20, crop_size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                            interpolation="bicubic")
    image = Image.new("RGB", (50, 40), (255, 255, 255))
    x = make_transform("files", train=False, preprocessing=weights)(image)
    assert x.shape == (3, 16, 16) and torch.allclose(x, torch.ones_like(x))
    transform = make_transform("files", train=False, preprocessing=weights, image_size=8,
                               std=(0.5, 0.5, 0.5))
    x = transform(image)
    assert x.shape == (3, 8, 8) and torch.allclose(x, torch.full_like(x, 2.0))
    resize = next(t for t in transform.transforms if isinstance(t, v2.Resize))
    assert resize.size == [9] and resize.interpolation == v2.InterpolationMode.BICUBIC  # 8 / .875


def test_images_need_a_size():
    with pytest.raises(ValueError, match=r"pass image_size=\.\.\. \(and mean=, std=\)"):
        make_transform("files", train=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 0}, "image_size=0: pass a positive int"),
        ({"image_size": 32, "mean": (0.5, 0.5)}, "2 value.*pass 3"),
        ({"image_size": 32, "std": (1, 0, 1)}, "positive"),
        ({"image_size": 32, "augment": "yes"}, "augment='yes'"),
    ],
)
def test_bad_transform_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_transform("files", train=True, **kwargs)


def test_user_augmentation_replaces_the_default_and_only_at_train_time():
    image = Image.fromarray(_gradient(64, 64))  # resized to 32, then a symmetric crop to 28
    flip = v2.RandomHorizontalFlip(p=1.0)
    train = make_transform("pil", train=True, image_size=28, augment=flip)
    evaluate = make_transform("pil", train=False, image_size=28, augment=flip)
    assert torch.equal(train(image), evaluate(image).flip(-1))
    assert torch.equal(train(image), train(image))  # no default random crop on top


def test_arrays_untouched_unless_asked():
    X = np.random.default_rng(0).normal(size=(3, 2, 8, 8)).astype(np.float32)
    for train in (True, False):
        assert make_transform("array", train=train) is None
        assert make_transform("array", train=train, preprocessing=object()) is None
    dataset = InputDataset(adapt_inputs(X), transform=None)
    assert np.array_equal(dataset[1][0].numpy(), X[1])  # bit for bit


def test_array_resize_normalize_and_augment():
    X = np.ones((2, 2, 8, 8), dtype=np.float32)
    transform = make_transform("array", train=False, image_size=4, mean=(1.0, 0.0), std=(1, 0.5))
    x = InputDataset(adapt_inputs(X), transform=transform)[0][0]
    assert x.shape == (2, 4, 4)
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([0.0, 2.0]))
    ramp = np.broadcast_to(np.arange(8, dtype=np.float32), (2, 2, 8, 8)).copy()
    augment = make_transform("array", train=True, augment=True)
    torch.manual_seed(0)
    outputs = [augment(torch.from_numpy(ramp[0])) for _ in range(5)]
    assert all(x.shape == (2, 8, 8) for x in outputs)
    assert not all(torch.equal(outputs[0], x) for x in outputs[1:])
    assert make_transform("array", train=False, augment=True) is None


def test_array_transform_errors_are_raised_when_the_dataset_is_built():
    images = adapt_inputs(np.zeros((2, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"mean/std have 3 value.*1 channel"):
        InputDataset(images, transform=make_transform("array", train=False, mean=(0, 0, 0)))
    rows = adapt_inputs(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"image_size.*tabular rows of shape \(2, 5\)"):
        InputDataset(rows, transform=make_transform("array", train=True, image_size=8))
    with pytest.raises(ValueError, match=r"augment=True.*tabular"):
        InputDataset(rows, transform=make_transform("array", train=True, augment=True))


# --------------------------------------------------------------------------- dataset
def test_dataset_targets_and_lengths(image_files):
    inputs = adapt_inputs([image_files["rgb.jpg"], image_files["palette.gif"]])
    transform = make_transform("files", train=False, image_size=8)
    x, target = InputDataset(inputs, np.array([1, 0]), transform)[0]
    assert x.shape == (3, 8, 8) and target.dtype == torch.int64 and int(target) == 1
    _, target = InputDataset(inputs, np.array([0.5, 2.0]), transform)[1]
    assert target.dtype == torch.float32 and float(target) == 2.0
    assert int(InputDataset(inputs, None, transform)[0][1]) == 0
    with pytest.raises(ValueError, match="2 samples but y has 3"):
        InputDataset(inputs, np.array([0, 1, 2]), transform)
    with pytest.raises(TypeError, match="encode the targets"):
        InputDataset(inputs, np.array(["ant", "bee"]), transform)


def test_dataset_decodes_lazily(image_files, bad_files):
    inputs = Inputs(kind="files", items=[image_files["rgb.jpg"], bad_files["notes.jpg"]])
    dataset = InputDataset(inputs, transform=make_transform("files", train=False, image_size=8))
    assert dataset[0][0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="notes.jpg"):
        dataset[1]


def test_dataset_pickles_and_loads_in_worker_processes(image_files):
    inputs = adapt_inputs(list(image_files.values()))
    transform = make_transform("files", train=True, image_size=12)
    dataset = InputDataset(inputs, np.arange(len(inputs)), transform)
    restored = pickle.loads(pickle.dumps(dataset))
    assert len(restored) == len(dataset)
    loader = DataLoader(dataset, batch_size=4, num_workers=2)
    batches = list(loader)
    x = torch.cat([batch[0] for batch in batches])
    targets = torch.cat([batch[1] for batch in batches])
    assert x.shape == (len(inputs), 3, 12, 12) and x.dtype == torch.float32
    assert targets.tolist() == list(range(len(inputs)))


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
