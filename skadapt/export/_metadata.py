"""What an exported model carries besides its graph: classes, inputs, preprocessing, versions.

The same JSON object is stored twice: in the ONNX file's ``metadata_props`` (key ``"skadapt"``),
so the graph alone is self-describing, and as ``<name>.json`` beside it, for readers without
``onnx``. It says:

- ``task``: ``"classification"`` (output ``probabilities``, one column per entry of ``classes``),
  ``"regression"`` (output ``values``; ``y_ndim`` 1 means ``predict`` flattens them) or
  ``"embedding"`` (a feature extractor's output ``embeddings``, ``n_features_out`` columns);
- ``input``: its ``kind`` (``"array"``, ``"images"`` or ``"texts"``), the graph's input names and
  shape (``null`` for the dynamic batch, and for texts the sequence length);
- ``preprocessing``: for images, what turns an RGB image into the graph's input (resize the
  short side to ``resize_size`` with ``interpolation``, center-crop ``crop_size``, scale to
  ``[0, 1]``, normalize with ``mean``/``std``); for texts, the tokenizer folder beside the graph
  and ``max_length``; for arrays, the pipeline steps already inside the graph;
- ``skadapt_version``, ``torch_version``, ``opset``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT", "METADATA_KEY", "decode_classes", "encode_classes", "read_metadata",
           "sidecar_paths"]

FORMAT = "skadapt-onnx"
FORMAT_VERSION = 1
METADATA_KEY = "skadapt"


def sidecar_paths(path: Path) -> tuple[Path, Path]:
    """``(<name>.json, <name>.tokenizer/)`` beside ``<name>.onnx``."""
    return path.with_suffix(".json"), path.with_name(path.stem + ".tokenizer")


def encode_classes(classes: np.ndarray) -> dict[str, Any]:
    classes = np.asarray(classes)
    return {"values": classes.tolist(), "dtype": classes.dtype.str}


def decode_classes(stored: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(stored["dtype"])
    if dtype.kind == "O":
        values = np.empty(len(stored["values"]), dtype=object)
        values[:] = stored["values"]
        return values
    return np.asarray(stored["values"], dtype=dtype)


def read_metadata(model_path: Path, custom: dict[str, str] | None = None) -> dict[str, Any]:
    """The metadata of an exported model: from its ``metadata_props`` (``custom``: as onnxruntime
    reads them), else from the JSON beside it."""
    if custom and METADATA_KEY in custom:
        metadata = json.loads(custom[METADATA_KEY])
    else:
        beside = sidecar_paths(model_path)[0]
        if not beside.exists():
            raise ValueError(f"{model_path} was not exported by skadapt.export_onnx: it has no "
                             f"{METADATA_KEY!r} metadata and no {beside.name} beside it.")
        metadata = json.loads(beside.read_text(encoding="utf-8"))
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{model_path}: its metadata is not skadapt's ({FORMAT!r}).")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{model_path} was exported by a newer skadapt (format version "
                         f"{metadata['format_version']}; this one reads {FORMAT_VERSION}): upgrade "
                         "skadapt.")
    return metadata
