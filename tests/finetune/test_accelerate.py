"""Tests of skadapt/finetune/_accelerate.py: one fit over several processes (Hugging Face Accelerate).

The data-parallel test launches ``_accelerate_script.py`` in two CPU processes (gloo) with
``torch.distributed.run`` and compares what they fitted with one process fitting the same global
batch. The others run in this process (one process; an accelerator that claims two processes for
the checks that refuse what a data-parallel fit cannot do).
"""

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation
from torch import nn

accelerate = pytest.importorskip(
    "accelerate", reason="accelerate is not installed: pip install skadapt[accelerate]")

from accelerate import Accelerator  # noqa: E402
from accelerate.data_loader import BatchSamplerShard  # noqa: E402

from skadapt import (  # noqa: E402
    AcceleratedFineTuner,
    AcceleratedFineTunerRegressor,
    PretrainedFineTuner,
)
from tests.finetune import _accelerate_script as script  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class TwoProcessAccelerator(Accelerator):
    """A one-process accelerator that reports two processes: what fit refuses under several."""

    @property
    def num_processes(self):
        return 2


def _mlp(n_out: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, n_out))


def _data(n: int = 40):
    X = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- several processes
@pytest.mark.slow
def test_two_processes_fit_what_one_process_fits_on_the_global_batch(tmp_path):
    out = tmp_path / "two_processes.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               str(Path(script.__file__)), str(out)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    fitted = torch.load(out, weights_only=False)
    assert fitted["num_processes"] == 2
    # without random_state, every process holds out the main process's validation split
    first, second = fitted["validation_splits"]
    assert len(first) == 48 and first == second

    global_batch = script.BATCH * 2
    # the plain fine-tuner, no accelerate at all: batches in order, then partial_fit
    ordered = script.fit_case("ordered", global_batch)
    references = {"ordered": script.result(ordered),
                  "continued": script.result(ordered.partial_fit(*script.task())),
                  # shuffled: one process of the accelerated fine-tuner draws the same order
                  "shuffled": script.result(
                      script.fit_case("shuffled", global_batch, Accelerator(cpu=True)))}
    for case, expected in references.items():
        got = fitted[case]
        for name, weights in expected["state"].items():
            np.testing.assert_allclose(got["state"][name], weights, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{case}: {name}")
        # the staged unfreezing thawed the backbone at epoch 2 in both
        assert got["n_trainable"] == expected["n_trainable"]
        assert got["n_trainable"][1] < got["n_trainable"][2]
        np.testing.assert_allclose(got["lr"], expected["lr"], rtol=1e-6)
        for key in ("train_loss", "valid_loss"):
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=f"{case}: {key}")
        np.testing.assert_allclose(got["proba"], expected["proba"], atol=1e-5)


# --------------------------------------------------------------------------- one process
def test_one_process_fits_what_the_plain_fine_tuner_fits():
    X, y = _data()
    params = dict(freeze=1, unfreeze_at=1, max_epochs=3, batch_size=8, lr=0.05,
                  validation_fraction=0.25, patience=None, random_state=0,
                  iterator_train__shuffle=False)
    plain = PretrainedFineTuner(_mlp(), device="cpu", **params).fit(X, y)
    accelerated = AcceleratedFineTuner(_mlp(), accelerator=Accelerator(cpu=True), **params).fit(X, y)
    for name, weights in plain.module_.state_dict().items():
        torch.testing.assert_close(accelerated.module_.state_dict()[name], weights)
    for key in ("train_loss", "valid_loss", "valid_acc", "lr", "n_trainable"):
        assert accelerated.history[:, key] == pytest.approx(plain.history[:, key])
    assert accelerated.training_path_.startswith("full network")
    assert type(accelerated.module_) is nn.Sequential  # unwrapped after fit
    np.testing.assert_allclose(accelerated.predict_proba(X), plain.predict_proba(X), atol=1e-6)


def test_the_accelerators_gradient_accumulation_is_the_fine_tuners():
    """Accelerator(gradient_accumulation_steps=2) steps on the mean gradient of two batches, at the
    rates of the fine-tuner's own accumulate_grad_batches=2 (skorch zeroes the gradients before
    every batch, which would keep only each group's last batch)."""
    X, y = _data(32)
    params = dict(freeze="none", max_epochs=2, batch_size=4, lr=0.05, validation_fraction=None,
                  random_state=0, iterator_train__shuffle=False)
    plain = PretrainedFineTuner(_mlp(), device="cpu", accumulate_grad_batches=2, **params).fit(X, y)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    accelerated = AcceleratedFineTuner(_mlp(), accelerator=accelerator, **params).fit(X, y)
    assert accelerated.history[:, "lr"] == pytest.approx(plain.history[:, "lr"])
    np.testing.assert_allclose(accelerated.predict_proba(X), plain.predict_proba(X), atol=1e-6)


