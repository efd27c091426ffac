"""The network registry: which source each kind of model goes to, and what every source answers."""

import pytest
from torch import nn

from skadapt.networks import (
    ResolvedNetwork,
    default_weights,
    resolve_network,
    source_of,
    sources,
    takes_texts,
)
from tests.finetune.conftest import TinyCNN


def test_every_source_module_is_found_and_asked_in_priority_order():
    names = [source.name for source in sources()]
    assert names == ["timm", "huggingface-vision", "huggingface-text", "module", "torchvision"]


@pytest.mark.parametrize("model, source, texts, weights", [
    ("resnet18", "torchvision", False, "DEFAULT"),
    ("timm/efficientnet_b0.ra_in1k", "timm", False, "DEFAULT"),
    ("sentence-transformers/all-MiniLM-L6-v2", "huggingface-text", True, None),
    (TinyCNN, "module", False, None),
    (TinyCNN(), "module", False, None),
])
def test_each_kind_of_model_goes_to_its_source(model, source, texts, weights):
    assert source_of(model).name == source
    assert takes_texts(model) is texts
    assert default_weights(model) == weights


def test_what_no_source_claims_is_a_type_error():
    assert source_of(3) is None and not takes_texts(3)
    with pytest.raises(TypeError, match="model must be a torchvision model name.*'timm/<name>'"):
        resolve_network(3)


@pytest.mark.parametrize("model", ["resnet18", TinyCNN])
def test_every_source_answers_the_same_questions(model):
    network = resolve_network(model, n_outputs=3)
    assert isinstance(network, ResolvedNetwork)
    assert network.module.get_submodule(network.head[-1]).out_features == 3
    assert network.groups and network.collate(16) is None  # images: torch's default batching
    assert network.source in {"torchvision", "module"}


def test_channels_last_backbones_are_marked():
    assert resolve_network("swin_t").channels_last
    assert not resolve_network("resnet18").channels_last
    assert not resolve_network(nn.Sequential(nn.Linear(2, 2))).channels_last
