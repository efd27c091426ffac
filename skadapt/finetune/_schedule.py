"""The fine-tuning schedule: which layer groups train in each epoch, and at what learning rate.

:class:`Schedule` is the schedule of one fit, built from the estimator's constructor parameters
(``freeze``, ``unfreeze_at``, ``unfreeze``, ``unfreeze_every``, ``lr``, ``unfreeze_lr``,
``backbone_lr_mult``, ``layer_decay``, ``lr_schedule``, ``warmup``, ``max_epochs``: plain parameters,
so that ``GridSearchCV`` can search them). It is the one place that says when a stage starts, its
base learning rate, each group's rate and the warm-up and cosine decay within a stage.
:class:`FineTuningSchedule` is the skorch callback that applies it as training proceeds.

Stage 1 runs from the first epoch to ``unfreeze_at`` (or to the end) at the base rate ``lr``; stage 2
from ``unfreeze_at`` to the end at ``unfreeze_lr`` (default ``lr / 10``). Each stage has its own
warm-up and cosine decay, as in fastai's ``fine_tune``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from skorch.callbacks import Callback

from skadapt.finetune._freezing import frozen_at_epoch, parameter_groups, sync_optimizer


@dataclass(frozen=True)
class Schedule:
    """The fine-tuning schedule of one fit (see :class:`~skadapt.PretrainedFineTuner`'s parameters).

    Examples
    --------
    >>> schedule = Schedule(lr=1e-3, unfreeze_at=2, max_epochs=4)
    >>> schedule.base_lr(0), schedule.base_lr(2), schedule.stage(3)
    (0.001, 0.0001, (2, 4))
    >>> [round(schedule.lr_factor(step, 10), 3) for step in (0, 1, 5, 9)]
    [0.5, 1.0, 0.587, 0.03]
    """

    freeze: object = "backbone"
    unfreeze_at: int | None = None
    unfreeze: object = "all"
    unfreeze_every: int | None = None
    lr: float = 1e-3
    unfreeze_lr: float | None = None
    backbone_lr_mult: float = 1.0
    layer_decay: float = 1.0
    lr_schedule: str = "cosine"
    warmup: float = 0.1
    max_epochs: int = 10

    @classmethod
    def of(cls, estimator) -> Schedule:
        """The schedule set by ``estimator``'s parameters of the same names."""
        return cls(**{field.name: getattr(estimator, field.name) for field in fields(cls)})

    def stage(self, epoch: int) -> tuple[int, int]:
        """The first epoch of ``epoch``'s stage and the epoch after its last."""
        if self.unfreeze_at is None or self.unfreeze_at >= self.max_epochs:
            return 0, self.max_epochs
        if epoch < self.unfreeze_at:
            return 0, self.unfreeze_at
        return self.unfreeze_at, self.max_epochs

    def base_lr(self, epoch: int) -> float:
        """The head's learning rate in ``epoch``'s stage, before warm-up and decay."""
        if self.unfreeze_at is None or epoch < self.unfreeze_at:
            return self.lr
        return self.unfreeze_lr if self.unfreeze_lr is not None else self.lr / 10

    def frozen(self, network, epoch: int) -> set[str]:
        """Names of the parameters of ``network`` frozen during ``epoch``."""
        return frozen_at_epoch(network, epoch, freeze=self.freeze, unfreeze_at=self.unfreeze_at,
                               unfreeze=self.unfreeze, unfreeze_every=self.unfreeze_every)

    def parameter_groups(self, network, epoch: int) -> list[dict]:
        """The optimizer's parameter groups in ``epoch``: trainable groups, each at its rate."""
        return parameter_groups(network, base_lr=self.base_lr(epoch),
                                backbone_lr_mult=self.backbone_lr_mult,
                                layer_decay=self.layer_decay)

    def lr_factor(self, step: int, total: int) -> float:
        """Multiplier of the base rates at ``step`` of a stage of ``total`` steps: linear warm-up
        over the first ``warmup`` fraction, then cosine decay (``"constant"``: always 1)."""
        if self.lr_schedule == "constant" or total <= 1:
            return 1.0
        n_warmup = int(self.warmup * total)
        if step < n_warmup:
            return (step + 1) / (n_warmup + 1)
        progress = (step - n_warmup) / max(total - n_warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class FineTuningSchedule(Callback):
    """Apply the estimator's :class:`Schedule`: freeze and thaw layer groups at the start of each
    epoch, set every group's learning rate at each optimizer step (each training batch, or the
    first batch of each group of ``accumulate_grad_batches``).

    Everything it changes is logged in the history (``n_trainable``, ``stage``, ``lr``) so a user
    can see which stage ran when. Batches and optimizer steps are counted as the estimator says
    (``net._batches_in_epoch``, ``net._batches_per_step``: an accelerated fit counts those of one
    process, and its accelerator's gradient accumulation).
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.schedule_ = Schedule.of(net)
        self.steps_per_epoch_ = None
        self.stage_step_ = 0
        # without a second stage, every epoch freezes the same parameters: found once
        self.frozen_throughout_ = (self.schedule_.frozen(net.network_, 0)
                                   if self.schedule_.unfreeze_at is None else None)

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        epoch = len(net.history) - 1
        # the rate moves once per optimizer step: every accumulate_grad_batches batches
        batches = net._batches_in_epoch(len(dataset_train))
        self.steps_per_epoch_ = math.ceil(batches / net._batches_per_step())
        self.batch_in_epoch_ = 0
        if epoch == self.schedule_.stage(epoch)[0]:
            self.stage_step_ = 0
        frozen = self.frozen_throughout_
        if frozen is None:
            frozen = self.schedule_.frozen(net.network_, epoch)
        if frozen != net.frozen_ or epoch == self.schedule_.unfreeze_at:
            net.set_frozen(frozen)
            sync_optimizer(net.optimizer_, self.schedule_.parameter_groups(net.network_, epoch))
        net.history.record("n_trainable", net.n_trainable_parameters())
        net.history.record("stage", 1 if self.schedule_.stage(epoch)[0] == 0 else 2)

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        starts_step = self.batch_in_epoch_ % net._batches_per_step() == 0
        self.batch_in_epoch_ += 1
        if not starts_step:  # within a group of accumulated batches: one step, one rate
            return
        start, end = self.schedule_.stage(len(net.history) - 1)
        total = max(end - start, 1) * self.steps_per_epoch_
        factor = self.schedule_.lr_factor(self.stage_step_, total)
        for group in net.optimizer_.param_groups:
            group["lr"] = group.get("base_lr", group["lr"]) * factor
        self.stage_step_ += 1

    def on_epoch_end(self, net, **kwargs):
        groups = net.optimizer_.param_groups
        net.history.record("lr", groups[0]["lr"] if groups else 0.0)
