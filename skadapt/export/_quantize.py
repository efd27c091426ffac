"""Dynamic int8 quantization of an exported graph, and what it costs in accuracy.

onnxruntime's ``quantize_dynamic`` stores the weights of matrix products and convolutions as int8
and quantizes activations on the fly; the file shrinks about 4 times. :func:`quantize_file`
replaces the float32 graph by the int8 one and, given ``(X, y)``, reports both graphs' scores.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["quantize_file"]


def quantize_file(path: Path, check=None) -> tuple[int, dict[str, float] | None]:
    """Quantize ``path`` in place; return the float32 size and, with ``check=(X, y)``, the scores."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from skadapt.export._predictor import OnnxPredictor

    float_n_bytes = path.stat().st_size
    before = None
    if check is not None:
        X, y = check
        float_model = OnnxPredictor(path)
        scored = hasattr(float_model, "score")  # not an extractor's embeddings
        before = float_model._outputs(X), float_model.score(X, y) if scored else None
    descriptor, scratch = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(descriptor)
    try:
        quantize_dynamic(str(path), scratch, weight_type=QuantType.QInt8)
        _copy_metadata(path, Path(scratch))
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)
    if before is None:
        return float_n_bytes, None
    int8_model = OnnxPredictor(path)
    outputs = int8_model._outputs(X)
    report = {"max_abs_difference": float(np.abs(outputs - before[0]).max())}
    if scored:
        report = {"float32_score": float(before[1]), "int8_score": float(int8_model.score(X, y)),
                  **report}
    return float_n_bytes, report


def _copy_metadata(source: Path, target: Path) -> None:
    """quantize_dynamic keeps the graph, not always the metadata: copy skadapt's over."""
    import onnx

    from skadapt.export._metadata import METADATA_KEY

    stored = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    model = onnx.load(str(target))
    if not any(p.key == METADATA_KEY for p in model.metadata_props):
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, stored[METADATA_KEY]
    onnx.save(model, str(target))
