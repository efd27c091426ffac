"""``save`` and ``load``: a fitted fine-tuner as a folder of JSON and safetensors, no pickle."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from skadapt.persistence._errors import PersistenceError
from skadapt.persistence._format import CONFIG, MANIFEST, WEIGHTS, read_folder, write_folder

__all__ = ["load", "save"]


def save(estimator, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save a fitted fine-tuner to the folder ``path``, in a format that loads without pickle.

    The folder holds ``weights.safetensors`` (the network's state dict), ``config.json`` (the
    estimator's class and parameters, the fitted state ``predict`` needs, the network's
    preprocessing, the library versions) and ``manifest.json`` (format version and the SHA-256
    of every file). It is written atomically (to a temporary folder, then renamed).

    Parameters
    ----------
    estimator : PretrainedFineTuner, PretrainedFineTunerRegressor, PretrainedFeatureExtractor or Pipeline
        Fitted, with ``model`` a torchvision or timm name or your own ``nn.Module`` class (or an
        instance of it that the class builds with no arguments), referenced by its import path:
        the class must be importable where the model is loaded.
    path : str or path-like
        The folder to create.
    overwrite : bool, default=False
        Replace ``path`` if it holds a model saved before.

    Returns
    -------
    pathlib.Path
        The folder written.

    Raises
    ------
    PersistenceError
        When a parameter has no safe form (callbacks, a criterion instance, a callable
        ``augment``, a class defined in a script), the estimator is not one of these, or ``path``
        exists. A Hugging Face model's configuration and tokenizer files are saved too, in a
        ``huggingface/`` sub-folder. A ``Pipeline``'s skadapt steps are saved
        in sub-folders of this format, its other steps with skops (``pip install
        skadapt[persist]``).

    Examples
    --------
    >>> import tempfile, numpy as np, skadapt
    >>> X = np.random.default_rng(0).normal(size=(8, 3, 32, 32)).astype("float32")
    >>> y = np.array(["cat", "dog"] * 4)
    >>> clf = skadapt.PretrainedFineTuner("mobilenet_v3_small", max_epochs=1, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> folder = skadapt.save(clf, tempfile.mkdtemp() + "/model")
    >>> sorted(p.name for p in folder.iterdir())
    ['config.json', 'manifest.json', 'weights.safetensors']
    >>> bool((skadapt.load(folder).predict_proba(X) == clf.predict_proba(X)).all())
    True
    """
    return write_folder(path, writers_of(estimator), overwrite=overwrite)


# each estimator the format holds, and the private module that saves and rebuilds it
_KINDS = {"PretrainedFineTuner": "_estimators", "PretrainedFineTunerRegressor": "_estimators",
          "PretrainedFeatureExtractor": "_extractor", "Pipeline": "_pipeline"}


def _kind_of(name: str):
    if name not in _KINDS:
        return None
    return importlib.import_module(f"skadapt.persistence.{_KINDS[name]}")


def _is_supported(estimator) -> bool:
    name = type(estimator).__name__
    if name == "Pipeline":
        from sklearn.pipeline import Pipeline

        return type(estimator) is Pipeline
    import skadapt.finetune

    return name in _KINDS and type(estimator) is getattr(skadapt.finetune, name)


def writers_of(estimator) -> dict[str, Callable[[Path], None]]:
    """The files (name -> function writing it) that hold ``estimator``."""
    if not _is_supported(estimator):
        raise PersistenceError(
            f"saving a {type(estimator).__name__} is not supported yet: skadapt.save writes "
            f"{', '.join(_KINDS)}; persist other estimators with joblib for now.")
    kind = _kind_of(type(estimator).__name__)
    if type(estimator).__name__ == "Pipeline":
        return kind.writers(estimator, writers_of)
    from sklearn.utils.validation import check_is_fitted

    from skadapt.persistence import _huggingface as huggingface
    from skadapt.persistence._estimators import write_weights

    check_is_fitted(estimator, "network_")
    text = json.dumps(kind.describe(estimator), indent=2, allow_nan=True)
    module = kind.weights_module(estimator)
    writers = {CONFIG: lambda file: file.write_text(text, encoding="utf-8"),
               WEIGHTS: lambda file: write_weights(module, file)}
    network_writer = huggingface.writer(estimator.network_)
    if network_writer is not None:
        writers[huggingface.HF_FOLDER] = network_writer
    return writers


def load(path: str | os.PathLike, *, trusted: Sequence[str] = ()):
    """Load a model saved by :func:`save`, without running pickle or ``torch.load``.

    Every file's SHA-256 is checked against the manifest first; then the estimator is rebuilt
    from its parameters, its network built as an architecture only (no pretrained weights are
    downloaded or read), and the saved weights are loaded into it on the CPU, then moved to the
    estimator's device (a model saved on a GPU loads on a CPU).

    Parameters
    ----------
    path : str or path-like
        A folder written by :func:`save`.
    trusted : sequence of str, default=()
        For a ``Pipeline``: the types (``"module.Name"``) its scikit-learn steps may hold beyond
        those skops trusts by default (scikit-learn's estimators, numpy, scipy). Loading refuses,
        naming them, types not trusted either way: check them, then pass them here.

    Returns
    -------
    PretrainedFineTuner, PretrainedFineTunerRegressor or PretrainedFeatureExtractor
        The fitted estimator, predicting (or transforming) as the saved one did.

    Raises
    ------
    PersistenceError
        When a file is missing, a file's SHA-256 differs from the manifest's (modified or
        damaged), the format version is not this skadapt's, or a class the model needs cannot be
        imported (the message names it).

    Examples
    --------
    >>> import skadapt
    >>> try:
    ...     skadapt.load("no/such/folder")
    ... except skadapt.PersistenceError as error:
    ...     print(error)
    no/such/folder is not a folder: pass the folder skadapt.save wrote.
    """
    manifest = read_folder(path)
    folder = Path(path)
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PersistenceError(f"{folder / CONFIG} is not valid JSON ({error}): save the model "
                               "again.") from error
    kind = _kind_of(str(config.get("estimator")))
    if kind is None:
        raise PersistenceError(f"{folder / CONFIG} names the estimator {config.get('estimator')!r}, "
                               f"which this skadapt cannot load (it loads {', '.join(_KINDS)}).")
    if config["estimator"] == "Pipeline":
        return kind.rebuild(config, folder, lambda step: load(step, trusted=trusted), trusted)
    if WEIGHTS not in manifest["files"]:
        raise PersistenceError(f"{folder / MANIFEST} does not list {WEIGHTS}: the folder is "
                               "incomplete; save the model again.")
    try:
        return kind.rebuild(config, folder / WEIGHTS)
    except (KeyError, TypeError) as error:  # an entry missing, or a parameter this code lacks
        raise PersistenceError(
            f"{folder / CONFIG} does not describe a {config['estimator']} this skadapt can rebuild "
            f"({type(error).__name__}: {error}); it was saved by skadapt "
            f"{config.get('versions', {}).get('skadapt')!r}: load it with that version, or save "
            "the model again.") from error
