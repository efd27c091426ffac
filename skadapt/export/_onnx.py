"""Exporting a fitted fine-tuner (or a Pipeline ending in one) to one ONNX graph.

:func:`export_onnx` finds the fine-tuner and the numeric steps before it, builds the module to
trace (``_graph.py``), traces it with torch's TorchScript-based exporter (``dynamo=False``: it
needs no ``onnxscript`` and works offline) with a dynamic batch axis (and a dynamic sequence axis
for texts), stores the metadata (``_metadata.py``) in the file and beside it, saves a text model's
tokenizer beside it, and optionally quantizes the weights to int8 (``_quantize.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skadapt.export._graph import graph_module, network_module
from skadapt.export._metadata import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    encode_classes,
    sidecar_paths,
)

__all__ = ["OnnxExport", "export_onnx"]

_DEFAULT_OPSET = 17
_TASKS = {"probabilities": "classification", "values": "regression", "embeddings": "embedding"}
_EXAMPLE_TEXTS = ["an example text", "a second, somewhat longer example text"]


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Parameters
    ----------
    path : Path
        The ONNX graph.
    files : tuple of Path
        Everything written: the graph, the JSON metadata beside it, and for texts the tokenizer
        folder.
    n_bytes : int
        The graph's size on disk.
    metadata : dict
        The metadata stored in the graph and beside it (classes, input, preprocessing, versions).
    float_n_bytes : int or None
        With ``quantize=True``: the size of the float32 graph before quantization.
    quantization : dict or None
        With ``quantize=True`` and ``check=(X, y)``: the scores of the float32 and the int8
        graphs on ``(X, y)`` (accuracy, or R² for a regressor) and their largest absolute
        difference in output.
    """

    path: Path
    files: tuple[Path, ...]
    n_bytes: int
    metadata: dict[str, Any] = field(repr=False)
    float_n_bytes: int | None = None
    quantization: dict[str, float] | None = None


