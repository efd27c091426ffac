"""Resuming an interrupted fit (``checkpoint_dir``, ``fit(..., resume=True)``).

The claim tested: on a CPU, a fit interrupted after any complete epoch and resumed ends with exactly
(bit for bit) the weights and losses of the uninterrupted fit with the same seed: with a warm-up and
cosine schedule, with staged unfreezing, and with early stopping that restores an epoch saved
before the interruption. Ctrl-C keeps the last complete epoch resumable and the estimator usable;
fits of other settings or data never share a checkpoint folder.
"""

import json
import os
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback
from torch import nn

import skadapt.cli._commands as commands
from skadapt import PretrainedFineTuner
from skadapt.cli import main
from skadapt.finetune._checkpoint import FORMAT, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Interrupted(Exception):
    """Stands for a killed job: nothing in skadapt or skorch catches it."""


class InterruptAt(Callback):
    """Raise ``error`` when epoch ``epoch`` (0-based) begins, or at its ``batch``-th training batch."""

    def __init__(self, epoch, batch=None, error=Interrupted):
        self.epoch = epoch
        self.batch = batch
        self.error = error

    def initialize(self):
        self.seen_ = 0
        return self

    def on_epoch_begin(self, net, **kwargs):
        if self.batch is None and len(net.history) - 1 == self.epoch:
            raise self.error()

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if self.batch is None or not training or len(net.history) - 1 != self.epoch:
            return
        self.seen_ += 1
        if self.seen_ == self.batch:
            raise self.error()


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 3))


def _data(n=240):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.where(X[:, 0] + rng.normal(size=n) > 0, "pos", "neg")
    return X, y


BASE = dict(freeze="none", max_epochs=6, batch_size=16, random_state=0, validation_fraction=None,
            lr=0.01, warmup=0.2)
SETTINGS = {
    "warmup-cosine": (dict(), 3),
    "staged": (dict(freeze="backbone", unfreeze_at=2, unfreeze_lr=0.005), 3),
    # 120 validation samples: early stopping is on; it stops after epoch 3 and restores epoch 2,
    # whose weights (and the misses, the threshold) come from the checkpoint of epoch 2
    "early-stopping": (dict(validation_fraction=0.5, patience=1, lr=0.1, lr_schedule="constant",
                            batch_size=8), 2),
}


def _same_weights(a, b) -> bool:
    left, right = a.module_.state_dict(), b.module_.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def _interrupted(tmp_path, params, at, X, y):
    clf = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path,
                              callbacks=[("interrupt", InterruptAt(at))], **params)
    with pytest.raises(Interrupted):
        clf.fit(X, y)
    return clf


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_a_resumed_fit_ends_exactly_as_an_uninterrupted_one(tmp_path, setting):
    extra, at = SETTINGS[setting]
    params = {**BASE, **extra}
    X, y = _data()
    reference = PretrainedFineTuner(_mlp(), **params).fit(X, y)
    interrupted = _interrupted(tmp_path, params, at, X, y)
    assert load_checkpoint(interrupted.checkpoint_path_)["epoch"] == at
    if setting != "early-stopping":  # there the reference ends on the weights of epoch 2
        assert not _same_weights(interrupted, reference)

    resumed = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **params).fit(X, y, resume=True)

    assert resumed.checkpoint_path_ == interrupted.checkpoint_path_
    # resumed, not trained again: the first epochs are the interrupted run's (their durations)
    assert resumed.history[:at, "dur"] == interrupted.history[:at, "dur"]
    assert _same_weights(resumed, reference)
    assert resumed.history[:, "train_loss"] == reference.history[:, "train_loss"]
    assert resumed.history[:, "lr"] == reference.history[:, "lr"]
    assert resumed.history[:, "n_trainable"] == reference.history[:, "n_trainable"]
    assert resumed.frozen_ == reference.frozen_
    assert resumed.validation_ == reference.validation_
    np.testing.assert_array_equal(resumed.predict_proba(X), reference.predict_proba(X))
    if setting == "early-stopping":
        assert reference.validation_["restored_best"]
        assert reference.validation_["epochs_run"] < params["max_epochs"]
        assert resumed.history[:, "valid_loss"] == reference.history[:, "valid_loss"]
        assert resumed.history[:, "valid_acc"] == reference.history[:, "valid_acc"]


