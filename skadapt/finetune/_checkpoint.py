"""Resuming an interrupted fit: one checkpoint file per fit, rewritten atomically after every epoch.

With ``checkpoint_dir`` set, the :class:`EpochCheckpoint` callback writes, at the end of every
complete epoch, everything a resumed run needs to go on exactly as the uninterrupted one would:

- the network's weights and the optimizer's state (its parameter groups by parameter name, with
  their base rates, and e.g. AdamW's moments); with ``precision="16-mixed"``, the gradient
  scaler's state (its current scale and growth counter) beside it;
- the frozen parameters (the unfreezing stage) and the schedule's position within its stage;
- skorch's history (so the schedule, which reads the epoch off ``len(history)``, and the scores'
  ``*_best`` flags continue), the scoring callbacks' best scores;
- the early-stopping state (misses, threshold, best epoch and its weights);
- the random number generators' states (torch, CUDA, NumPy's and Python's global ones).

The file is written to a temporary file in the same folder and moved over the old one with
``os.replace``, so an interruption at any moment (a killed job, Ctrl-C) leaves the last complete
epoch's file intact. It holds only tensors, numbers, strings, lists and dicts (the history as JSON
text) so that ``torch.load(weights_only=True)`` reads it: resuming executes no pickled code.

An epoch after which early stopping ends the fit is not saved (skorch stops by raising
``KeyboardInterrupt`` before the later callbacks run): a resumed fit trains that epoch again, with
the same random state, and stops in the same place. ``partial_fit``, a ``warm_start`` fit that
continues an initialized network and the cached-head path (``used_feature_cache_``; the convex
head has no epochs) write no checkpoint.

Each fit writes into its own subfolder of ``checkpoint_dir``, named by a fingerprint of the
estimator's parameters and of the training data (:func:`checkpoint_key`): fits of different
settings or folds (``GridSearchCV(n_jobs=2)``) never share a folder, and a resumed fit with the
same parameters and data finds its own.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping
from skorch.history import History

from skadapt.finetune._adapters import Inputs
from skadapt.finetune._fingerprint import _hasher, fingerprint, module_fingerprint, sample_keys
from skadapt.finetune._schedule import FineTuningSchedule

__all__ = ["EpochCheckpoint", "checkpoint_key", "load_checkpoint"]

FORMAT = "skadapt-resume-v1"
FILE_NAME = "checkpoint.pt"
# Parameters that do not change what the fit computes: a resumed run may change them.
_IGNORED_PARAMS = {"callbacks", "verbose", "checkpoint_dir", "device", "cache_dir"}


# --------------------------------------------------------------------------- where
def checkpoint_key(estimator, inputs: Inputs, y, weights) -> str:
    """A fingerprint of ``estimator``'s parameters and of the training data (samples, targets,
    weights): the name of the fit's subfolder of ``checkpoint_dir``."""
    params = estimator.get_params(deep=False)
    described = [f"{name}={_stable_repr(value)}" for name, value in sorted(params.items())
                 if name not in _IGNORED_PARAMS and not name.startswith("callbacks__")]
    data = _hasher()
    for key in sample_keys(inputs, "checkpoint"):
        data.update(key.encode())
    for array in (y, weights):
        if array is not None:
            array = np.ascontiguousarray(array)
            data.update(f"{array.dtype.str}{array.shape}|".encode())
            data.update(array.tobytes())
    return fingerprint(type(estimator).__qualname__, *described, data.hexdigest())


def _stable_repr(value) -> str:
    """The same text for the same value in every process (no memory addresses)."""
    if isinstance(value, torch.nn.Module):
        return f"module:{module_fingerprint(value)}"
    if isinstance(value, np.ndarray):
        return f"array:{value.dtype.str}{value.shape}:{value.tobytes().hex()}"
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
        code = getattr(value, "__code__", None)  # two lambdas of a module differ by their code
        digest = "" if code is None else ":" + fingerprint(code.co_code.hex(),
                                                           repr(code.co_consts))
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}{digest}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def checkpoint_file(checkpoint_dir, key: str) -> Path:
    return Path(checkpoint_dir) / key[:24] / FILE_NAME


