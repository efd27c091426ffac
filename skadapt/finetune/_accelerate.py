"""One fit on several devices: data-parallel fine-tuning through Hugging Face Accelerate.

``AcceleratedFineTuner`` and ``AcceleratedFineTunerRegressor`` are the fine-tuners with skorch's
``AccelerateMixin`` in front: the ``accelerate.Accelerator`` passed as ``accelerator=`` prepares the
network (``DistributedDataParallel`` across processes), the optimizer and every ``DataLoader``
(each process reads its own shard of every batch). Run the script that fits one with
``accelerate launch --multi_gpu --num_processes N script.py`` or ``python -m torch.distributed.run
--nproc_per_node N script.py`` (CPU processes: ``Accelerator(cpu=True)`` in the script); in a plain
``python`` process it trains as the ordinary fine-tuner does.

What skadapt adds to skorch's mixin, so that a data-parallel fit computes what one process computes
on the same global batch (``batch_size`` x number of processes):

- the staged unfreezing rebuilds the ``DistributedDataParallel`` wrapper whenever the set of trainable
  parameters changes (DDP only all-reduces the gradients of the parameters that trained when it was
  built: a thawed group would otherwise train apart on every process);
- the schedule counts the batches each process actually runs (the warm-up and the cosine decay of a
  stage end where they end in one process);
- the internal validation split is the main process's on every process, and ``valid_loss`` (which
  stops the fit early and picks the epoch restored) is computed on the gathered predictions of every
  process, so that every process stops at the same epoch; ``train_loss`` is the mean over processes;
- shuffling draws its orders from one generator per fit, seeded from ``random_state`` and shared
  by all processes;
- the gradients are zeroed after each optimizer step, not before each batch (skorch's order would
  drop all but the last batch of a group of the accelerator's ``gradient_accumulation_steps``);
- a loss without parameters is not wrapped (``DistributedDataParallel`` refuses it);
- the early-stopping callback restores its best epoch before the network is unwrapped, and a
  ``partial_fit`` or warm start wraps the unwrapped network again;
- only the main process prints; what the cached-head path and ``checkpoint_dir`` would do on each
  process is refused with the way out (see ``docs/scaling.md``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.utils._param_validation import HasMethods
from skorch.callbacks import EpochScoring, LRScheduler
from skorch.dataset import unpack_data
from skorch.hf import AccelerateMixin
from torch.utils.data import DataLoader, RandomSampler

from skadapt.finetune._classifier import PretrainedFineTuner
from skadapt.finetune._regressor import PretrainedFineTunerRegressor

__all__ = ["AcceleratedFineTuner", "AcceleratedFineTunerRegressor"]

_ACCELERATE_CONSTRAINTS = {
    "accelerator": [HasMethods(["prepare", "gather_for_metrics", "unwrap_model"])],
    "unwrap_after_train": ["boolean"],
    # skorch's mixin prints through the accelerator (the main process only)
    "callbacks__print_log__sink": "no_validation",
}


_PRECISION_OF = {"no": "32", "bf16": "bf16-mixed", "fp16": "16-mixed"}


class GatheredEpochScoring(EpochScoring):
    """skorch's ``EpochScoring`` on the predictions and targets of every process: each cached
    batch is gathered (``accelerator.gather_for_metrics``), so that the score is that of the whole
    split, the same on every process."""

    def on_batch_end(self, net, batch, y_pred, training, **kwargs):
        caching = self.use_caching if net.use_caching == "auto" else net.use_caching
        if caching and training == self.on_train and net._n_processes() > 1:
            X, y = unpack_data(batch)
            y_pred, y = net.accelerator.gather_for_metrics((y_pred, y))
            batch = (X, y)
        super().on_batch_end(net, batch, y_pred, training, **kwargs)


class _AcceleratedNet(AccelerateMixin):
    """What the accelerated classifier and regressor add to skorch's ``AccelerateMixin``."""

    # ----------------------------------------------------------------- parameters
    def _validate_params(self) -> None:
        # the fine-tuner's checks (sklearn's constraints), then those of a data-parallel fit; not
        # the mixin's own device check, which reads the resolved device rather than the parameter
        super(AccelerateMixin, self)._validate_params()
        device = self.__dict__.get("device")
        if getattr(self.accelerator, "device_placement", False) and device is not None:
            raise ValueError(f"device={device!r}: the accelerator places the network on its own "
                             f"device ({self.accelerator.device}); pass device=None, or "
                             "Accelerator(device_placement=False) to place it yourself.")
        if self._n_processes() > 1 and self.checkpoint_dir is not None:
            raise ValueError(
                f"checkpoint_dir is not supported in a fit over {self._n_processes()} processes (every "
                "process would write the same file): pass checkpoint_dir=None, and save the fitted "
                "network from the main process with save_params.")
        if self.precision != "auto" or self.accumulate_grad_batches != 1:
            raise ValueError(
                f"precision={self.precision!r}, accumulate_grad_batches="
                f"{self.accumulate_grad_batches}: with an accelerator, mixed precision and gradient "
                "accumulation are the accelerator's own options: keep precision='auto' and "
                "accumulate_grad_batches=1, and pass e.g. Accelerator(mixed_precision='bf16', "
                "gradient_accumulation_steps=4).")

    def _n_processes(self) -> int:
        return int(getattr(self.accelerator, "num_processes", 1))

    def _batches_per_step(self) -> int:
        """Batches per optimizer step: the accelerator's ``gradient_accumulation_steps``."""
        return int(getattr(self.accelerator, "gradient_accumulation_steps", 1))

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        params.pop("_wrapped_with_accelerator", None)  # skorch's mixin's state, not a parameter
        return params

    def _initialize_callbacks(self):
        # skorch's mixin would set the parameter to accelerator.print, which prints whatever
        # ``verbose``: print on the main process, when verbose, and leave the parameter as given
        sink = self.callbacks__print_log__sink
        if sink == "auto":
            self.callbacks__print_log__sink = self._print_on_main_process
        try:
            super(AccelerateMixin, self)._initialize_callbacks()
        finally:
            self.callbacks__print_log__sink = sink
        return self

    def _print_on_main_process(self, *args, **kwargs) -> None:
        if self.verbose:
            self.accelerator.print(*args, **kwargs)

    # ----------------------------------------------------------------- precision
    def precision_context(self):
        """The forward pass runs under the accelerator's ``mixed_precision``."""
        return self.accelerator.autocast()

    def _prepare_precision(self, warn: bool = True) -> None:
        # the accelerator scales float16 losses itself (accelerator.backward, its optimizer)
        mixed = str(getattr(self.accelerator, "mixed_precision", "no"))
        self.precision_ = _PRECISION_OF.get(mixed, mixed)
        self.grad_scaler_ = None

    # The network runs on the accelerator's device unless ``device`` is given (with
    # ``Accelerator(device_placement=False)``).
    @property
    def device(self) -> str:
        placed = getattr(self.__dict__.get("accelerator"), "device", None)
        if self.__dict__.get("device") is None and placed is not None:
            return str(placed)
        return super().device  # a bad accelerator is refused when fit starts

    @device.setter
    def device(self, value) -> None:
        self.__dict__["device"] = value

    def initialize(self):
        """The fine-tuner's initialization, then the accelerator's ``prepare`` of the network, the
        criterion and the optimizer."""
        super(AccelerateMixin, self).initialize()
        self.device_ = torch.device(self.device)
        self._initialize_accelerator()
        return self

    def _initialize_accelerator(self):
        """skorch's mixin's, except that a criterion without trainable parameters (a plain loss) is
        only moved to the device: ``DistributedDataParallel`` refuses to wrap it."""
        if self._wrapped_with_accelerator:
            return self
        with self._current_init_context("criterion"):
            for name in self._criteria:
                criterion = getattr(self, name + "_")
                if isinstance(criterion, torch.nn.Module):
                    if any(p.requires_grad for p in criterion.parameters()):
                        criterion = self.accelerator.prepare(criterion)
                    else:
                        criterion = criterion.to(self.device)
                    setattr(self, name + "_", criterion)
        with self._current_init_context("module"):
            for name in self._modules:
                module = getattr(self, name + "_")
                if isinstance(module, torch.nn.Module):
                    setattr(self, name + "_", self.accelerator.prepare(module))
        with self._current_init_context("optimizer"):
            for name in self._optimizers:
                optimizer = getattr(self, name + "_")
                if isinstance(optimizer, torch.optim.Optimizer):
                    setattr(self, name + "_", self.accelerator.prepare(optimizer))
        for _, callback in self.callbacks_:
            if isinstance(callback, LRScheduler):
                callback.policy_ = self.accelerator.prepare(callback.policy_)
        self._wrapped_with_accelerator = True
        return self

    # ----------------------------------------------------------------- training
    def _train(self, inputs, y, weights, **kwargs) -> None:
        self._initialize_accelerator()  # a warm start or partial_fit after an unwrapped fit
        try:
            super()._train(inputs, y, weights, **kwargs)
        finally:
            # after every callback's on_train_end (early stopping restores the best epoch into
            # the wrapped network)
            if self.unwrap_after_train:
                self._unwrap_accelerator()

    def on_train_end(self, net, X=None, y=None, **kwargs):
        # skorch's mixin unwraps here, before the callbacks' on_train_end: see _train
        self.accelerator.wait_for_everyone()
        return super(AccelerateMixin, self).on_train_end(net, X=X, y=y, **kwargs)

    def _unwrap_accelerator(self):
        wrapped = self.__dict__.get("module_")
        super()._unwrap_accelerator()
        _forget(self.accelerator, "_models", wrapped)

    def set_frozen(self, frozen: set[str]) -> None:
        """Freeze exactly ``frozen``; a wrapped network is rewrapped, so that the new
        ``DistributedDataParallel`` all-reduces the gradients of every parameter that now trains."""
        if not getattr(self, "_wrapped_with_accelerator", False):
            super().set_frozen(frozen)
            return
        wrapped = self.module_
        if self.accelerator.unwrap_model(wrapped, keep_fp32_wrapper=True) is wrapped:
            super().set_frozen(frozen)  # one process: no wrapper to rebuild
            return
        self.module_ = self.accelerator.unwrap_model(wrapped, keep_fp32_wrapper=False)
        super().set_frozen(frozen)
        _forget(self.accelerator, "_models", wrapped)
        self.module_ = self.accelerator.prepare(self.module_)

    def _fit_head_on_cached_features(self, inputs, y, weights, *, backbone, **fit_params) -> None:
        if self._n_processes() > 1:
            raise ValueError(
                f"this fit would train only the head, on cached features of the frozen backbone "
                f"(training_path_: {self.training_path_!r}), which runs in one process and gains "
                f"nothing from {self._n_processes()} processes: fit it in a single process (plain "
                "python), or pass feature_cache=False (or unfreeze_at=...) to train the whole network "
                "data-parallel.")
        super()._fit_head_on_cached_features(inputs, y, weights, backbone=backbone, **fit_params)

    def _batches_in_epoch(self, n_samples: int) -> int:
        """How many batches of an epoch over ``n_samples`` each process runs (accelerate's
        ``BatchSamplerShard`` with ``even_batches``: the global batch is padded to all processes)."""
        n_batches = super()._batches_in_epoch(n_samples)
        if getattr(self.accelerator, "split_batches", False):
            return n_batches  # batch_size is the global batch, split over the processes
        return math.ceil(n_batches / self._n_processes())

    def _zero_grad_optimizer(self, set_to_none=None):
        """Nothing before a batch: the gradients are zeroed after each optimizer step
        (:meth:`_step_optimizer`), as accelerate expects. skorch zeroes them before the forward
        pass, which inside a group of ``gradient_accumulation_steps`` batches would drop the group's
        earlier batches (accelerate's optimizer zeroes, and steps, only on a group's last batch)."""

    def _step_optimizer(self, step_fn):
        step_fn()
        for name in self._optimizers:
            optimizer = getattr(self, name + "_")
            optimizer.step()  # within a group of accumulated batches, accelerate skips both
            optimizer.zero_grad()

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        if self._n_processes() > 1:  # the loss of the global batch, the same on every process
            step["loss"] = self.accelerator.reduce(step["loss"].detach().clone(), "mean")
        return step

    def validation_step(self, batch, **fit_params):
        """The loss of the global batch: every process gathers every process's predictions and
        targets, so that every process records the same ``valid_loss`` (and stops at the same
        epoch). ``y_pred`` stays this process's own, as the batch the callbacks see."""
        self._set_training(False)
        Xi, yi = unpack_data(batch)
        with torch.no_grad():
            y_pred = self.infer(Xi, **fit_params)
            every_pred, every_y = y_pred, yi
            if self._n_processes() > 1:
                every_pred, every_y = self.accelerator.gather_for_metrics((y_pred, yi))
            loss = self.get_loss(every_pred, every_y, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def _scoring_callbacks(self):
        # valid_acc on every process's batches, the same on every process
        return [(name, GatheredEpochScoring(**callback.get_params())
                 if type(callback) is EpochScoring else callback)
                for name, callback in super()._scoring_callbacks()]

    # ----------------------------------------------------------------- data
    def get_iterator(self, dataset, training=False):
        """The fine-tuner's ``DataLoader``, prepared by the accelerator (sharded over the processes).

        A shuffled loader gets its own generator, seeded from torch's random state (``random_state``),
        which accelerate synchronizes across processes: one process with batch ``b x N`` and ``N``
        processes with batch ``b`` see the same global batches.
        """
        loader = super(AccelerateMixin, self).get_iterator(dataset, training=training)
        sampler = getattr(loader, "sampler", None)
        if isinstance(loader, DataLoader) and isinstance(sampler, RandomSampler) and (
                sampler.generator is None):
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            sampler.generator = torch.Generator().manual_seed(seed)
        prepared = self.accelerator.prepare(loader)
        _forget(self.accelerator, "_dataloaders", prepared)  # used by accelerate's save_state only
        return prepared

    def _validation_split(self, y, fraction: float):
        """The main process's split on every process (with ``random_state=None`` each process
        would otherwise hold out different samples)."""
        train_idx, valid_idx = super()._validation_split(y, fraction)
        if self._n_processes() > 1:
            from accelerate.utils import broadcast_object_list

            train_idx, valid_idx = broadcast_object_list([np.asarray(train_idx),
                                                          np.asarray(valid_idx)])
        return train_idx, valid_idx


def _forget(accelerator, attribute: str, obj) -> None:
    """Drop the accelerator's reference to a wrapper skadapt replaced (its buffers otherwise live as
    long as the accelerator)."""
    held = getattr(accelerator, attribute, None)
    if isinstance(held, list):
        held[:] = [item for item in held if item is not obj]


class AcceleratedFineTuner(_AcceleratedNet, PretrainedFineTuner):
    """:class:`~skadapt.PretrainedFineTuner` trained data-parallel by Hugging Face Accelerate.

    Every parameter of :class:`~skadapt.PretrainedFineTuner`, and:

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        Prepares the network, the optimizer and the data loaders for the processes that
        ``accelerate launch`` started (mixed precision and gradient accumulation are its own options:
        ``Accelerator(mixed_precision="bf16", gradient_accumulation_steps=4)``).
    device : str or None, default=None
        None: the accelerator's device (one per process). Set it only with
        ``Accelerator(device_placement=False)``.
    unwrap_after_train : bool, default=True
        Unwrap the network (``DistributedDataParallel``) after ``fit``: the fitted estimator then
        predicts, pickles and saves as a single-process one.

    Notes
    -----
    ``batch_size`` is the batch of one process: a step trains on ``batch_size`` x processes samples
    (the global batch; with ``Accelerator(split_batches=True)``, ``batch_size`` is the global
    batch). With ``random_state`` set, a fit over ``N`` processes with ``batch_size=b`` computes what
    a single process computes with ``batch_size=N * b``, up to float rounding, for networks without
    random layers (dropout draws differ). ``predict`` runs sharded too and gathers the outputs of
    every process (every process returns all of them). The cached-head path (a frozen backbone) is
    single-process: over several processes ``fit`` refuses it (pass ``feature_cache=False``);
    ``checkpoint_dir`` is refused too. See ``docs/scaling.md``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from accelerate import Accelerator
    >>> from skadapt import AcceleratedFineTuner
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> clf = AcceleratedFineTuner(net, accelerator=Accelerator(cpu=True), freeze="none",
    ...                            max_epochs=2, batch_size=16, random_state=0)
    >>> clf.fit(X, y).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {**PretrainedFineTuner._parameter_constraints,
                              **_ACCELERATE_CONSTRAINTS}


class AcceleratedFineTunerRegressor(_AcceleratedNet, PretrainedFineTunerRegressor):
    """:class:`~skadapt.PretrainedFineTunerRegressor` trained data-parallel by Hugging Face
    Accelerate; ``accelerator``, ``device`` and ``unwrap_after_train`` as in
    :class:`AcceleratedFineTuner`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from accelerate import Accelerator
    >>> from skadapt import AcceleratedFineTunerRegressor
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    >>> X = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    >>> reg = AcceleratedFineTunerRegressor(net, accelerator=Accelerator(cpu=True), freeze="none",
    ...                                     max_epochs=2, batch_size=16, random_state=0)
    >>> reg.fit(X, X.sum(axis=1)).predict(X[:2]).shape
    (2,)
    """

    _parameter_constraints = {**PretrainedFineTunerRegressor._parameter_constraints,
                              **_ACCELERATE_CONSTRAINTS}