def test_the_checkpoint_loads_without_unpickling_code_and_is_replaced_atomically(tmp_path):
    X, y = _data(60)
    clf = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **{**BASE, "max_epochs": 2}).fit(X, y)
    path = Path(clf.checkpoint_path_)
    assert path.is_relative_to(tmp_path) and path.is_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["format"] == FORMAT and state["epoch"] == 2
    assert {"module", "optimizer", "optimizer_groups", "frozen", "history", "callbacks",
            "rng"} <= state.keys()
    assert state["callbacks"]["fine_tuning"]["stage_step_"] == 2 * 4  # 60 samples, batches of 16
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_ctrl_c_keeps_the_last_complete_epoch_resumable_and_the_estimator_usable(tmp_path):
    X, y = _data()
    reference = PretrainedFineTuner(_mlp(), **BASE).fit(X, y)
    clf = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **BASE,
                              callbacks=[("ctrl_c", InterruptAt(3, batch=5, error=KeyboardInterrupt))])
    clf.fit(X, y)  # skorch stops training on KeyboardInterrupt, as for an interactive Ctrl-C
    assert len(clf.history) == 4  # three complete epochs and the one interrupted
    assert clf.predict(X[:5]).shape == (5,)
    assert load_checkpoint(clf.checkpoint_path_)["epoch"] == 3

    durations = clf.history[:3, "dur"]
    clf.set_params(callbacks=None).fit(X, y, resume=True)  # the same estimator goes on
    assert clf.history[:3, "dur"] == durations
    assert _same_weights(clf, reference)
    assert clf.history[:, "train_loss"] == reference.history[:, "train_loss"]


def test_resuming_a_finished_fit_trains_no_more(tmp_path):
    X, y = _data(60)
    params = {**BASE, "max_epochs": 2}
    first = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **params).fit(X, y)
    again = clone(first).fit(X, y, resume=True)
    assert len(again.history) == 2
    assert _same_weights(first, again)


def test_resume_without_a_checkpoint_fits_from_scratch_with_a_warning(tmp_path):
    X, y = _data(60)
    params = {**BASE, "max_epochs": 2}
    reference = PretrainedFineTuner(_mlp(), **params).fit(X, y)
    with pytest.warns(UserWarning, match="no checkpoint"):
        clf = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **params).fit(X, y, resume=True)
    assert _same_weights(clf, reference)
    assert Path(clf.checkpoint_path_).is_file()


def test_resume_needs_a_checkpoint_dir():
    X, y = _data(60)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        PretrainedFineTuner(_mlp(), **BASE).fit(X, y, resume=True)


def test_an_unreadable_checkpoint_is_a_clear_error(tmp_path):
    X, y = _data(60)
    params = {**BASE, "max_epochs": 1}
    clf = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **params).fit(X, y)
    Path(clf.checkpoint_path_).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        clone(clf).fit(X, y, resume=True)


def test_other_settings_or_data_never_share_a_folder(tmp_path):
    X, y = _data(60)
    params = {**BASE, "max_epochs": 1}

    def path(**changes):
        clf = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **{**params, **changes})
        return clf.fit(X, y).checkpoint_path_

    same = path()
    assert path() == same  # a resumed fit finds its own folder (no address, no time in the key)
    assert path(verbose=1) == same  # printing changes nothing computed
    assert path(lr=0.02) != same
    assert path(random_state=1) != same
    other_data = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **params).fit(X[:50], y[:50])
    assert other_data.checkpoint_path_ != same
    other_module = PretrainedFineTuner(nn.Sequential(nn.Linear(4, 3)), checkpoint_dir=tmp_path,
                                       **params).fit(X, y)
    assert other_module.checkpoint_path_ != same