# --------------------------------------------------------------------------- reading
def load_checkpoint(path) -> dict | None:
    """The state saved at ``path`` (None when there is no file), read without unpickling code."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"the checkpoint {path} cannot be read ({error}): delete it to start "
                         "again from scratch.") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a skadapt checkpoint of format {FORMAT!r}: delete it to "
                         "start again from scratch.")
    return state


def _write_atomically(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# --------------------------------------------------------------------------- the callback
class EpochCheckpoint(Callback):
    """Write the fit's state after every complete epoch; restore it when a fit resumes.

    The estimator arms it for one fit (:meth:`arm`) with the file to write and, when resuming, the
    state read from it; otherwise (no ``checkpoint_dir``, ``partial_fit``, the cached-head path)
    it does nothing.
    """

    def initialize(self):
        self.path_ = None
        self.pending_ = None
        self.pending_rng_ = None
        return self

    def arm(self, net, path, state=None) -> None:
        """Checkpoint this fit to ``path``; with ``state``, restore the network's own state now
        (weights, frozen parameters, optimizer, history: before the other callbacks read them in
        ``on_train_begin``), the callbacks' state in ``on_train_begin`` and the random number
        generators just before the first resumed epoch draws from them."""
        self.path_ = None if path is None else Path(path)
        self.pending_ = self.pending_rng_ = None
        if state is None:
            return
        net.module_.load_state_dict(state["module"])
        net.set_frozen(set(state["frozen"]))
        named = dict(net.module_.named_parameters())
        groups = [{"params": [named[name] for name in names], "name": group_name}
                  for group_name, names in state["optimizer_groups"]]
        kwargs = net.get_params_for("optimizer")
        kwargs.pop("lr", None)  # as initialize_optimizer built it: the same defaults
        net.optimizer_ = net.optimizer(groups, lr=net.optimizer_.defaults["lr"], **kwargs)
        net.optimizer_.load_state_dict(state["optimizer"])
        scaler = getattr(net, "grad_scaler_", None)
        if scaler is not None and state.get("grad_scaler") is not None:
            scaler.load_state_dict(state["grad_scaler"])
        net.history_ = History(json.loads(state["history"]))
        self.pending_ = state["callbacks"]
        self.pending_rng_ = state["rng"]

    def disarm(self) -> None:
        self.path_ = self.pending_ = self.pending_rng_ = None

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        if self.pending_ is None:
            return
        callbacks = dict(net.callbacks_)
        for name, saved in self.pending_.items():
            callback = callbacks.get(name)
            if callback is not None:
                _restore_callback(callback, saved)
        self.pending_ = None

    def on_epoch_begin(self, net, **kwargs):
        if self.pending_rng_ is not None:
            _set_rng_state(self.pending_rng_)
            self.pending_rng_ = None

    def on_epoch_end(self, net, **kwargs):
        if self.path_ is None:
            return
        _write_atomically(self.state_of(net), self.path_)

    def state_of(self, net) -> dict:
        """Everything a resumed run needs, as tensors, numbers, strings, lists and dicts."""
        names = {id(param): name for name, param in net.module_.named_parameters()}
        scaler = getattr(net, "grad_scaler_", None)
        return {
            "format": FORMAT,
            "epoch": len(net.history),
            "module": net.module_.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "optimizer_groups": [[group.get("name"), [names[id(p)] for p in group["params"]]]
                                 for group in net.optimizer_.param_groups],
            "grad_scaler": None if scaler is None else scaler.state_dict(),
            "frozen": sorted(net.frozen_),
            "history": json.dumps(net.history.to_list(), default=_json_default),
            "callbacks": {name: saved for name, callback in net.callbacks_
                          if (saved := _callback_state(callback)) is not None},
            "rng": _rng_state(),
        }


# --------------------------------------------------------------------------- callbacks' state
def _callback_state(callback) -> dict | None:
    state = {}
    if isinstance(callback, FineTuningSchedule):
        state["stage_step_"] = int(callback.stage_step_)
        state["steps_per_epoch_"] = callback.steps_per_epoch_
    if isinstance(callback, EarlyStopping) and hasattr(callback, "misses_"):
        weights = getattr(callback, "best_model_weights_", None)
        state.update(misses_=int(callback.misses_),
                     dynamic_threshold_=float(callback.dynamic_threshold_),
                     best_epoch_=int(callback.best_epoch_),
                     best_model_weights_=None if weights is None else dict(weights))
    if getattr(callback, "best_score_", None) is not None:
        state["best_score_"] = float(callback.best_score_)
    return state or None


def _restore_callback(callback, saved: dict) -> None:
    for name, value in saved.items():
        setattr(callback, name, value)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"cannot save {type(value).__name__} in the history of a checkpoint")


# --------------------------------------------------------------------------- random states
def _rng_state() -> dict:
    # the legacy global generators are what a user's own augmentation may draw from
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    version, internal, python_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss": python_gauss},
    }
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state["cuda"]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    numpy = state["numpy"]
    legacy = (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
              numpy["has_gauss"], numpy["gauss"])
    np.random.set_state(legacy)  # noqa: NPY002
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
