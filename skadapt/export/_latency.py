"""The prediction latency of a fitted model once exported to ONNX and run by onnxruntime.

``compare_models(..., onnx_latency=True)`` reports it beside the PyTorch latency: the same batch,
the same warm-up and the same median of timed ``predict`` calls, through :class:`OnnxPredictor`
(so image decoding and tokenization are timed as in the PyTorch estimator's ``predict``).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path

import numpy as np

__all__ = ["onnx_latency_ms"]


def onnx_latency_ms(fitted, batch, n_repeats: int) -> float:
    """Median milliseconds per sample of ``predict(batch)`` through onnxruntime; NaN for a model
    that is not a fine-tuner (or a Pipeline ending in one), or that cannot be exported."""
    from skadapt.export._onnx import export_onnx
    from skadapt.export._predictor import OnnxPredictor
    from skadapt.model_selection._budget import latency_ms

    with tempfile.TemporaryDirectory(prefix="skadapt-onnx-") as folder:
        try:
            exported = export_onnx(fitted, Path(folder) / "model.onnx", example=_example(batch))
        except TypeError:  # not a fine-tuner, or a pipeline step with no graph form
            return math.nan
        except ValueError as error:
            warnings.warn(f"no onnxruntime latency for a {type(fitted).__name__}: {error}",
                          UserWarning, stacklevel=3)
            return math.nan
        model = OnnxPredictor(exported.path, batch_size=max(len(batch), 1))
        return latency_ms(model, batch, n_repeats)


def _example(batch):
    """The batch as an example for tracing, when it is numeric (image arrays need one)."""
    try:
        array = np.asarray(batch, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    return array if array.ndim >= 2 else None
