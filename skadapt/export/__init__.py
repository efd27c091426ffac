"""Export a fitted fine-tuner to ONNX, for onnxruntime on servers and edge devices.

:func:`export_onnx` writes one graph (the pipeline's numeric steps, the network, softmax) with
a dynamic batch size and its metadata; :class:`OnnxPredictor` runs it with the estimator's
``predict``/``predict_proba`` on the same ``X``. Needs ``pip install 'skadapt[onnx]'``.
"""

from skadapt.export._onnx import OnnxExport, export_onnx
from skadapt.export._predictor import OnnxPredictor

__all__ = ["OnnxExport", "OnnxPredictor", "export_onnx"]