def export_onnx(estimator, path: str | os.PathLike, *, example=None, quantize: bool = False,
                check=None, opset: int = _DEFAULT_OPSET) -> OnnxExport:
    """Export a fitted fine-tuner or feature extractor (or a Pipeline ending in one) as one ONNX
    graph.

    The graph takes a batch of any size and returns what ``predict_proba`` returns (a
    classifier's probabilities, one column per entry of ``classes_``), what ``predict``
    returns for a regressor (its values, ``(n, n_outputs)``), or what ``transform`` returns for
    a ``PretrainedFeatureExtractor`` (its embeddings, the tapped ``layer`` and the pooling
    included; what follows the layer is left out of the graph). The class labels, the input kind
    and the preprocessing are stored in the file's metadata and in ``<name>.json`` beside it;
    :class:`OnnxPredictor` reads them back.

    - Arrays (``(n, d)`` rows or ``(n, c, h, w)`` images): the graph's input ``input`` is X
      itself; the numeric steps of a Pipeline before the fine-tuner (``StandardScaler``,
      ``MinMaxScaler``, ``MaxAbsScaler``, ``RobustScaler``, ``ChannelStandardizer``) and the
      fine-tuner's own ``mean``/``std`` run inside the graph.
    - Image files and PIL images: the graph takes the preprocessed ``(n, 3, crop, crop)``
      tensor; the resize, crop and normalization are stored in the metadata and applied by
      :class:`OnnxPredictor` (and ``skadapt predict model.onnx photos/``).
    - Texts: the graph takes ``input_ids`` and ``attention_mask`` (int64, ``(n, tokens)``); the
      tokenizer is saved beside the graph in ``<name>.tokenizer/``.

    Parameters
    ----------
    estimator : PretrainedFineTuner, PretrainedFineTunerRegressor, PretrainedFeatureExtractor or Pipeline
        Fitted. A Pipeline's last step must be one of these fitted on arrays, and its other
        steps numeric scalers.
    path : str or path-like
        Where to write the graph (``.onnx`` is added when the name has no suffix).
    example : array-like, optional
        A few samples of ``X``, to trace the network with. Needed only for image arrays whose size
        the network does not know (your own module with no ``image_size``).
    quantize : bool, default=False
        Also quantize the weights to int8 (onnxruntime's dynamic quantization): ``path`` then
        holds the int8 graph, usually about 4 times smaller and faster on a CPU, with slightly
        different outputs.
    check : tuple (X, y), optional
        With ``quantize=True``: data on which to report the float32 and int8 graphs' scores
        and their largest output difference (``OnnxExport.quantization``; an extractor's
        embeddings have no score: only the difference, and ``y`` may be None).
    opset : int, default=17
        The ONNX opset.

    Returns
    -------
    OnnxExport

    Raises
    ------
    TypeError
        For an estimator that is not a fine-tuner, or a Pipeline step with no tensor arithmetic.
    ValueError
        For an unfitted estimator, or an input that cannot be exported.

    Examples
    --------
    >>> import numpy as np, tempfile, torch
    >>> from skadapt import PretrainedFineTuner
    >>> from skadapt.export import OnnxPredictor, export_onnx
    >>> X = np.random.default_rng(0).normal(size=(20, 4)).astype("float32")
    >>> y = np.where(X[:, 0] > 0, "yes", "no")
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> clf = PretrainedFineTuner(net, max_epochs=2, feature_cache=False).fit(X, y)
    >>> folder = tempfile.mkdtemp()
    >>> exported = export_onnx(clf, f"{folder}/model.onnx")
    >>> exported.metadata["classes"]["values"]
    ['no', 'yes']
    >>> onnx_model = OnnxPredictor(exported.path)
    >>> bool(np.abs(onnx_model.predict_proba(X) - clf.predict_proba(X)).max() < 1e-5)
    True
    """
    onnx = _import_onnx()
    steps, finetuner = _split_pipeline(estimator)
    classifier = hasattr(finetuner, "classes_")
    kind = _input_kind(finetuner, steps)
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path, tokenizer_path = sidecar_paths(path)

    embedding = not hasattr(finetuner, "module_")
    module = graph_module(finetuner, steps)
    extra = _array_normalization(finetuner) if kind == "array" else None
    if extra is not None:
        module.steps.append(extra)
    args, input_names, axes = _example_inputs(finetuner, module, kind, example, steps)
    output_name = "embeddings" if embedding else "probabilities" if classifier else "values"
    axes[output_name] = {0: "batch"}

    training = {name: sub.training for name, sub in module.named_modules()}
    try:
        module.eval()
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings(), _quiet_exporter():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, buffer, dynamo=False, input_names=input_names,
                              output_names=[output_name], dynamic_axes=axes, opset_version=opset,
                              do_constant_folding=True)
    finally:
        for name, sub in module.named_modules():
            sub.train(training[name])

    metadata = _metadata(finetuner, steps, kind, input_names, args, output_name, opset,
                         tokenizer_path)
    model = onnx.load_from_string(buffer.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    model.producer_name = "skadapt"
    onnx.save(model, str(path))
    json_path.write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    files = [path, json_path]
    if kind == "texts":
        if tokenizer_path.exists():
            shutil.rmtree(tokenizer_path)
        finetuner.network_.tokenizer.save_pretrained(str(tokenizer_path))
        files.append(tokenizer_path)

    float_n_bytes = quantization = None
    if quantize:
        from skadapt.export._quantize import quantize_file

        float_n_bytes, quantization = quantize_file(path, check)
    elif check is not None:
        raise ValueError("check=(X, y) reports the accuracy change of quantize=True: pass "
                         "quantize=True, or leave check unset.")
    return OnnxExport(path=path, files=tuple(files), n_bytes=path.stat().st_size,
                      metadata=metadata, float_n_bytes=float_n_bytes, quantization=quantization)


def _import_onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError("export_onnx needs onnx (and onnxruntime to run the graph): "
                          "pip install 'skadapt[onnx]'.") from error
    return onnx


@contextlib.contextmanager
def _quiet_exporter():
    """The TorchScript exporter's own log messages kept quiet, and attention's fast path off."""
    import logging

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    # nn.MultiheadAttention's inference fast path (aten::_native_multi_head_attention) has no ONNX
    # form: trace the plain computation, which gives the same outputs
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        logger.setLevel(level)


def _split_pipeline(estimator) -> tuple[list[tuple[str, Any]], Any]:
    from sklearn.pipeline import Pipeline

    from skadapt.finetune import (
        PretrainedFeatureExtractor,
        PretrainedFineTuner,
        PretrainedFineTunerRegressor,
    )

    steps: list[tuple[str, Any]] = []
    finetuner = estimator
    if isinstance(estimator, Pipeline):
        steps = list(estimator.steps[:-1])
        finetuner = estimator.steps[-1][1]
    if not isinstance(finetuner, (PretrainedFineTuner, PretrainedFineTunerRegressor,
                                  PretrainedFeatureExtractor)):
        what = "the Pipeline's last step" if steps or isinstance(estimator, Pipeline) else "estimator"
        raise TypeError(f"{what} is a {type(finetuner).__name__}: export_onnx exports a "
                        "PretrainedFineTuner, PretrainedFineTunerRegressor or "
                        "PretrainedFeatureExtractor (or a Pipeline ending in one).")
    if not hasattr(finetuner, "input_kind_") or getattr(finetuner, "module_", True) is None:
        raise ValueError(f"this {type(finetuner).__name__} is not fitted yet: call fit before "
                         "export_onnx.")
    return steps, finetuner


def _input_kind(finetuner, steps) -> str:
    kind = finetuner.input_kind_
    family = {"array": "array", "files": "images", "pil": "images", "texts": "texts"}.get(kind)
    if family is None:
        raise ValueError(f"a fine-tuner fitted on {kind!r} inputs cannot be exported.")
    if steps and family != "array":
        raise TypeError(f"the fine-tuner was fitted on {family}, so the Pipeline steps before it "
                        f"({', '.join(name for name, _ in steps)}) are not numeric: export the "
                        "fine-tuner alone.")
    return family


def _array_normalization(finetuner):
    """The fine-tuner's own ``mean``/``std`` on arrays, as graph arithmetic; ``image_size`` (a
    resize of arrays) is not exported."""
    from skadapt.export._graph import _Affine

    if finetuner.image_size is not None:
        raise ValueError(f"image_size={finetuner.image_size} resizes the arrays before the "
                         "network, which the export does not include: resize the arrays "
                         "yourself and fit without image_size to export.")
    if finetuner.mean is None and finetuner.std is None:
        return None
    std = None if finetuner.std is None else 1.0 / np.asarray(finetuner.std, dtype=np.float64)
    return _Affine(finetuner.mean, std, "mean/std")


def _example_inputs(finetuner, module, kind, example, steps):
    device = next(network_module(finetuner).parameters()).device
    axes: dict[str, dict[int, str]] = {}
    if kind == "texts":
        if example is None:
            example = _EXAMPLE_TEXTS
        batch = finetuner.network_.tokenizer(list(example)[:2] * (2 if len(example) < 2 else 1),
                                             padding=True, truncation=True,
                                             max_length=finetuner.max_length, return_tensors="pt")
        names = ["input_ids", "attention_mask"]
        args = tuple(batch[name].to(device) for name in names)
        for name in names:
            axes[name] = {0: "batch", 1: "tokens"}
        return args, names, axes
    axes["input"] = {0: "batch"}
    if example is not None:
        x = _example_array(example)
    elif kind == "images":
        from skadapt.finetune._transforms import image_sizes

        crop, _, _ = image_sizes(finetuner.network_.preprocessing, finetuner.image_size)
        x = torch.zeros(2, 3, crop, crop)
    elif getattr(finetuner, "n_features_in_", None) is not None:
        x = torch.zeros(2, finetuner.n_features_in_)
    else:
        x = torch.zeros(2, *_image_array_shape(finetuner))
    return (x.to(device),), ["input"], axes


def _example_array(example) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(example, dtype=np.float32))
    if x.dim() < 2:
        raise ValueError(f"example has shape {tuple(x.shape)}: pass a few samples of X.")
    return x[:2] if len(x) >= 2 else torch.cat([x, x])


