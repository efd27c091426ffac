"""Tests of skadapt/finetune/_datasets.py: targets, lazy decoding, pickling for DataLoader workers."""

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from skadapt.finetune._adapters import Inputs, adapt_inputs
from skadapt.finetune._datasets import InputDataset
from skadapt.finetune._transforms import make_transform
from tests.finetune import images

# fixtures shared by the input tests (assigned, not imported: an imported fixture reads as unused)
image_files = images.image_files
bad_files = images.bad_files


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
