"""GPU-ready training, tested on the CPU: ``precision``, ``accumulate_grad_batches``,
``channels_last`` and ``compile`` (``_precision.py``, ``_training_step.py``, ``_estimator.py``).

What needs a GPU (speed, float16 on CUDA, pinned copies) is measured by ``benchmarks/bench_gpu.py``.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError
from skorch import NeuralNet
from skorch.callbacks import Callback
from torch import nn

import skadapt
from skadapt import PretrainedFineTuner, PretrainedFineTunerRegressor
from skadapt.finetune._adapters import Inputs
from skadapt.finetune._checkpoint import load_checkpoint
from skadapt.finetune._precision import autocast_for, resolve_precision
from tests.finetune.conftest import TinyCNN, color_task
from tests.finetune.test_checkpoint import InterruptAt, Interrupted

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = dict(freeze="none", random_state=0, validation_fraction=None)


def _mlp(n_out=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, n_out))


def _data(n=64):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=n) > 0, "pos", "neg")
    return X, y


def _weights(est):
    return {k: v.detach().clone() for k, v in est.module_.state_dict().items()}


def _close(a, b, **tolerance) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], **tolerance) for k in a)


class CountSteps(Callback):
    """Count optimizer steps (skorch notifies ``on_grad_computed`` once before each)."""

    def initialize(self):
        self.steps_ = 0
        return self

    def on_grad_computed(self, net, named_parameters, **kwargs):
        self.steps_ += 1


class OutputDtype(Callback):
    """Record the dtype of the first layer's output in the training forward passes."""

    def on_train_begin(self, net, **kwargs):
        self.dtypes_ = set()
        first = next(m for m in net.module_.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
        first.register_forward_hook(lambda module, args, out: self.dtypes_.add(out.dtype))


# ----------------------------------------------------------------- gradient accumulation
@pytest.mark.parametrize("n", [72, 64])  # 72: 3 full groups; 64: the last group has 2 batches
def test_k_accumulated_batches_step_as_one_batch_k_times_bigger(n):
    """No batch norm, no dropout: 3 batches of 8 accumulated = one batch of 24, to float rounding,
    under the default warm-up and cosine schedule (which counts optimizer steps in both)."""
    X, y = _data(n)
    params = dict(BASE, max_epochs=3, lr=0.01)
    accumulated = PretrainedFineTuner(_mlp(), batch_size=8, accumulate_grad_batches=3,
                                      **params).fit(X, y)
    big = PretrainedFineTuner(_mlp(), batch_size=24, **params).fit(X, y)
    plain = PretrainedFineTuner(_mlp(), batch_size=8, **params).fit(X, y)

    assert _close(_weights(accumulated), _weights(big), rtol=1e-4, atol=1e-6)
    assert not _close(_weights(plain), _weights(big), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(accumulated.history[:, "lr"], big.history[:, "lr"], rtol=1e-12)
    np.testing.assert_allclose(accumulated.predict_proba(X), big.predict_proba(X), atol=1e-5)


def test_the_optimizer_steps_once_per_group_and_on_the_partial_last_group():
    X, y = _data(64)  # 8 batches of 8 per epoch: groups of 3, 3 and 2 batches
    counter = CountSteps()
    clf = PretrainedFineTuner(_mlp(), batch_size=8, accumulate_grad_batches=3, max_epochs=2,
                              callbacks=[("count", counter)], **BASE).fit(X, y)
    plain = PretrainedFineTuner(_mlp(), batch_size=8, max_epochs=1, **BASE).fit(X, y)
    assert counter.steps_ == 2 * 3
    assert dict(clf.callbacks_)["fine_tuning"].stage_step_ == 2 * 3  # the schedule's steps
    # the loss recorded per batch is the batch's own, not its share of the step: the first batch
    # (same weights, same shuffle) has the same loss as without accumulation
    assert len(clf.history[0, "batches"]) == 8
    assert clf.history[0, "batches", 0, "train_loss"] == plain.history[0, "batches", 0,
                                                                       "train_loss"]


def test_the_default_step_is_skorchs_and_changes_no_result(monkeypatch):
    """precision="auto" on the CPU is float32 through skorch's own step (with its closure, which
    LBFGS needs): bit-identical to precision="32"."""
    X, y = _data()
    skorch_steps = []
    skorch_step = NeuralNet.train_step

    def recording(self, batch, **fit_params):
        skorch_steps.append(self.accumulate_grad_batches)
        return skorch_step(self, batch, **fit_params)

    monkeypatch.setattr(NeuralNet, "train_step", recording)
    auto = PretrainedFineTuner(_mlp(), batch_size=8, max_epochs=2, **BASE).fit(X, y)
    assert skorch_steps == [1] * 16
    PretrainedFineTuner(_mlp(), batch_size=8, max_epochs=1, accumulate_grad_batches=2,
                        **BASE).fit(X, y)
    assert len(skorch_steps) == 16  # accumulation takes its own path
    explicit = PretrainedFineTuner(_mlp(), batch_size=8, max_epochs=2, precision="32",
                                   **BASE).fit(X, y)
    assert auto.precision_ == "32" and auto.grad_scaler_ is None
    assert _close(_weights(auto), _weights(explicit), rtol=0, atol=0)


# ----------------------------------------------------------------- precision
def test_precision_auto_is_bf16_on_cuda_and_float32_elsewhere():
    assert resolve_precision("auto", torch.device("cuda")) == "bf16-mixed"
    assert resolve_precision("auto", torch.device("cpu")) == "32"
    assert resolve_precision("auto", torch.device("mps")) == "32"
    assert resolve_precision("16-mixed", torch.device("cpu")) == "16-mixed"
    with autocast_for(torch.device("cpu"), "bf16-mixed"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with autocast_for(torch.device("cpu"), "32"):
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_mixed_trains_and_predicts_on_the_cpu_close_to_float32():
    X, y = _data(96)
    params = dict(BASE, batch_size=16, max_epochs=3, lr=0.01)
    dtype = OutputDtype()
    bf16 = PretrainedFineTuner(_mlp(), precision="bf16-mixed", callbacks=[("dtype", dtype)],
                               **params).fit(X, y)
    fp32 = PretrainedFineTuner(_mlp(), precision="32", **params).fit(X, y)
    assert dtype.dtypes_ == {torch.bfloat16}  # the forward pass really ran under autocast
    assert bf16.precision_ == "bf16-mixed" and bf16.grad_scaler_ is None
    assert np.isfinite(bf16.history[:, "train_loss"]).all()
    assert all(p.dtype == torch.float32 for p in bf16.module_.parameters())
    proba = bf16.predict_proba(X)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba, fp32.predict_proba(X), atol=0.05)
    assert (bf16.predict(X) == fp32.predict(X)).mean() > 0.9
    assert not np.array_equal(proba, fp32.predict_proba(X))  # not float32 in disguise


def test_16_mixed_on_the_cpu_warns_and_trains_with_a_grad_scaler():
    X, y = _data()
    dtype = OutputDtype()
    with pytest.warns(UserWarning, match="precision='16-mixed' on the CPU"):
        clf = PretrainedFineTuner(_mlp(), precision="16-mixed", batch_size=16, max_epochs=2,
                                  callbacks=[("dtype", dtype)], **BASE).fit(X, y)
    assert dtype.dtypes_ == {torch.float16}
    assert isinstance(clf.grad_scaler_, torch.amp.GradScaler) and clf.grad_scaler_.is_enabled()
    assert np.isfinite(clf.history[:, "train_loss"]).all()
    assert clf.predict(X).shape == (len(X),)


def test_16_mixed_skips_overflowing_steps_and_lowers_the_scale():
    """Huge inputs overflow float16 gradients at the initial scale: steps are skipped, not NaN."""
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clf = PretrainedFineTuner(_mlp(), precision="16-mixed", batch_size=16, max_epochs=2,
                                  **BASE).fit(X * 1000, y)
    assert clf.grad_scaler_.get_scale() < 2.0**16
    assert all(torch.isfinite(p).all() for p in clf.module_.parameters())
    again = pickle.loads(pickle.dumps(clf))  # the scaler pickles (as its state)
    assert again.grad_scaler_.get_scale() == clf.grad_scaler_.get_scale()
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_a_resumed_16_mixed_fit_restores_the_scaler_and_matches_an_uninterrupted_one(tmp_path):
    X, y = _data(96)
    X = X * 1000  # float16 gradients overflow at first: the scale the checkpoint holds matters
    params = dict(BASE, precision="16-mixed", batch_size=16, max_epochs=4, lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = PretrainedFineTuner(_mlp(), **params).fit(X, y)
        interrupted = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path,
                                          callbacks=[("stop", InterruptAt(2))], **params)
        with pytest.raises(Interrupted):
            interrupted.fit(X, y)
        saved = load_checkpoint(interrupted.checkpoint_path_)["grad_scaler"]
        assert saved["scale"] < 2.0**16
        resumed = PretrainedFineTuner(_mlp(), checkpoint_dir=tmp_path, **params).fit(X, y,
                                                                                    resume=True)
    assert resumed.grad_scaler_.state_dict() == reference.grad_scaler_.state_dict()
    assert _close(_weights(resumed), _weights(reference), rtol=0, atol=0)
    assert resumed.history[:, "train_loss"] == reference.history[:, "train_loss"]


# ----------------------------------------------------------------- channels_last
def test_channels_last_keeps_the_results_and_runs_in_nhwc():
    X, y = color_task(48)
    params = dict(BASE, batch_size=16, max_epochs=2)
    seen = []

    class InputFormat(Callback):
        def on_train_begin(self, net, **kwargs):
            net.module_.register_forward_pre_hook(lambda module, args: seen.append(
                args[0].is_contiguous(memory_format=torch.channels_last)))

    torch.manual_seed(0)
    nhwc = PretrainedFineTuner(TinyCNN(), channels_last=True,
                               callbacks=[("format", InputFormat())], **params).fit(X, y)
    torch.manual_seed(0)
    nchw = PretrainedFineTuner(TinyCNN(), **params).fit(X, y)
    assert seen and all(seen)
    assert nhwc.module_.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not nchw.module_.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert _close(_weights(nhwc), _weights(nchw), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(nhwc.predict_proba(X), nchw.predict_proba(X), atol=1e-5)


def test_channels_last_refuses_inputs_that_are_not_images():
    clf = PretrainedFineTuner(_mlp(), channels_last=True, max_epochs=1, **BASE)
    with pytest.raises(ValueError, match=r"X holds arrays of shape \(8, 4\): pass channels_last"):
        clf.fit(np.zeros((8, 4), np.float32), np.arange(8) % 2)
    with pytest.raises(ValueError, match="channels_last=True .* X holds texts"):
        clf._check_channels_last(Inputs(kind="texts", items=["a text", "another"]))
    clf._check_channels_last(Inputs(kind="array", items=np.zeros((2, 3, 4, 4), np.float32)))


# ----------------------------------------------------------------- compile
def test_compile_compiles_the_network_in_place_with_its_options(monkeypatch):
    """The compiler itself is mocked here: a real torch.compile takes 5 s (dynamo, "eager"
    backend) to 25 s (the default inductor) on a CPU; the slow test below runs it for real."""
    calls = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, **kwargs: calls.append((self, kwargs)))
    X, y = _data(32)
    clf = PretrainedFineTuner(_mlp(), compile=True, compile__mode="reduce-overhead",
                              max_epochs=1, **BASE).fit(X, y)
    assert len(calls) == 1  # the network only, not the criterion
    assert calls[0][0] is clf.module_ and calls[0][1] == {"mode": "reduce-overhead"}
    PretrainedFineTuner(_mlp(), max_epochs=1, **BASE).fit(X, y)
    assert len(calls) == 1  # compile=False compiles nothing


@pytest.mark.slow
def test_compile_runs_on_the_cpu_and_keeps_parameter_names():
    """The real torch.compile (dynamo tracing; the "eager" backend skips inductor's code
    generation, which alone takes over 20 s here)."""
    X, y = _data(32)
    clf = PretrainedFineTuner(_mlp(), compile=True, compile__backend="eager", max_epochs=2,
                              batch_size=16, **BASE).fit(X, y)
    plain = PretrainedFineTuner(_mlp(), max_epochs=2, batch_size=16, **BASE).fit(X, y)
    assert clf.module_._compiled_call_impl is not None
    assert list(clf.module_.state_dict()) == list(plain.module_.state_dict())
    np.testing.assert_allclose(clf.predict_proba(X), plain.predict_proba(X), atol=1e-6)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-6)


# ----------------------------------------------------------------- parameters
NEW = {"precision": "bf16-mixed", "accumulate_grad_batches": 2, "channels_last": True,
       "compile": True}


@pytest.mark.parametrize("name, bad", [("precision", "64"), ("precision", 32),
                                       ("accumulate_grad_batches", 0),
                                       ("accumulate_grad_batches", 1.5),
                                       ("channels_last", "yes"), ("compile", 1)])
def test_bad_values_are_refused_by_name(name, bad):
    X, y = _data(16)
    with pytest.raises(InvalidParameterError, match=name):
        PretrainedFineTuner(_mlp(), **{name: bad}).fit(X, y)


@pytest.mark.parametrize("cls", [PretrainedFineTuner, PretrainedFineTunerRegressor])
def test_the_new_parameters_clone_and_default_to_todays_behaviour(cls):
    est = cls(_mlp(), **NEW)
    assert {k: v for k, v in clone(est).get_params().items() if k in NEW} == NEW
    defaults = cls(_mlp()).get_params()
    assert {k: defaults[k] for k in NEW} == {"precision": "auto", "accumulate_grad_batches": 1,
                                             "channels_last": False, "compile": False}


def test_gridsearch_searches_precision_and_accumulation():
    X, y = _data(48)
    grid = {"precision": ["32", "bf16-mixed"], "accumulate_grad_batches": [1, 2]}
    search = GridSearchCV(PretrainedFineTuner(_mlp(), batch_size=8, max_epochs=1, **BASE), grid,
                          cv=2).fit(X, y)
    assert [p for p in search.cv_results_["params"]] == [
        {"accumulate_grad_batches": k, "precision": p} for k in (1, 2) for p in ("32", "bf16-mixed")]
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.precision_ in ("32", "bf16-mixed")


def test_gridsearch_searches_channels_last_on_images():
    X, y = color_task(32)
    search = GridSearchCV(PretrainedFineTuner(TinyCNN(), batch_size=8, max_epochs=1, **BASE),
                          {"channels_last": [False, True]}, cv=2).fit(X, y)
    assert [p["channels_last"] for p in search.cv_results_["params"]] == [False, True]


def test_the_new_parameters_survive_save_and_load(tmp_path):
    X, y = color_task(32)
    params = {"precision": "bf16-mixed", "accumulate_grad_batches": 2, "channels_last": True}
    torch.manual_seed(0)
    clf = PretrainedFineTuner(TinyCNN(), batch_size=8, max_epochs=1, **params, **BASE).fit(X, y)
    loaded = skadapt.load(skadapt.save(clf, tmp_path / "model"))
    assert {k: loaded.get_params()[k] for k in params} == params
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
