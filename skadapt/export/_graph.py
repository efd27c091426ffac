"""The module that becomes the ONNX graph: numeric pipeline steps, the network, the output.

:func:`graph_module` turns a fitted fine-tuner, and the numeric transformers a ``Pipeline`` runs
before it, into one ``nn.Module``: each standardizing step becomes its arithmetic on tensors
(``(x - mean) / scale`` and the like, with the fitted statistics as constants), then the fine-tuned
network, then the nonlinearity the estimator's ``predict_proba`` applies (softmax for a classifier;
none for a regressor). A step with no such arithmetic is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["graph_module", "network_module", "numeric_step", "NUMERIC_STEPS"]

NUMERIC_STEPS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler",
                 "ChannelStandardizer", "'passthrough'")


class _Affine(nn.Module):
    """``(x - shift) * factor`` with per-feature (axis 1) constants, broadcast over other axes."""

    def __init__(self, shift: np.ndarray | None, factor: np.ndarray | None, name: str):
        super().__init__()
        self.name = name
        self.register_buffer("shift", _tensor(shift), persistent=False)
        self.register_buffer("factor", _tensor(factor), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.shift is not None:
            x = x - self.shift.view(shape)
        if self.factor is not None:
            x = x * self.factor.view(shape)
        return x

    def extra_repr(self) -> str:
        return self.name


def _tensor(values) -> torch.Tensor | None:
    return None if values is None else torch.as_tensor(np.asarray(values, dtype=np.float32))


def _reciprocal(scale) -> np.ndarray | None:
    return None if scale is None else 1.0 / np.asarray(scale, dtype=np.float64)


def numeric_step(name: str, step) -> nn.Module:
    """The tensor arithmetic of one fitted pipeline step; a clear error for any other step."""
    kind = type(step).__name__
    if step is None or step == "passthrough":
        return nn.Identity()
    if kind == "StandardScaler":
        return _Affine(step.mean_ if step.with_mean else None,
                       _reciprocal(step.scale_) if step.with_std else None, kind)
    if kind == "RobustScaler":
        return _Affine(step.center_ if step.with_centering else None,
                       _reciprocal(step.scale_) if step.with_scaling else None, kind)
    if kind == "MaxAbsScaler":
        return _Affine(None, _reciprocal(step.scale_), kind)
    if kind == "MinMaxScaler":
        if step.clip:
            raise ValueError(f"pipeline step {name!r} is a MinMaxScaler(clip=True), which the "
                             "export does not support: refit it with clip=False.")
        # x * scale_ + min_  ==  (x - (-min_ / scale_)) * scale_
        scale = np.asarray(step.scale_, dtype=np.float64)
        shift = -np.asarray(step.min_, dtype=np.float64) / np.where(scale == 0, 1.0, scale)
        return _Affine(shift, scale, kind)
    if kind == "ChannelStandardizer" and type(step).__module__.startswith("skadapt."):
        return _Affine(step.mean_, _reciprocal(step.std_), kind)
    raise TypeError(
        f"pipeline step {name!r} is a {kind}, which cannot be exported to ONNX: only numeric "
        f"standardizing steps can run before the fine-tuner in the graph ({', '.join(NUMERIC_STEPS)}). "
        "Apply it before calling the exported model, or export the fine-tuner alone."
    )


class ExportModule(nn.Module):
    """Numeric steps -> network -> output nonlinearity, as one module to trace."""

    def __init__(self, steps: Sequence[nn.Module], network: nn.Module,
                 nonlinearity: Callable[[torch.Tensor], torch.Tensor] | None, texts: bool):
        super().__init__()
        self.steps = nn.Sequential(*steps)
        self.network = network
        self.nonlinearity = nonlinearity
        self.texts = texts

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.texts:
            out = self.network(input_ids=inputs[0], attention_mask=inputs[1])
        else:
            out = self.network(self.steps(inputs[0]))
        if isinstance(out, tuple):  # inception/googlenet-style (logits, aux...)
            out = out[0]
        out = out.float()
        return out if self.nonlinearity is None else self.nonlinearity(out)


class _Embedder(nn.Module):
    """A feature extractor's computation: its network (head removed) tapped at ``layer`` and
    pooled, with the engine ``transform`` uses (tracing records the tensor operations only, so
    the forward pass stopping after ``layer`` leaves the rest of the network out of the graph)."""

    def __init__(self, module: nn.Module, layer: nn.Module | None, pooling: str,
                 channels_last: bool):
        super().__init__()
        self.module = module
        self.layer = layer
        self.pooling = pooling
        self.channels_last = channels_last

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        from skadapt.networks._embedding import embed

        x = input_ids if attention_mask is None else {"input_ids": input_ids,
                                                      "attention_mask": attention_mask}
        return embed(self.module, x, layer=self.layer, pooling=self.pooling,
                     channels_last=self.channels_last)


def network_module(estimator) -> nn.Module:
    """The fitted network of a fine-tuner or a feature extractor."""
    return estimator.module_ if hasattr(estimator, "module_") else estimator.network_.module


def graph_module(estimator, steps: Sequence[tuple[str, object]]) -> ExportModule:
    """The fitted ``estimator`` (and the pipeline ``steps`` before it) as one module (its
    training flags untouched: the exporter sets inference mode, then restores them)."""
    converted = [numeric_step(name, step) for name, step in steps]
    texts = estimator.input_kind_ == "texts"
    if not hasattr(estimator, "module_"):  # a feature extractor: its embeddings
        pooling = "mean" if estimator.pooling == "avg" else estimator.pooling
        network = _Embedder(estimator.network_.module, estimator._layer_module(estimator.network_),
                            pooling, estimator.network_.channels_last)
        return ExportModule(converted, network, None, texts=texts)
    # what predict_proba applies after the network: softmax for cross-entropy, identity for MSE
    nonlinearity = estimator._get_predict_nonlinearity()
    return ExportModule(converted, estimator.module_, nonlinearity, texts=texts)
