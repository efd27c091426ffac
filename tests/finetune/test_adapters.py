"""Tests of skadapt/finetune/_adapters.py: what each kind of X becomes, and the errors it raises."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skadapt.finetune._adapters import adapt_inputs
from skadapt.finetune._datasets import InputDataset
from tests.finetune import images

# fixtures shared by the input tests (assigned, not imported: an imported fixture reads as unused)
image_files = images.image_files


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
