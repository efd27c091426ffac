"""The network registry: which source each kind of model goes to, and what every source answers."""

import pytest
import torch
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


def test_the_old_import_path_still_resolves():
    from skadapt.finetune._backbones import resolve_network as old

    assert old is resolve_network
    assert old(TinyCNN, n_outputs=2).module(torch.zeros(1, 3, 8, 8)).shape == (1, 2)


def test_the_old_module_paths_that_pickles_name_still_hold_the_classes():
    # models pickled before the registry name these modules as the classes' homes
    import pickle

    from skadapt.networks import LayerGroup
    from skadapt.networks._source_hf_text import TextEncoderNetwork, TextNetwork
    from skadapt.networks._tokenize import TextCollate

    for module, cls in [("skadapt.text._encoder", TextNetwork),
                        ("skadapt.text._encoder", TextEncoderNetwork),
                        ("skadapt.text._tokenize", TextCollate),
                        ("skadapt.finetune._backbones", LayerGroup)]:
        old = f"c{module}\n{cls.__name__}\n.".encode()  # protocol 0: a global reference
        assert pickle.loads(old) is cls
