"""When training the head on cached features is the frozen-backbone fit, computed once."""

import re

import pytest
import torch
from torch import nn

from skadapt.finetune._cacheability import cache_applicable, why_cache_not_applicable
from skadapt.networks import resolve_network
from tests.finetune.conftest import FunctionalDropout, TinyCNN


def _network(checkpoint, n_outputs=2):
    return resolve_network(TinyCNN, checkpoint, n_outputs=n_outputs)


class _AfterHead(nn.Module):
    """Scales its head's output: the head is not the network's last operation."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.body(x))) * 2


class _CountsInTraining(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.fc = nn.Linear(6, 2)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        if self.training:
            self.calls += 1
        return self.fc(self.body(x))


def _resolved(module):
    return resolve_network(module, n_outputs=2)


def test_cache_applies_to_last_linear_heads_on_deterministic_backbones(tiny_checkpoint):
    assert cache_applicable(_network(tiny_checkpoint))
    assert cache_applicable(_network(tiny_checkpoint), example_input=torch.randn(2, 3, 16, 16))
    assert cache_applicable(resolve_network(nn.Sequential(nn.Linear(4, 8), nn.ReLU(),
                                                          nn.Dropout(0.3), nn.Linear(8, 3))))


@pytest.mark.parametrize("module, match", [
    (nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 3)),
     r"layers \['1'\] are random in training mode"),
    (nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.Linear(8, 3)),
     "no running statistics"),
])
def test_cache_does_not_apply_to_random_or_batch_dependent_backbones(module, match):
    reason = why_cache_not_applicable(_resolved(module))
    assert reason is not None and re.search(match, reason), reason
    assert not cache_applicable(_resolved(module))


def _small_vit():
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                             mlp_dim=32, dropout=0.2, attention_dropout=0.2)


@pytest.mark.parametrize("model, size", [("efficientnet_b0", 224), (_small_vit, 32)])
def test_frozen_backbones_with_dropout_and_stochastic_depth_are_cacheable(model, size):
    """Their stochastic depth and dropout are off while frozen (frozen means inference mode), so
    training-time features are the inference-time ones: checked by running the network."""
    torch.manual_seed(0)
    network = resolve_network(model if isinstance(model, str) else model(), n_outputs=2)
    assert why_cache_not_applicable(network, example_input=torch.randn(2, 3, size, size)) is None


def test_squeezenets_conv_head_is_not_cacheable():
    reason = why_cache_not_applicable(resolve_network("squeezenet1_1", n_outputs=2))
    assert "Conv2d" in reason


@pytest.mark.parametrize("module, match", [
    (_AfterHead(), "not its head's"),
    (FunctionalDropout(), "computes differently in training mode"),
])
def test_running_an_example_finds_what_the_structure_hides(module, match):
    network = _resolved(module)
    assert cache_applicable(network), "the structure alone looks fine"
    reason = why_cache_not_applicable(network, example_input=lambda: torch.randn(8, 4))
    assert reason is not None and match in reason


def test_the_example_run_leaves_buffers_and_flags_as_they_were():
    network = _resolved(_CountsInTraining())
    network.module.train()
    assert cache_applicable(network, example_input=torch.randn(3, 4))
    assert float(network.module.calls) == 0 and network.module.training

