"""What is saved of a fitted ``PretrainedFeatureExtractor``, and how it is rebuilt without pickle.

Saved (``config.json``): its constructor parameters (``model`` as for the fine-tuners), the
fitted state ``transform`` needs (``n_features_out_``, ``n_features_in_`` for tabular input, the
cache key ``computation_``), and the network's preprocessing; the weights are the state dict of
the network with its head removed (``weights.safetensors``).

Rebuilt: the network built as an architecture only (``weights=None``), its head replaced by
``nn.Identity`` as ``fit`` does, the saved state dict loaded into it, in inference mode on the
extractor's device.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from skadapt.finetune import PretrainedFeatureExtractor
from skadapt.finetune._device import resolve_device
from skadapt.networks import resolve_network
from skadapt.persistence._errors import PersistenceError
from skadapt.persistence._estimators import (
    decode_params,
    decode_preprocessing,
    encode_params,
    encode_preprocessing,
    load_weights,
    versions,
)
from skadapt.persistence._huggingface import architecture

__all__ = ["describe", "rebuild", "weights_module"]

_FITTED = ("n_features_out_", "n_features_in_", "computation_", "input_kind_")


def describe(extractor: PretrainedFeatureExtractor) -> dict:
    """``config.json``'s content for a fitted feature extractor."""
    fitted = {key: getattr(extractor, key) for key in _FITTED if hasattr(extractor, key)}
    return {
        "estimator": type(extractor).__name__,
        "versions": versions(),
        "params": encode_params(extractor.get_params(deep=False)),
        "fitted": fitted,
        "network": {"source": extractor.network_.source,
                    "preprocessing": encode_preprocessing(extractor.network_.preprocessing)},
    }


def weights_module(extractor: PretrainedFeatureExtractor) -> nn.Module:
    return extractor.network_.module


def rebuild(config: dict, weights: Path) -> PretrainedFeatureExtractor:
    """The fitted extractor described by ``config``, with the state dict in ``weights``."""
    extractor = PretrainedFeatureExtractor(**decode_params(config["params"]))
    fitted = config["fitted"]
    unknown = set(fitted) - set(_FITTED)
    if unknown or "computation_" not in fitted:
        raise PersistenceError(f"config.json's fitted state {sorted(fitted)} is not a "
                               "PretrainedFeatureExtractor's: save the model again.")
    with architecture(config, weights.parent, extractor.model):
        network = resolve_network(extractor.model, None, n_outputs=1, head=extractor.head)
    for name in network.head:
        network.module.set_submodule(name, nn.Identity())
    network.preprocessing = decode_preprocessing(config["network"]["preprocessing"])
    load_weights(network.module, weights)
    device = resolve_device(extractor.device)
    network.module.requires_grad_(False).eval().to(device)
    extractor.network_, extractor.device_ = network, device
    for key, value in fitted.items():
        setattr(extractor, key, value)
    return extractor
