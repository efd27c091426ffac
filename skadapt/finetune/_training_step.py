"""The training step: mixed precision, float16 loss scaling and gradient accumulation.

:class:`TrainingStepMixin` overrides skorch's step hooks of ``NeuralNet``. Without accumulation
(``accumulate_grad_batches=1``) and without loss scaling (every precision but ``"16-mixed"``) a
batch runs through skorch's own ``train_step`` (zero the gradients, forward, backward,
``optimizer.step(closure)``): the default computes what skorch always computed, and optimizers
that need a closure (LBFGS) keep working. Otherwise:

- the gradients are zeroed at the first batch of each group of ``accumulate_grad_batches`` batches
  (:meth:`TrainingStepMixin.train_step`);
- each batch's loss is divided by the group's size (and scaled by the ``GradScaler`` for float16)
  before ``backward`` (:meth:`TrainingStepMixin.backward`), so the summed gradient is the mean of
  the batches' gradients: with batches of equal size, the gradient of one batch ``k`` times as big;
- the optimizers step when the group is full (:meth:`TrainingStepMixin.optimizer_step`: unscale,
  notify ``on_grad_computed`` so that gradient clipping sees the true gradients, step, update the
  scale). A group never spans two epochs: the last, partial group of an epoch steps at the end of
  the epoch on the mean of its own batches' gradients (their sum rescaled by ``k / m``).

The learning-rate schedule counts optimizer steps (``_schedule.FineTuningSchedule``).
Accumulation applies inside ``fit``'s epochs; a step called on its own (``lr_find``) is one batch.
Each piece is a separate method so that a subclass (e.g. one driving Hugging Face Accelerate)
can replace one and keep the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator

from skadapt.finetune._precision import (
    autocast_for,
    check_precision,
    grad_scaler_for,
    resolve_precision,
)

__all__ = ["TrainingStepMixin"]


@dataclass
class _Accumulation:
    """The group of batches whose gradients add up to the next optimizer step."""

    size: int
    pending: int = 0  # batches backpropagated since the last step
    last_batch: object = None


class TrainingStepMixin:
    """``precision``, ``accumulate_grad_batches`` and the ``GradScaler`` in skorch's step hooks."""

    def precision_context(self):
        """The autocast context of ``precision`` on this estimator's device (forward passes)."""
        return autocast_for(self.device_, self.precision)

    def _prepare_precision(self, warn: bool = True) -> None:
        """Resolve ``precision`` on the device (``precision_``) and give ``"16-mixed"`` its
        ``GradScaler`` (``grad_scaler_``; a warm-started fit on the same device keeps its scale)."""
        resolve = check_precision if warn else resolve_precision
        self.precision_ = resolve(self.precision, self.device_)
        scaler = self.__dict__.get("grad_scaler_")
        if self.precision_ != "16-mixed":
            self.grad_scaler_ = None
        elif scaler is None or getattr(scaler, "_device", None) != self.device_.type:
            self.grad_scaler_ = grad_scaler_for(self.device_, self.precision_)

    def _accumulation(self) -> _Accumulation:
        """The running epoch's group (outside ``fit``'s epochs, every step is one batch)."""
        accumulation = self.__dict__.get("_accumulation_")
        return accumulation if accumulation is not None else _Accumulation(1)

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """skorch's epoch; a training epoch groups its batches by ``accumulate_grad_batches`` and
        steps on its last, partial group too."""
        if not training or iterator is None:
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        accumulation = self._accumulation_ = _Accumulation(self.accumulate_grad_batches)
        try:
            super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
            if accumulation.pending:  # the mean of the partial group's gradients, not k-th parts
                self.optimizer_step(accumulation.last_batch,
                                    rescale=accumulation.size / accumulation.pending)
        finally:
            del self._accumulation_
        return None

    def train_step(self, batch, **fit_params):
        """One training batch: skorch's step, or the batch's share of an accumulated, scaled step."""
        accumulation = self._accumulation()
        if accumulation.size == 1 and self.__dict__.get("grad_scaler_") is None:
            return super().train_step(batch, **fit_params)
        if accumulation.pending == 0:
            self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        accumulation.pending += 1
        accumulation.last_batch = batch
        if accumulation.pending == accumulation.size:
            self.optimizer_step(batch)
        return step

    def train_step_single(self, batch, **fit_params):
        """Forward one batch in training mode, compute its loss and :meth:`backward` it.

        Returns ``{"loss": loss, "y_pred": y_pred}`` with the batch's own (undivided) loss.
        """
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        self.backward(loss)
        return {"loss": loss, "y_pred": y_pred}

    def backward(self, loss) -> None:
        """Add ``loss``'s gradient: divided by the batches per optimizer step, scaled for float16."""
        size = self._accumulation().size
        if size > 1:
            loss = loss / size
        scaler = self.__dict__.get("grad_scaler_")
        if scaler is not None:
            loss = scaler.scale(loss)
        loss.backward()

    def optimizer_step(self, batch=None, rescale: float = 1.0) -> None:
        """Step every optimizer on the gradients summed since the last step (multiplied by
        ``rescale`` first), unscaled; a step whose float16 gradients overflowed is skipped by the
        scaler, which lowers its scale."""
        optimizers = [getattr(self, name + "_") for name in self._optimizers]
        if rescale != 1.0:
            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    for param in group["params"]:
                        if param.grad is not None:
                            param.grad.mul_(rescale)
        scaler = self.__dict__.get("grad_scaler_")
        if scaler is not None:
            for optimizer in optimizers:
                scaler.unscale_(optimizer)
        self.notify("on_grad_computed",
                    named_parameters=TeeGenerator(self.get_all_learnable_params()),
                    batch=batch, training=True)
        for optimizer in optimizers:
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
        if scaler is not None:
            scaler.update()
        self._accumulation().pending = 0