def _image_array_shape(finetuner) -> tuple[int, int, int]:
    from torch import nn

    network = finetuner.network_
    conv = next((m for m in network.module.modules() if isinstance(m, nn.Conv2d)), None)
    # the weights' crop size, or the size a module declares (torchvision's VisionTransformer)
    size = (network.preprocessing.crop_size if network.preprocessing is not None
            else getattr(network.module, "image_size", None))
    if conv is None or not isinstance(size, int):
        raise ValueError("the size of the image arrays this network takes is unknown: pass "
                         "example= a few samples of X (e.g. X[:2]).")
    return conv.in_channels, size, size


def _metadata(finetuner, steps, kind, input_names, args, output, opset, tokenizer_path):
    import skadapt

    shape = [None, *args[0].shape[1:]] if kind != "texts" else [None, None]
    metadata: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "skadapt_version": skadapt.__version__, "torch_version": torch.__version__,
        "opset": opset, "estimator": type(finetuner).__name__,
        "task": _TASKS[output], "output": output,
        "input": {"kind": kind, "names": input_names, "shape": [int(s) if s else None
                                                                 for s in shape]},
        "preprocessing": {"steps": [{"name": name, "class": type(step).__name__}
                                    for name, step in steps]},
    }
    if output == "probabilities":
        metadata["classes"] = encode_classes(finetuner.classes_)
    elif output == "values":
        metadata["y_ndim"] = int(finetuner.y_ndim_)
    else:
        metadata["n_features_out"] = int(finetuner.n_features_out_)
    if kind == "images":
        metadata["preprocessing"].update(_image_preprocessing(finetuner))
    elif kind == "texts":
        metadata["preprocessing"].update(tokenizer=tokenizer_path.name,
                                         max_length=int(finetuner.max_length))
    elif finetuner.mean is not None or finetuner.std is not None:
        metadata["preprocessing"]["normalization_in_graph"] = {
            "mean": _floats(finetuner.mean), "std": _floats(finetuner.std)}
    return metadata


def _image_preprocessing(finetuner) -> dict[str, Any]:
    """The estimator's predict-time transform, in numbers (``make_transform(train=False)``)."""
    from skadapt.finetune._transforms import IMAGENET_MEAN, IMAGENET_STD, image_sizes

    preprocessing = finetuner.network_.preprocessing
    crop, resize, interpolation = image_sizes(preprocessing, finetuner.image_size)
    mean = finetuner.mean or (preprocessing.mean if preprocessing else IMAGENET_MEAN)
    std = finetuner.std or (preprocessing.std if preprocessing else IMAGENET_STD)
    return {"resize_size": int(resize), "crop_size": int(crop), "interpolation": str(interpolation),
            "mean": _floats(mean), "std": _floats(std)}


def _floats(values) -> list[float] | None:
    return None if values is None else [float(v) for v in np.atleast_1d(values)]
