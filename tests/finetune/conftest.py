"""Tiny pretrained-like networks and learnable image tasks shared by the fine-tuning tests."""

import numpy as np
import pytest
import torch
from torch import nn


class TinyCNN(nn.Module):
    """A four-stage CNN standing in for a user's own pretrained network (10-class head ``fc``)."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.stem = _stage(3, 8, stride=1)
        self.stage1 = _stage(8, 12, stride=2)
        self.stage2 = _stage(12, 16, stride=2)
        self.stage3 = _stage(16, 16, stride=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x):
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


class FunctionalDropout(nn.Module):
    """Dropout called as a function in ``forward``: no submodule to put in inference mode, so the
    frozen backbone computes differently in training mode and its features cannot be cached."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 32)
        self.fc = nn.Linear(32, 2)

    def forward(self, x):
        return self.fc(nn.functional.dropout(torch.relu(self.body(x)), 0.5, self.training))


def _stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


def color_task(n: int = 96, size: int = 16, seed: int = 0):
    """Images whose class is which colour channel dominates: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(0.0, 1.0, size=(n, 3, size, size)).astype(np.float32)
    X[y == 0, 0] += 1.5
    X[y == 1, 2] += 1.5
    return X, np.where(y == 0, "red", "blue")


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A 'pretrained' TinyCNN saved as a state dict, as a user would have it on disk."""
    torch.manual_seed(0)
    model = TinyCNN()
    # give BatchNorm non-trivial running statistics, as a trained network has
    model.train()
    with torch.no_grad():
        model(torch.randn(32, 3, 16, 16) * 2 + 0.5)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def images():
    return color_task()
