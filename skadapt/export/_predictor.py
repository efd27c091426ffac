"""Running an exported model with onnxruntime on the same ``X`` as the estimator.

:class:`OnnxPredictor` reads the metadata stored by :func:`export_onnx` and turns ``X`` into the
graph's inputs as the estimator does: arrays as they are (the pipeline's scalers run in the
graph), image files and PIL images decoded to RGB and resized, cropped and normalized with the
stored numbers, texts tokenized with the tokenizer saved beside the graph.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils.metaestimators import available_if

from skadapt.export._metadata import decode_classes, read_metadata, sidecar_paths

__all__ = ["OnnxPredictor"]


class OnnxPredictor:
    """An exported skadapt model, run by onnxruntime, with the estimator's ``predict`` (or, for a
    feature extractor, ``transform``).

    Parameters
    ----------
    path : str or path-like
        A ``.onnx`` file written by :func:`export_onnx` (its metadata, and for texts the tokenizer
        folder beside it, are read back).
    batch_size : int, default=64
        Samples per run of the graph.
    providers : list of str, optional
        onnxruntime execution providers; default: the CPU.

    Attributes
    ----------
    metadata : dict
        What the export stored: task, input kind, preprocessing, versions.
    classes_ : ndarray
        A classifier's class labels, in the order of ``predict_proba``'s columns (a regressor
        has neither ``classes_`` nor ``predict_proba``).

    Examples
    --------
    >>> import numpy as np, tempfile, torch
    >>> from skadapt import PretrainedFineTunerRegressor
    >>> from skadapt.export import OnnxPredictor, export_onnx
    >>> X = np.random.default_rng(0).normal(size=(20, 3)).astype("float32")
    >>> reg = PretrainedFineTunerRegressor(torch.nn.Sequential(torch.nn.Linear(3, 1)),
    ...                                    max_epochs=1, feature_cache=False).fit(X, X[:, 0])
    >>> path = export_onnx(reg, f"{tempfile.mkdtemp()}/reg.onnx").path
    >>> OnnxPredictor(path).predict(X[:4]).shape
    (4,)
    """

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 64,
                 providers: list[str] | None = None):
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError("running an exported model needs onnxruntime: "
                              "pip install 'skadapt[onnx]'.") from error
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.path}.")
        self.batch_size = batch_size
        self.session = onnxruntime.InferenceSession(
            str(self.path), providers=providers or ["CPUExecutionProvider"])
        self.metadata: dict[str, Any] = read_metadata(
            self.path, self.session.get_modelmeta().custom_metadata_map)
        self.kind: str = self.metadata["input"]["kind"]
        if self.metadata["task"] == "classification":
            self.classes_ = decode_classes(self.metadata["classes"])
        self._transform = self._tokenizer = None

    # ----------------------------------------------------------------- predicting
    @available_if(lambda self: self.metadata["task"] == "classification")
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of a classifier, one column per entry of ``classes_``.

        Parameters
        ----------
        X : array-like, image paths, PIL images or texts
            What the exported estimator's ``predict_proba`` takes.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return self._outputs(X)

    @available_if(lambda self: self.metadata["task"] == "embedding")
    def transform(self, X) -> np.ndarray:
        """The embeddings of an exported ``PretrainedFeatureExtractor``.

        Parameters
        ----------
        X : array-like, image paths, PIL images or texts
            What the exported extractor's ``transform`` takes.

        Returns
        -------
        ndarray of shape (n_samples, n_features_out), float32
        """
        return self._outputs(X)

    @available_if(lambda self: self.metadata["task"] != "embedding")
    def predict(self, X) -> np.ndarray:
        """The predicted class labels (classifier) or values (regressor), as the estimator's.

        Parameters
        ----------
        X : array-like, image paths, PIL images or texts

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        outputs = self._outputs(X)
        if self.metadata["task"] == "classification":
            return self.classes_[outputs.argmax(axis=1)]
        outputs = outputs.astype(np.float64)
        return outputs.ravel() if self.metadata.get("y_ndim") == 1 else outputs

    @available_if(lambda self: self.metadata["task"] != "embedding")
    def score(self, X, y) -> float:
        """Accuracy (classifier) or R² (regressor) on ``X``, ``y``."""
        from sklearn.metrics import accuracy_score, r2_score

        if self.metadata["task"] == "classification":
            return float(accuracy_score(np.asarray(y), self.predict(X)))
        return float(r2_score(y, self.predict(X)))

    def __repr__(self) -> str:
        return f"OnnxPredictor({str(self.path)!r}, {self.metadata['task']}, {self.kind} input)"

    # ----------------------------------------------------------------- inputs
    def _outputs(self, X) -> np.ndarray:
        batches = self._batches(X)
        results = [self.session.run(None, feeds)[0] for feeds in batches]
        if not results:
            raise ValueError("X is empty: pass at least one sample.")
        return np.concatenate(results)

    def _batches(self, X):
        if self.kind == "texts":
            from skadapt.finetune._adapters import adapt_texts

            texts = adapt_texts(X).items
            for start in range(0, len(texts), self.batch_size):
                yield self._tokenize(texts[start:start + self.batch_size])
            return
        if self.kind == "images":
            items = self._images(X)
        else:
            items = self._array(X)
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            yield {"input": chunk() if callable(chunk) else chunk}

    def _array(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        expected = self.metadata["input"]["shape"][1:]
        if X.ndim != len(expected) + 1 or any(
                want is not None and want != got for want, got in zip(expected, X.shape[1:])):
            raise ValueError(f"X has shape {X.shape}, but this model takes (n_samples, "
                             f"{', '.join(str(s) for s in expected)}).")
        return X

    def _images(self, X) -> _LazyImages:
        from skadapt.finetune._adapters import adapt_inputs

        inputs = adapt_inputs(X)
        if inputs.kind not in ("files", "pil"):
            raise ValueError(f"this model takes image files or PIL images; X holds {inputs.kind}"
                             "s: pass image paths.")
        return _LazyImages(inputs, self._image_transform(inputs.kind))

    def _image_transform(self, kind: str):
        from skadapt.finetune._transforms import make_transform
        from skadapt.networks import Preprocessing

        stored = self.metadata["preprocessing"]
        preprocessing = Preprocessing(
            resize_size=stored["resize_size"], crop_size=stored["crop_size"],
            mean=tuple(stored["mean"]), std=tuple(stored["std"]),
            interpolation=stored["interpolation"])
        return make_transform(kind, train=False, preprocessing=preprocessing)

    def _tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self._tokenizer is None:
            try:
                from transformers import AutoTokenizer
            except ImportError as error:
                raise ImportError("this model takes texts: its tokenizer needs transformers "
                                  "(pip install 'skadapt[text]').") from error
            folder = sidecar_paths(self.path)[1].with_name(self.metadata["preprocessing"]["tokenizer"])
            if not folder.is_dir():
                raise FileNotFoundError(f"the tokenizer folder {folder} is missing: keep it beside "
                                        f"{self.path.name}, as export_onnx wrote it.")
            self._tokenizer = AutoTokenizer.from_pretrained(str(folder))
        batch = self._tokenizer(list(texts), padding=True, truncation=True,
                                max_length=self.metadata["preprocessing"]["max_length"],
                                return_tensors="np")
        return {name: np.asarray(batch[name], dtype=np.int64)
                for name in self.metadata["input"]["names"]}


class _LazyImages:
    """Images decoded and transformed one slice at a time (``len`` and slicing only)."""

    def __init__(self, inputs, transform):
        self.inputs = inputs
        self.transform = transform

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: slice):
        from skadapt.finetune._datasets import InputDataset

        subset = self.inputs.subset(np.arange(len(self))[index])
        dataset = InputDataset(subset, transform=self.transform)

        def batch() -> np.ndarray:
            return np.stack([dataset[i][0].numpy() for i in range(len(dataset))]).astype(np.float32)

        return batch