def test_grid_search_in_parallel_writes_one_folder_per_fit(tmp_path):
    X, y = _data(60)
    search = GridSearchCV(
        PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **{**BASE, "max_epochs": 1}),
        {"lr": [0.01, 0.02]}, cv=2, n_jobs=2)
    search.fit(X, y)
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(folders) == 2 * 2 + 1  # every candidate on every fold, and the refit
    assert all(os.listdir(folder) == ["checkpoint.pt"] for folder in folders)


def test_the_cached_head_path_writes_no_checkpoint(tmp_path):
    X, y = _data(60)
    clf = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, freeze="backbone", max_epochs=2,
                              random_state=0).fit(X, y)
    assert clf.used_feature_cache_
    assert clf.checkpoint_path_ is None
    assert list(tmp_path.iterdir()) == []


def test_partial_fit_does_not_overwrite_the_fit_checkpoint(tmp_path):
    X, y = _data(60)
    clf = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **{**BASE, "max_epochs": 2}).fit(X, y)
    before = Path(clf.checkpoint_path_).read_bytes()
    clf.partial_fit(X, y)
    assert Path(clf.checkpoint_path_).read_bytes() == before


# --------------------------------------------------------------------------- the command line
CLI_NETS = '''
import torch
from torch import nn


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
'''


@pytest.mark.parametrize("holdout", ["0", "0.25"])  # fit on everything; fit inside the report
def test_skadapt_fit_resume_continues_an_interrupted_run(tmp_path, monkeypatch, holdout):
    X, y = _data(80)
    pd.DataFrame(X, columns=list("abcd")).assign(label=y).to_csv(tmp_path / "table.csv",
                                                                   index=False)
    (tmp_path / "cli_resume_nets.py").write_text(CLI_NETS)
    monkeypatch.chdir(tmp_path)
    common = ["fit", "table.csv", "--model", "cli_resume_nets.py:mlp", "--weights", "none",
              "--freeze", "none", "--epochs", "4", "--holdout", holdout, "--quiet",
              "--batch-size", "16", "--validation-fraction", "none"]
    assert main([*common, "--out", "reference.joblib"]) == 0

    assert main([*common, "--resume", "--out", "x.joblib"]) == 1  # needs --checkpoint-dir
    with_dir = [*common, "--checkpoint-dir", "checkpoints"]
    monkeypatch.setattr(commands, "_progress_callbacks",
                        lambda quiet: [("interrupt", InterruptAt(2))])
    with pytest.raises(Interrupted):
        main([*with_dir, "--out", "resumed.joblib"])
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    [checkpoint] = Path("checkpoints").glob("*/checkpoint.pt")
    saved = load_checkpoint(checkpoint)
    assert saved["epoch"] == 2
    assert main([*with_dir, "--resume", "--out", "resumed.joblib"]) == 0

    reference, resumed = joblib.load("reference.joblib"), joblib.load("resumed.joblib")
    assert len(resumed.history) == 4
    # the first two epochs are those of the interrupted run (their durations), not trained again
    assert resumed.history[:2, "dur"] == [row["dur"] for row in json.loads(saved["history"])]
    assert _same_weights(resumed, reference)


def test_the_folder_key_holds_no_memory_address():
    from skadapt.finetune._checkpoint import _stable_repr

    def augment(x):
        return x

    other = lambda x: x * 2  # noqa: E731
    assert " at 0x" not in _stable_repr(augment)
    assert _stable_repr(augment) != _stable_repr(other)
    assert _stable_repr(nn.Linear(2, 2)) != _stable_repr(nn.Linear(2, 2))  # other weights


def test_the_regressor_resumes_exactly_too(tmp_path):
    from skadapt import PretrainedFineTunerRegressor

    X, _ = _data(120)
    y = X @ np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)
    params = {**BASE, "validation_fraction": 0.25}

    def regressor(**extra):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        return PretrainedFineTunerRegressor(net, **params, **extra)

    reference = regressor().fit(X, y)
    with pytest.raises(Interrupted):
        regressor(checkpoint_dir=tmp_path, callbacks=[("stop", InterruptAt(4))]).fit(X, y)
    resumed = regressor(checkpoint_dir=tmp_path).fit(X, y, resume=True)
    assert _same_weights(resumed, reference)
    assert resumed.history[:, "valid_loss"] == reference.history[:, "valid_loss"]
