"""What is saved of a fitted fine-tuner, and how it is rebuilt without pickle.

Saved (``config.json``): the estimator's class, its constructor parameters (``model`` as a
torchvision or timm name, or the import path of your own module class), the fitted state that
``predict`` needs (``classes_`` with their dtype, ``n_features_in_``, ``input_kind_``, ``frozen_``,
the training path and head solver, the regressor's ``n_outputs_``/``y_ndim_``), the history, and
the network's preprocessing. The weights are the ``module_`` state dict (``weights.safetensors``).

Rebuilt: the estimator from its parameters, its network built as an architecture only
(``weights=None``: nothing is downloaded or read from a checkpoint), the saved preprocessing put
back (pretrained weights may have their own resize and normalization), then the saved state
dict loaded into it on the CPU and copied to the estimator's device.
"""

from __future__ import annotations

import dataclasses
import platform
import warnings
from os import PathLike, fspath
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import sklearn
import skorch
import torch
from skorch.history import History
from torch import nn
from torch.utils.data import DataLoader, Dataset

import skadapt
from skadapt.finetune import PretrainedFineTuner, PretrainedFineTunerRegressor
from skadapt.finetune._validation import ValidationPlan
from skadapt.networks import Preprocessing, source_of
from skadapt.persistence._errors import PersistenceError
from skadapt.persistence._huggingface import HF_SOURCES, architecture
from skadapt.persistence._values import decode, encode, import_class, import_path

__all__ = ["ESTIMATORS", "decode_params", "decode_preprocessing", "describe", "encode_params",
           "encode_preprocessing", "load_weights", "rebuild", "weights_module", "write_weights"]

ESTIMATORS = {cls.__name__: cls for cls in (PretrainedFineTuner, PretrainedFineTunerRegressor)}
# models referenced by their name (a Hugging Face model's configuration is saved beside it)
_NAMED_SOURCES = {"torchvision", "timm", *HF_SOURCES}
# the class each class-valued parameter must subclass when loading
_PARAMETER_BASES = {"model": nn.Module, "criterion": nn.Module,
                    "optimizer": torch.optim.Optimizer, "iterator_train": DataLoader,
                    "iterator_valid": DataLoader, "dataset": Dataset}
_FITTED = ("n_features_in_", "input_kind_", "training_path_", "used_feature_cache_",
           "head_solver_", "head_solution_", "validation_")
_REGRESSOR_FITTED = ("n_outputs_", "y_ndim_")


def versions() -> dict:
    """The versions of the libraries a saved model depends on."""
    return {"skadapt": skadapt.__version__, "torch": torch.__version__,
            "scikit-learn": sklearn.__version__, "skorch": skorch.__version__,
            "numpy": np.__version__, "safetensors": safetensors.__version__,
            "python": platform.python_version()}


# ----------------------------------------------------------------- saving
def describe(estimator) -> dict:
    """``config.json``'s content for a fitted fine-tuner (refusing what it cannot represent)."""
    name = type(estimator).__name__
    params = estimator.get_params(deep=False)
    _refuse_unrepresentable(params)
    encoded = encode_params(params)
    fitted = {key: encode(getattr(estimator, key), f"attribute {key}")
              for key in _FITTED + (_REGRESSOR_FITTED if name.endswith("Regressor") else ())}
    if hasattr(estimator, "classes_"):
        fitted["classes_"] = encode(np.asarray(estimator.classes_), "attribute classes_")
    fitted["frozen_"] = sorted(estimator.frozen_)
    fitted["validation_plan_"] = encode(dataclasses.asdict(estimator.validation_plan_),
                                        "attribute validation_plan_")
    network = estimator.network_
    try:
        history = encode(list(estimator.history_), "history_")
    except PersistenceError:  # a callback recorded something that is not JSON: keep the rest
        history = None
    return {
        "estimator": name,
        "versions": versions(),
        "params": encoded,
        "fitted": fitted,
        "history": history,
        "network": {"source": network.source,
                    "preprocessing": encode_preprocessing(network.preprocessing)},
    }


def weights_module(estimator) -> nn.Module:
    """The module whose state dict is ``weights.safetensors``."""
    return estimator.module_


def write_weights(module: nn.Module, path: Path) -> None:
    """A state dict as safetensors (shared tensors once; GPU tensors via the CPU)."""
    safetensors.torch.save_model(module, str(path))


def load_weights(module: nn.Module, path: Path) -> None:
    """Load ``path`` into ``module`` (read on the CPU, copied to the module's device)."""
    try:
        safetensors.torch.load_model(module, str(path), strict=True, device="cpu")
    except (RuntimeError, safetensors.SafetensorError) as error:
        raise PersistenceError(f"{path} does not fit the network rebuilt from config.json "
                               f"({error}): the model's code changed since saving; use the code "
                               "it was saved with.") from error


def encode_params(params: dict) -> dict:
    """Constructor parameters as JSON-ready data, ``model`` included."""
    classes = [key for key, value in params.items()
               if isinstance(value, type) and key not in _PARAMETER_BASES]
    if classes:
        raise PersistenceError(f"parameter {classes[0]} is a class: the safe format names classes "
                               f"only for {', '.join(_PARAMETER_BASES)}; pass another value.")
    encoded = {key: encode(value, f"parameter {key}") for key, value in params.items()
               if key != "model"}
    encoded["model"] = _encode_model(params["model"])
    return encoded


