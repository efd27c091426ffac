"""The CIFAR-10 ResNet20/56 of He et al. (2016), matching the checkpoints in ``../shared``.

A "user's own pretrained network" for tests and benchmarks: ``CifarResNet(depth)`` has exactly the
parameter names of the checkpoints in ``shared/models/cifar10_resnet`` (see its README), so they
load with ``strict=True`` once their ``module.`` prefix is stripped.

>>> model = CifarResNet(20)
>>> sum(p.numel() for p in model.parameters())
269722
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
_CHECKPOINTS = {20: "resnet20-12fca82f.th", 56: "resnet56-4bfd9763.th"}


def checkpoint_path(depth: int = 20) -> Path:
    """Path of the pretrained CIFAR-10 checkpoint for ``depth`` (20 or 56) under ``SHARED``."""
    if depth not in _CHECKPOINTS:
        raise ValueError(f"depth={depth!r}: checkpoints exist for depths {sorted(_CHECKPOINTS)}.")
    return SHARED / "models" / "cifar10_resnet" / _CHECKPOINTS[depth]


class _ShortcutA(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the channels (no parameters)."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut = _ShortcutA(planes) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 CIFAR images: depth ``6n + 2``, stages of 16, 32 and 64 channels.

    Parameters
    ----------
    depth : int, default=20
        ``6n + 2`` layers (20 and 56 have pretrained checkpoints, see ``checkpoint_path``).
    num_classes : int, default=10
        Outputs of the final ``linear`` layer.

    Examples
    --------
    >>> model = CifarResNet(20).eval()
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, depth: int = 20, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth={depth!r} must be 6n + 2 with n >= 1 (20, 32, 44, 56, ...).")
        n_blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n_blocks, stride=1)
        self.layer2 = self._stage(16, 32, n_blocks, stride=2)
        self.layer3 = self._stage(32, 64, n_blocks, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():  # the checkpoints' author's initialization
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, n_blocks: int, stride: int) -> nn.Sequential:
        blocks = [_BasicBlock(in_planes, planes, stride)]
        blocks += [_BasicBlock(planes, planes, 1) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        # global average pooling: any input size (32, 64, 96 px) works
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
