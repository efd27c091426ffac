"""The fine-tuning schedule: a skorch callback that decides, per epoch, which layer groups train and at
what learning rate, and, per batch, the warm-up and cosine decay of every group's rate.

It reads its settings from the estimator (``freeze``, ``unfreeze_at``, ``unfreeze``,
``unfreeze_every``, ``unfreeze_lr``, ``backbone_lr_mult``, ``layer_decay``, ``lr_schedule``,
``warmup``), so that they stay plain constructor parameters that ``GridSearchCV`` can search.
"""

from __future__ import annotations

import math

from skorch.callbacks import Callback

from skadapt.finetune._freezing import frozen_at_epoch, parameter_groups, sync_optimizer


def lr_factor(step: int, total: int, *, kind: str, warmup: float) -> float:
    """Multiplier of the base learning rate at ``step`` of a stage of ``total`` steps."""
    if kind == "constant" or total <= 1:
        return 1.0
    n_warmup = int(warmup * total)
    if step < n_warmup:
        return (step + 1) / (n_warmup + 1)
    progress = (step - n_warmup) / max(total - n_warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class FineTuningSchedule(Callback):
    """Freeze and thaw layer groups and set per-group learning rates as training proceeds.

    Stage 1 runs from the first epoch to ``unfreeze_at`` (or to the end) at the base rate ``lr``;
    stage 2 from ``unfreeze_at`` to the end at ``unfreeze_lr``. Each stage has its own warm-up and
    cosine decay, as in fastai's ``fine_tune``. Everything it changes is logged in the history
    (``n_trainable``, ``lr``) so a user can see which stage ran when.
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.steps_per_epoch_ = None
        self.stage_step_ = 0

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        epoch = len(net.history) - 1
        self.steps_per_epoch_ = math.ceil(len(dataset_train) / _batch_size(net, dataset_train))
        if epoch == self._stage_start(net, epoch):
            self.stage_step_ = 0
        frozen = frozen_at_epoch(
            net.network_, epoch, freeze=net.freeze, unfreeze_at=net.unfreeze_at,
            unfreeze=net.unfreeze, unfreeze_every=net.unfreeze_every,
        )
        if frozen != net.frozen_ or epoch == net.unfreeze_at:
            net.set_frozen(frozen)
            wanted = parameter_groups(
                net.network_, base_lr=self._base_lr(net, epoch),
                backbone_lr_mult=net.backbone_lr_mult, layer_decay=net.layer_decay,
            )
            sync_optimizer(net.optimizer_, wanted)
        net.history.record("n_trainable", net.n_trainable_parameters())

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        epoch = len(net.history) - 1
        start = self._stage_start(net, epoch)
        end = net.unfreeze_at if (net.unfreeze_at or 0) > epoch else net.max_epochs
        total = max(end - start, 1) * self.steps_per_epoch_
        factor = lr_factor(self.stage_step_, total, kind=net.lr_schedule, warmup=net.warmup)
        for group in net.optimizer_.param_groups:
            group["lr"] = group.get("base_lr", group["lr"]) * factor
        self.stage_step_ += 1

    def on_epoch_end(self, net, **kwargs):
        groups = net.optimizer_.param_groups
        net.history.record("lr", groups[0]["lr"] if groups else 0.0)

    @staticmethod
    def _stage_start(net, epoch: int) -> int:
        if net.unfreeze_at is not None and epoch >= net.unfreeze_at:
            return net.unfreeze_at
        return 0

    @staticmethod
    def _base_lr(net, epoch: int) -> float:
        if net.unfreeze_at is None or epoch < net.unfreeze_at:
            return net.lr
        return net.unfreeze_lr if net.unfreeze_lr is not None else net.lr / 10


def _batch_size(net, dataset) -> int:
    size = net.get_params_for("iterator_train").get("batch_size", net.batch_size)
    return len(dataset) if size == -1 else size