def test_the_regressor_fits_and_predicts_in_one_process():
    X, _ = _data()
    reg = AcceleratedFineTunerRegressor(_mlp(1), accelerator=Accelerator(cpu=True), freeze="none",
                                        max_epochs=2, batch_size=8, random_state=0)
    assert reg.fit(X, X.sum(axis=1)).predict(X[:5]).shape == (5,)


def test_clone_and_get_params_keep_the_accelerator_and_only_parameters():
    clf = AcceleratedFineTuner(_mlp(), accelerator=Accelerator(cpu=True), freeze="none",
                               max_epochs=1, batch_size=8, random_state=0)
    params = clf.get_params(deep=False)
    assert params["device"] is None and params["unwrap_after_train"] is True
    assert "_wrapped_with_accelerator" not in params
    clf.fit(*_data())
    assert clf.get_params(deep=False)["callbacks__print_log__sink"] == "auto"  # not replaced by fit
    copy = clone(clf)
    assert isinstance(copy.accelerator, Accelerator)
    assert copy.fit(*_data()).predict(_data()[0][:3]).shape == (3,)


def test_warm_start_continues_after_the_network_was_unwrapped():
    X, y = _data()
    clf = AcceleratedFineTuner(_mlp(), accelerator=Accelerator(cpu=True), freeze="none",
                               max_epochs=2, batch_size=8, random_state=0).fit(X, y)
    before = clf.history[-1, "train_loss"]
    clf.partial_fit(X, y)
    assert len(clf.history) == 4 and clf.history[-1, "train_loss"] < before


def test_prints_only_when_verbose(capsys):
    X, y = _data()
    params = dict(freeze="none", max_epochs=1, batch_size=8, random_state=0)
    AcceleratedFineTuner(_mlp(), accelerator=Accelerator(cpu=True), **params).fit(X, y)
    assert capsys.readouterr().out == ""
    AcceleratedFineTuner(_mlp(), accelerator=Accelerator(cpu=True), verbose=1, **params).fit(X, y)
    assert "train_loss" in capsys.readouterr().out


@pytest.mark.parametrize("n_samples, batch_size", [(48, 4), (50, 4), (7, 4), (9, 1), (12, -1)])
def test_the_schedule_counts_the_batches_each_process_runs(n_samples, batch_size):
    """As many as accelerate's shard of the batches gives each of two processes."""
    clf = AcceleratedFineTuner(_mlp(), accelerator=TwoProcessAccelerator(cpu=True),
                               batch_size=batch_size)
    size = n_samples if batch_size == -1 else batch_size
    batches = torch.utils.data.BatchSampler(range(n_samples), size, drop_last=False)
    shards = [len(BatchSamplerShard(batches, num_processes=2, process_index=i)) for i in (0, 1)]
    assert clf._batches_in_epoch(n_samples) == shards[0] == shards[1]


# --------------------------------------------------------------------------- refused
def test_several_processes_refuse_the_cached_head_path():
    clf = AcceleratedFineTuner(_mlp(), accelerator=TwoProcessAccelerator(cpu=True), max_epochs=1)
    with pytest.raises(ValueError, match="feature_cache=False"):
        clf.fit(*_data())


@pytest.mark.parametrize("params, match", [
    ({"checkpoint_dir": "ckpt"}, "checkpoint_dir is not supported"),
    ({"precision": "bf16-mixed"}, "mixed_precision="),
    ({"accumulate_grad_batches": 2}, "gradient_accumulation_steps="),
    ({"device": "cpu"}, "pass device=None"),
])
def test_what_a_data_parallel_fit_refuses_is_named_with_the_way_out(params, match):
    clf = AcceleratedFineTuner(_mlp(), accelerator=TwoProcessAccelerator(cpu=True),
                               freeze="none", max_epochs=1, **params)
    with pytest.raises(ValueError, match=match):
        clf.fit(*_data())


@pytest.mark.parametrize("cls", [AcceleratedFineTuner, AcceleratedFineTunerRegressor])
def test_every_parameter_is_validated_the_sklearn_way(cls):
    check_param_validation(cls.__name__, cls(_mlp(), accelerator=Accelerator(cpu=True)))


def test_the_accelerator_is_validated():
    clf = AcceleratedFineTuner(_mlp(), accelerator="cpu", freeze="none", max_epochs=1)
    with pytest.raises(InvalidParameterError, match="accelerator"):
        clf.fit(*_data())
