"""The decoded-image cache: each image decoded once, bounded, invalidated when the file changes."""

import numpy as np
import PIL.Image
import pytest
import torch

from skadapt.finetune import _embedding_cache, _image_cache
from skadapt.finetune._decoding import load_rgb
from skadapt.finetune._image_cache import (
    DecodedImageCache,
    DecodedImageDataset,
    make_decode_transform,
)
from skadapt.finetune._transforms import make_transform


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        pixels = rng.integers(0, 255, size=(30 + i, 40, 3), dtype=np.uint8)
        path = tmp_path / f"photo{i}.png"
        PIL.Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def _count_decodes(monkeypatch):
    calls = []

    def counting_load_rgb(path):
        calls.append(path)
        return load_rgb(path)

    monkeypatch.setattr(_image_cache, "load_rgb", counting_load_rgb)
    return calls


def test_each_image_is_decoded_once_across_epochs(photos, monkeypatch):
    calls = _count_decodes(monkeypatch)
    train = make_transform("files", train=True, image_size=16)
    data = DecodedImageDataset(photos, y=np.arange(6), decode=make_decode_transform(24),
                               transform=train)
    for _epoch in range(3):
        for i in range(len(data)):
            x, target = data[i]
            assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and int(target) == i
    assert len(calls) == len(photos)


def test_decoded_images_give_the_inference_transform_bit_for_bit(photos):
    inference = make_transform("files", train=False, image_size=21)  # resizes the short side to 24
    data = DecodedImageDataset(photos, decode=make_decode_transform(24), transform=inference)
    for i, path in enumerate(photos):
        torch.testing.assert_close(data[i][0], inference(load_rgb(path)), rtol=0, atol=0)


def test_predecode_with_workers_fills_the_main_process_cache(photos, monkeypatch):
    data = DecodedImageDataset(photos, decode=make_decode_transform(24))
    assert data.predecode(num_workers=2, batch_size=2) == len(photos)
    calls = _count_decodes(monkeypatch)
    assert all(data[i][0].dtype == torch.uint8 for i in range(len(photos)))
    assert calls == [] and data.predecode() == 0


def test_the_image_cache_is_bounded_and_the_rest_is_decoded_on_access(photos, monkeypatch):
    one_image = 3 * 24 * 32 + _embedding_cache._ENTRY_OVERHEAD_BYTES
    cache = DecodedImageCache(max_bytes=2 * one_image + 10)
    data = DecodedImageDataset(photos, decode=make_decode_transform(24), cache=cache)
    assert data.predecode() == 2
    assert cache.nbytes <= cache.max_bytes
    kept = [key for key in data.keys if key in cache]
    calls = _count_decodes(monkeypatch)
    for _epoch in range(2):
        for i in range(len(photos)):
            data[i]
    assert [key for key in data.keys if key in cache] == kept, "a full cache keeps what it has"
    assert len(calls) == 2 * (len(photos) - 2)


def test_a_changed_file_or_decode_transform_is_decoded_again(photos, monkeypatch):
    cache = DecodedImageCache()
    DecodedImageDataset(photos, decode=make_decode_transform(24), cache=cache).predecode()
    calls = _count_decodes(monkeypatch)
    PIL.Image.new("RGB", (50, 40), "white").save(photos[0])
    data = DecodedImageDataset(photos, decode=make_decode_transform(24), cache=cache)
    assert data[0][0].shape == (3, 24, 30) and int(data[0][0].min()) == 255
    assert calls == [photos[0]]
    bigger = DecodedImageDataset(photos, decode=make_decode_transform(28), cache=cache)
    assert bigger[1][0].shape[1] == 28 and len(calls) == 2


def test_decoded_dataset_checks_its_arguments(photos):
    with pytest.raises(TypeError, match="decode"):
        DecodedImageDataset(photos, decode="resize")
    with pytest.raises(ValueError, match="6 paths but 2 targets"):
        DecodedImageDataset(photos, y=[0, 1], decode=make_decode_transform(8))
    with pytest.raises(ValueError, match="short_side"):
        make_decode_transform(0)
