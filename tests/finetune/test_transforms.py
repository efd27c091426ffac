"""Tests of skadapt/finetune/_transforms.py: sizes, normalization and augmentation of each input kind."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from skadapt.finetune._adapters import adapt_inputs
from skadapt.finetune._datasets import InputDataset
from skadapt.finetune._transforms import IMAGENET_MEAN, IMAGENET_STD, make_transform
from skadapt.networks import Preprocessing
from tests.finetune.images import gradient


def test_eval_is_deterministic_and_train_augmentation_is_random():
    image = Image.fromarray(gradient(64, 48))
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
    image = Image.fromarray(gradient(64, 64))  # resized to 32, then a symmetric crop to 28
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