def decode_params(encoded: dict) -> dict:
    """The constructor parameters ``encode_params`` gave ``encoded`` for."""
    params = {key: decode(value, f"parameter {key}", _PARAMETER_BASES.get(key))
              for key, value in encoded.items() if key != "model"}
    if params.get("callbacks") not in (None, []):
        raise PersistenceError("parameter callbacks: a saved model holds no callbacks (they are "
                               "code); this config.json was not written by skadapt.save.")
    params["model"] = _decode_model(encoded["model"])
    device = params.get("device")
    if (isinstance(device, str) and device.startswith("cuda")
            and not torch.cuda.is_available()):  # as skorch does when unpickling
        warnings.warn(f"the model was saved with device={device!r}, but CUDA is not available "
                      "here: loading it on the CPU (device='cpu').", UserWarning, stacklevel=4)
        params["device"] = "cpu"
    return params


def encode_preprocessing(preprocessing: Preprocessing | None):
    return None if preprocessing is None else encode(dataclasses.asdict(preprocessing),
                                                     "network preprocessing")


def decode_preprocessing(data) -> Preprocessing | None:
    return None if data is None else Preprocessing(**decode(data, "network preprocessing"))


def _refuse_unrepresentable(params: dict) -> None:
    if params.get("callbacks") not in (None, []):
        raise PersistenceError(
            "parameter callbacks: callbacks are code, which the safe format does not store. Save "
            "an estimator without callbacks (est.set_params(callbacks=None) after fitting), or "
            "persist it with joblib.")
    criterion = params.get("criterion")
    if criterion is not None and not isinstance(criterion, type):
        raise PersistenceError(
            f"parameter criterion={criterion!r} is an instance: the safe format stores a criterion "
            "class (importable by name, with its options as criterion__<name>=...), or None.")
    if callable(params.get("augment")):
        raise PersistenceError(
            "parameter augment is a callable: the safe format cannot store code. Augmentation "
            "only acts during fit: set augment='auto' (or False) before saving.")


def _encode_model(model):
    source = source_of(model)
    if source is not None and source.name in _NAMED_SOURCES and isinstance(model, (str, PathLike)):
        return fspath(model)
    if source is not None and source.name == "module":
        if isinstance(model, type):
            path = import_path(model, "parameter model")
            _check_rebuildable(model, None)
            return {"$class": path}
        path = import_path(type(model), "parameter model")
        _check_rebuildable(type(model), model)
        return {"$module_instance": path}
    kind = source.name if source is not None else type(model).__name__
    raise PersistenceError(
        f"saving a model of kind {kind!r} ({model!r:.80}) is not implemented yet: skadapt.save "
        "handles torchvision, timm and Hugging Face names and folders and your own nn.Module "
        "classes. Persist it with joblib for now.")


def _check_rebuildable(cls: type, instance: nn.Module | None) -> None:
    """Loading builds ``cls()``: it must build, without lazy layers, with ``instance``'s structure."""
    what = f"parameter model ({cls.__qualname__})"
    try:
        built = cls()
    except Exception as error:
        raise PersistenceError(f"{what}: loading rebuilds the network as {cls.__qualname__}() with "
                               f"no arguments, which fails ({error}). Give the class defaults "
                               "for its arguments.") from error
    if any(nn.parameter.is_lazy(p) for p in built.parameters()):
        raise PersistenceError(f"{what} has lazy layers (nn.LazyLinear...), which the safe format "
                               "cannot rebuild yet: give them explicit sizes.")
    if instance is not None:
        shapes = {key: tuple(value.shape) for key, value in built.state_dict().items()}
        wanted = {key: tuple(value.shape) for key, value in instance.state_dict().items()}
        if shapes != wanted:
            raise PersistenceError(
                f"{what}: model is an instance whose structure differs from "
                f"{cls.__qualname__}() (built with no arguments), which is what loading rebuilds. "
                "Pass a module class whose no-argument constructor builds this network.")


# ----------------------------------------------------------------- loading
def rebuild(config: dict, weights: Path):
    """The fitted estimator described by ``config``, with the state dict in ``weights``."""
    name = config.get("estimator")
    if name not in ESTIMATORS:
        raise PersistenceError(f"config.json names the estimator {name!r}, which this skadapt "
                               f"cannot load (it loads {sorted(ESTIMATORS)}).")
    estimator = ESTIMATORS[name](**decode_params(config["params"]))
    fitted = config["fitted"]
    unknown = set(fitted) - {*_FITTED, *_REGRESSOR_FITTED, "classes_", "frozen_",
                             "validation_plan_"}
    if unknown:
        raise PersistenceError(f"config.json records fitted attributes {sorted(unknown)} that a "
                               f"{name} does not have: save the model again.")
    for key, value in fitted.items():
        if key not in ("frozen_", "validation_plan_"):
            setattr(estimator, key, decode(value, f"attribute {key}"))
    estimator.validation_plan_ = ValidationPlan(**decode(fitted["validation_plan_"],
                                                         "attribute validation_plan_"))
    pretrained = estimator.weights
    estimator.weights = None  # the architecture only: the saved state dict replaces its weights
    try:
        with architecture(config, weights.parent, estimator.model):
            estimator.initialize()
    finally:
        estimator.weights = pretrained
    estimator.network_.preprocessing = decode_preprocessing(config["network"]["preprocessing"])
    load_weights(estimator.module_, weights)
    estimator.set_frozen(set(fitted["frozen_"]))
    if config.get("history") is not None:
        estimator.history_ = History(decode(config["history"], "history"))
    return estimator


def _decode_model(data):
    if isinstance(data, dict) and "$module_instance" in data:
        return import_class(data["$module_instance"], "parameter model", nn.Module)()
    return decode(data, "parameter model", nn.Module)
