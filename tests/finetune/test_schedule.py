"""The learning-rate schedule, read off the optimizer at every training batch of real fits.

The documented schedule (``lr``, ``lr_schedule``, ``warmup``, ``unfreeze_at``, ``unfreeze_lr``,
``backbone_lr_mult``, ``layer_decay``): within each stage, a linear warm-up over the first ``warmup``
fraction of the stage's steps up to the base rate, then a cosine decay towards 0; ``"constant"``
keeps the base rate. Stage 2 (from ``unfreeze_at``) restarts the warm-up and decay at ``unfreeze_lr``
(default ``lr / 10``). A backbone group ``depth`` steps below the head runs at
``base * backbone_lr_mult * layer_decay ** depth``. The expected rates are written out here from
that description, independently of skadapt's own code.
"""

import math

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from torch import nn

from skadapt import PretrainedFineTuner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_SAMPLES, BATCH = 40, 16
STEPS_PER_EPOCH = math.ceil(N_SAMPLES / BATCH)  # 3 batches: 16, 16 and 8 samples
DEPTH = {"4": 0, "2": 1, "0": 2}  # the MLP's backbone groups (its Linear layers), by distance to the head


class LearningRates(Callback):
    """The learning rate of every optimizer group (by name) at each training batch, as the
    optimizer's step will use it (skorch runs this after the estimator's own callbacks)."""

    def initialize(self):
        self.batches = []
        return self

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            rates = {group["name"]: group["lr"] for group in net.optimizer_.param_groups}
            self.batches.append({"epoch": len(net.history) - 1, "rates": rates})


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8),
                         nn.ReLU(), nn.Linear(8, 3))


def _fit(**params):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_SAMPLES, 4)).astype(np.float32)
    y = np.where(X[:, 0] > 0, "pos", "neg")
    recorder = LearningRates()
    defaults = dict(freeze="none", lr=0.1, batch_size=BATCH, validation_fraction=None,
                    random_state=0, callbacks=[("lrs", recorder)])
    clf = PretrainedFineTuner(_mlp(), **{**defaults, **params}).fit(X, y)
    assert clf.training_path_.startswith("full network")  # trained batch by batch
    assert len(recorder.batches) == clf.max_epochs * STEPS_PER_EPOCH
    return clf, recorder.batches


def expected_factor(step, total, warmup):
    """Warm-up then cosine decay, written out: the first ``floor(warmup * total)`` steps climb
    linearly (1/(W+1), 2/(W+1), ...) towards the base rate, which step W reaches; the remaining
    steps follow half a cosine period from 1 towards 0."""
    n_warmup = math.floor(warmup * total)
    if step < n_warmup:
        return (step + 1) / (n_warmup + 1)
    return (1 + math.cos(math.pi * (step - n_warmup) / (total - n_warmup))) / 2


def _head_rates(batches):
    return np.array([batch["rates"]["head"] for batch in batches])


@pytest.mark.parametrize("warmup", [0.0, 0.2, 0.5])
def test_warmup_then_cosine_decay_at_every_batch(warmup):
    clf, batches = _fit(max_epochs=5, warmup=warmup)
    total = 5 * STEPS_PER_EPOCH
    n_warmup = math.floor(warmup * total)
    expected = np.array([0.1 * expected_factor(step, total, warmup) for step in range(total)])
    rates = _head_rates(batches)
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    # the shape, spelled out: strictly up to the base rate, reached right after warm-up, then
    # strictly down, still above 0 at the last step
    assert np.all(np.diff(rates[: n_warmup + 1]) > 0)
    assert rates[n_warmup] == pytest.approx(0.1)
    assert np.all(np.diff(rates[n_warmup:]) < 0)
    assert 0 < rates[-1] < 0.1 * 0.05
    # the history's per-epoch rate is the one of the epoch's last batch
    np.testing.assert_allclose(clf.history[:, "lr"], rates[STEPS_PER_EPOCH - 1::STEPS_PER_EPOCH])


def test_constant_schedule_keeps_every_rate_at_its_base():
    _, batches = _fit(max_epochs=3, lr_schedule="constant", warmup=0.5, backbone_lr_mult=0.5)
    for batch in batches:
        assert batch["rates"] == {"head": 0.1, "4": 0.05, "2": 0.05, "0": 0.05}


def test_discriminative_rates_follow_each_group_through_the_schedule():
    _, batches = _fit(max_epochs=4, warmup=0.25, backbone_lr_mult=0.3, layer_decay=0.5)
    total = 4 * STEPS_PER_EPOCH
    for step, batch in enumerate(batches):
        factor = expected_factor(step, total, 0.25)
        expected = {"head": 0.1 * factor}
        expected.update({name: 0.1 * 0.3 * 0.5**depth * factor for name, depth in DEPTH.items()})
        assert batch["rates"] == pytest.approx(expected, rel=1e-12), step


@pytest.mark.parametrize("unfreeze_lr, stage_two_lr", [(None, 0.01), (0.05, 0.05)])
def test_stage_two_restarts_the_schedule_at_unfreeze_lr(unfreeze_lr, stage_two_lr):
    clf, batches = _fit(freeze="backbone", unfreeze_at=2, unfreeze_lr=unfreeze_lr, max_epochs=5,
                        warmup=0.34, backbone_lr_mult=0.5, layer_decay=0.5)
    stage_one = [b for b in batches if b["epoch"] < 2]
    stage_two = [b for b in batches if b["epoch"] >= 2]
    total_one, total_two = 2 * STEPS_PER_EPOCH, 3 * STEPS_PER_EPOCH
    assert (len(stage_one), len(stage_two)) == (total_one, total_two)
    for step, batch in enumerate(stage_one):  # only the head trains, at lr
        assert batch["rates"] == pytest.approx(
            {"head": 0.1 * expected_factor(step, total_one, 0.34)}, rel=1e-12), step
    for step, batch in enumerate(stage_two):  # every group, at stage_two_lr, warming up again
        factor = expected_factor(step, total_two, 0.34)
        expected = {"head": stage_two_lr * factor}
        expected.update({name: stage_two_lr * 0.5 * 0.5**depth * factor
                         for name, depth in DEPTH.items()})
        assert batch["rates"] == pytest.approx(expected, rel=1e-12), step
    # both stages warm up (2 and 3 steps) before their decay
    head_two = _head_rates(stage_two)
    assert head_two[0] < head_two[1] < head_two[2] < head_two[3] == pytest.approx(stage_two_lr)
    assert _head_rates(stage_one)[-1] < 0.1 * 0.5  # stage 1 had decayed before the restart
