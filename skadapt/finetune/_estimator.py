"""The core of the skorch-backed estimators ``PretrainedFineTuner`` (``_classifier``) and
``PretrainedFineTunerRegressor`` (``_regressor``).

Why a subclass of skorch's ``NeuralNet`` rather than a wrapper around one: a subclass keeps all of
skorch in reach of the user with no glue (``callbacks=``, ``callbacks__<name>__<param>``,
``optimizer__weight_decay``, ``history_``, ``ProgressBar``, ``save_params``), and skorch already
solves cloning, pickling (a GPU-trained net loads on a CPU) and parameter routing. What skadapt adds
lives in overrides of a few well-defined hooks:

- ``fit``: parameters checked against ``_parameter_constraints``, then either the whole network
  trains, or only its head on cached backbone features (``_cached_head``);
- ``initialize_module``: resolve the pretrained network and its new head (``skadapt.networks``);
- ``initialize_optimizer``: one parameter group per trainable layer group (``_schedule``,
  ``_freezing``);
- ``get_split_datasets`` / ``get_dataset`` / ``get_iterator``: any kind of input (``_adapters``), with
  train-time augmentation on the training part only, and the validation policy (``_validation``);
- ``_set_training``: frozen parts (dropout, drop-path, BatchNorm) stay in inference mode on every batch;
- ``train_step`` and its parts (``_training_step``): ``precision``, float16 loss scaling and
  ``accumulate_grad_batches``; ``infer`` runs under the precision's autocast, in
  ``channels_last`` memory format when asked; ``torch_compile`` compiles in place;
- the ``fine_tuning`` callback (``_schedule``): staged and gradual unfreezing, learning rates.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping
from functools import partial
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import (
    InvalidParameterError,
    Options,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import EpochTimer, PassthroughScoring
from torch.utils.data import Dataset

from skadapt._constraints import Number, StrList
from skadapt.finetune._adapters import Inputs, adapt_for
from skadapt.finetune._cached_head import CachedHeadMixin
from skadapt.finetune._checkpoint import (
    EpochCheckpoint,
    checkpoint_file,
    checkpoint_key,
    load_checkpoint,
)
from skadapt.finetune._clone import clone_sharing_model
from skadapt.finetune._datasets import InputDataset
from skadapt.finetune._decoding import find_unreadable
from skadapt.finetune._device import resolve_device, seeded
from skadapt.finetune._feature_batches import FeatureBatches, whole_batch
from skadapt.finetune._freezing import apply_freeze, inference_mode_modules, set_inference_mode
from skadapt.finetune._image_cache import (
    DecodedImageCache,
    DecodedImageDataset,
    make_decode_transform,
)
from skadapt.finetune._layer_table import layer_table
from skadapt.finetune._lr_finder import LRFinderResult, lr_find
from skadapt.finetune._precision import PRECISIONS
from skadapt.finetune._print_log import QuietPrintLog
from skadapt.finetune._schedule import FineTuningSchedule, Schedule
from skadapt.finetune._training_step import TrainingStepMixin
from skadapt.finetune._transforms import image_sizes, make_transform
from skadapt.finetune._validation import PlannedEarlyStopping, plan_validation, summarize
from skadapt.finetune._weights import WeightedDataset, fit_weights, weighted_loss
from skadapt.networks import check_array_input, resolve_network, takes_texts

_KIND_NAMES = {"array": "numeric arrays", "files": "image files", "pil": "PIL images",
               "texts": "texts"}
_POSITIVE = [Number(Real, 0, None, closed="neither")]


class _PretrainedNet(CachedHeadMixin, TrainingStepMixin, NeuralNet):
    """What the classifier and the regressor share; see ``PretrainedFineTuner`` for the parameters."""

    # Each parameter's valid values, checked when fit starts (sklearn's InvalidParameterError).
    # "no_validation": checked where it is used, by the network registry or by skorch.
    _parameter_constraints: dict = {
        "model": [str, os.PathLike, torch.nn.Module, type],
        "weights": "no_validation",
        "head": [str, None],
        "freeze": [StrOptions({"none", "backbone"}), Number(Integral, 0, None, closed="left"),
                   StrList()],
        "unfreeze_at": [Number(Integral, 0, None, closed="left"), None],
        "unfreeze": [StrOptions({"all"}), Number(Integral, 1, None, closed="left")],
        "unfreeze_every": [Number(Integral, 1, None, closed="left"), None],
        "unfreeze_lr": [*_POSITIVE, None],
        "backbone_lr_mult": _POSITIVE,
        "layer_decay": _POSITIVE,
        "train_bn": ["boolean"],
        "image_size": [Number(Integral, 1, None, closed="left"), None],
        "mean": ["array-like", None],
        "std": ["array-like", None],
        "augment": [StrOptions({"auto"}), "boolean", callable],
        "path_column": [str, None],
        "on_bad_image": [StrOptions({"raise", "skip"})],
        "max_length": [Number(Integral, 2, None, closed="left")],
        "pooling": [StrOptions({"mean", "cls"})],
        "adapter": [StrOptions({"lora"}), None],
        "lora_r": [Number(Integral, 1, None, closed="left")],
        "lora_alpha": _POSITIVE,
        "empty_text": [StrOptions({"raise", "allow"})],
        "feature_cache": [StrOptions({"auto"}), Options(bool, {False})],
        "head_solver": [StrOptions({"auto", "convex", "gradient"})],
        "head_C": _POSITIVE,
        "class_weight": [None],
        "cache_dir": [str, os.PathLike, None],
        "checkpoint_dir": [str, os.PathLike, None],
        "image_cache_mb": [Number(Real, 0, None, closed="left")],
        "lr": _POSITIVE,
        "lr_schedule": [StrOptions({"cosine", "constant"})],
        "warmup": [Number(Real, 0, 1, closed="left")],
        "max_epochs": [Number(Integral, 1, None, closed="left")],
        "batch_size": [Number(Integral, 1, None, closed="left"), Options(Integral, {-1})],
        "validation_fraction": [StrOptions({"auto"}), Number(Real, 0, 1, closed="neither"), None],
        "patience": [StrOptions({"auto"}), Number(Integral, 1, None, closed="left"), None],
        "num_workers": [Number(Integral, 0, None, closed="left")],
        "random_state": [Number(Integral, None, None, closed="neither"), None],
        "device": [str, torch.device, None],
        "precision": [StrOptions(set(PRECISIONS))],
        "accumulate_grad_batches": [Number(Integral, 1, None, closed="left")],
        "channels_last": ["boolean"],
        "criterion": [type, torch.nn.Module, None],
        "optimizer": [callable],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "compile": ["boolean"],
        "use_caching": [StrOptions({"auto"}), "boolean"],
        "predict_nonlinearity": [StrOptions({"auto"}), callable, None],
        # skorch's own, set by skadapt (module, train_split), passed on to torch, or checked by
        # skorch's set_params (callbacks)
        "callbacks": "no_validation",
        "module": "no_validation",
        "train_split": "no_validation",
        "dataset": "no_validation",
        "iterator_train": "no_validation",
        "iterator_valid": "no_validation",
        "torch_load_kwargs": "no_validation",
    }
    _default_criterion: type[torch.nn.Module]

    def __init__(
        self,
        model,
        weights=None,
        *,
        head=None,
        freeze="backbone",
        unfreeze_at=None,
        unfreeze="all",
        unfreeze_every=None,
        unfreeze_lr=None,
        backbone_lr_mult=1.0,
        layer_decay=1.0,
        train_bn=False,
        image_size=None,
        mean=None,
        std=None,
        augment="auto",
        path_column=None,
        on_bad_image="raise",
        max_length=128,
        pooling="mean",
        adapter=None,
        lora_r=8,
        lora_alpha=16,
        empty_text="raise",
        feature_cache="auto",
        head_solver="auto",
        head_C=1.0,
        class_weight=None,
        cache_dir=None,
        checkpoint_dir=None,
        image_cache_mb=1024,
        lr=1e-3,
        lr_schedule="cosine",
        warmup=0.1,
        max_epochs=10,
        batch_size=32,
        validation_fraction="auto",
        patience="auto",
        num_workers=0,
        random_state=None,
        device="auto",
        precision="auto",
        accumulate_grad_batches=1,
        channels_last=False,
        compile=False,
        criterion=None,
        optimizer=torch.optim.AdamW,
        callbacks=None,
        verbose=0,
        **kwargs,
    ):
        self.model = model
        self.weights = weights
        self.head = head
        self.freeze = freeze
        self.unfreeze_at = unfreeze_at
        self.unfreeze = unfreeze
        self.unfreeze_every = unfreeze_every
        self.unfreeze_lr = unfreeze_lr
        self.backbone_lr_mult = backbone_lr_mult
        self.layer_decay = layer_decay
        self.train_bn = train_bn
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.augment = augment
        self.path_column = path_column
        self.on_bad_image = on_bad_image
        self.max_length = max_length
        self.pooling = pooling
        self.adapter = adapter
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.empty_text = empty_text
        self.feature_cache = feature_cache
        self.head_solver = head_solver
        self.head_C = head_C
        self.class_weight = class_weight
        self.cache_dir = cache_dir
        self.checkpoint_dir = checkpoint_dir
        self.image_cache_mb = image_cache_mb
        self.lr_schedule = lr_schedule
        self.warmup = warmup
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.num_workers = num_workers
        self.random_state = random_state
        self.precision = precision
        self.accumulate_grad_batches = accumulate_grad_batches
        self.channels_last = channels_last
        # skorch's own parameters come back through clone() as keyword arguments.
        kwargs.setdefault("module", None)
        kwargs.setdefault("train_split", None)
        super().__init__(
            criterion=criterion, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
            batch_size=batch_size, callbacks=callbacks, verbose=verbose, device=device,
            compile=compile, **kwargs,
        )

    # ----------------------------------------------------------------- callbacks
    @property
    def _default_callbacks(self):
        callbacks = [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            *self._scoring_callbacks(),
            ("fine_tuning", FineTuningSchedule()),
            ("early_stopping", PlannedEarlyStopping()),
            ("print_log", QuietPrintLog()),
            ("checkpoint", EpochCheckpoint()),
        ]
        return callbacks

    def _scoring_callbacks(self):
        return []

    def _batches_in_epoch(self, n_samples: int) -> int:
        """Training batches in an epoch over ``n_samples`` (what the schedule counts)."""
        size = self.get_params_for("iterator_train").get("batch_size", self.batch_size)
        return math.ceil(n_samples / (n_samples if size == -1 else size))

    def _batches_per_step(self) -> int:
        """Training batches per optimizer step."""
        return self.accumulate_grad_batches

    # ----------------------------------------------------------------- validation
    def _validate_params(self) -> None:
        """Check every parameter against ``_parameter_constraints``, then the rules that tie
        parameters together; a bad value raises ``InvalidParameterError`` naming it."""
        validate_parameter_constraints(self._parameter_constraints,
                                       self.get_params(deep=False), type(self).__name__)
        if self.unfreeze_every is not None and self.unfreeze_at is None:
            raise InvalidParameterError(
                "unfreeze_every needs unfreeze_at: pass the epoch at which gradual unfreezing "
                "starts.")
        if self.adapter is not None and not takes_texts(self.model):
            raise InvalidParameterError(
                f"adapter={self.adapter!r} applies to Hugging Face text models (an 'org/name' id "
                "or a local directory): pass adapter=None for this model.")

    # ----------------------------------------------------------------- fitting
    def fit(self, X, y, sample_weight=None, resume=False, **fit_params):
        """Fine-tune the pretrained network on ``X``, ``y``.

        Parameters
        ----------
        X : array-like, image paths, PIL images, texts or DataFrame
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample in the loss (multiplied by ``class_weight``'s).
        resume : bool, default=False
            Continue an interrupted fit from the last complete epoch saved under
            ``checkpoint_dir`` (same parameters, same data); without a checkpoint, start from
            scratch with a warning. With the same ``random_state`` on a CPU, the result is exactly
            that of an uninterrupted fit.
        **fit_params
            Passed on to skorch.

        Returns
        -------
        self
        """
        self._validate_params()
        inputs = self._adapt(X, fitting=True)
        if len(inputs) < 2:
            raise ValueError(f"fit needs at least 2 samples, got {len(inputs)} sample.")
        y = self._check_target(y, len(inputs))
        self._check_channels_last(inputs)
        weights = fit_weights(y, len(inputs), sample_weight, self._class_weights())
        inputs, y, weights = self._drop_bad_images(inputs, y, weights)
        if resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir: pass the checkpoint_dir of the "
                             "interrupted fit.")
        self.input_kind_ = inputs.kind
        self.n_features_in_ = _n_features(inputs)
        warm = self.warm_start and self.initialized_
        with seeded(self.random_state):
            if not warm:
                self._initialize_with_example(inputs)
            self._check_input_shape(inputs)
            reason, backbone = self._why_not_cached(inputs)
            self.used_feature_cache_ = reason is None
            self.training_path_ = "cached backbone features" if reason is None else (
                f"full network ({reason})")
            self.head_solver_ = self._resolve_head_solver(reason)
            self.head_solution_ = None  # set by the convex solver
            # the cached-head path has no epochs worth resuming (the convex head has none at all)
            self.checkpoint_path_ = None
            if reason is None:
                self._fit_head_on_cached_features(inputs, y, weights, backbone=backbone,
                                                  **fit_params)
                return self
            state = None
            if self.checkpoint_dir is not None and not warm:
                self.checkpoint_path_ = str(checkpoint_file(
                    self.checkpoint_dir, checkpoint_key(self, inputs, y, weights)))
                if resume:
                    state = load_checkpoint(self.checkpoint_path_)
                    if state is None:
                        warnings.warn(f"resume=True but there is no checkpoint at "
                                      f"{self.checkpoint_path_}: fitting from scratch.",
                                      UserWarning, stacklevel=2)
            self._train(inputs, y, weights, checkpoint=self.checkpoint_path_, resume_state=state,
                        **fit_params)
        return self

    def _train(self, inputs, y, weights, checkpoint=None, resume_state=None,
               **fit_params) -> None:
        """skorch's training loop under the validation policy, with the samples' weights;
        checkpointed after every epoch to ``checkpoint`` and resumed from ``resume_state``."""
        plan = plan_validation(len(inputs), self.validation_fraction, self.patience,
                               self.max_epochs)
        self.validation_plan_ = plan
        self._fit_weights = weights
        self._prepare_precision()
        saver = next((cb for _, cb in self.callbacks_ if isinstance(cb, EpochCheckpoint)), None)
        if saver is not None:
            saver.arm(self, checkpoint, resume_state)
        if resume_state is not None:
            self._epochs_done = resume_state["epoch"]
        try:
            NeuralNet.partial_fit(self, inputs, y, **fit_params)
        finally:
            # transient: not parameters, not fitted state
            del self._fit_weights
            self.__dict__.pop("_epochs_done", None)
            if saver is not None:
                saver.disarm()
        self.validation_ = summarize(plan, self.history, dict(self.callbacks_).get("early_stopping"))

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """skorch's loop; a resumed fit runs only the epochs left of ``max_epochs``."""
        if epochs is None:
            epochs = max(self.max_epochs - getattr(self, "_epochs_done", 0), 0)
        return super().fit_loop(X, y, epochs=epochs, **fit_params)

    def partial_fit(self, X, y=None, classes=None, sample_weight=None, **fit_params):
        """One more pass of ``max_epochs`` over ``X``, ``y``, keeping the weights (fits if unfitted).

        The whole network trains by gradient steps (no feature cache, no convex head).
        """
        if not self.initialized_:
            return self.fit(X, y, sample_weight=sample_weight, **fit_params)
        inputs = self._check_features(self._adapt(X))
        self._check_channels_last(inputs)
        y = self._encode_target(check_y(y, len(inputs)))
        weights = fit_weights(y, len(inputs), sample_weight, self._class_weights())
        self._train(inputs, y, weights, **fit_params)
        return self

    def _check_features(self, inputs):
        """Refuse rows whose number of features differs from those seen in ``fit``."""
        if isinstance(inputs, Inputs) and _family(inputs.kind) != _family(self.input_kind_):
            raise ValueError(f"X holds {_KIND_NAMES[inputs.kind]} but this model was fitted on "
                             f"{_KIND_NAMES[self.input_kind_]}: pass the same kind of input.")
        n_features = _n_features(inputs) if isinstance(inputs, Inputs) else None
        if n_features is not None and n_features != self.n_features_in_:
            raise ValueError(f"X has {n_features} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        self._check_input_shape(inputs)
        return inputs

    def _check_input_shape(self, inputs) -> None:
        """Arrays of the wrong rank or channel count fail here, clearly, not inside torch."""
        if isinstance(inputs, Inputs) and inputs.kind == "array":
            check_array_input(self.network_, inputs.items.shape, image_size=self.image_size)

    def _check_channels_last(self, inputs) -> None:
        """``channels_last=True`` needs 4-D (N, C, H, W) inputs: images or 4-D arrays."""
        if not self.channels_last or not isinstance(inputs, Inputs):
            return  # a Dataset of the user's: 4-D batches are converted, others left as they are
        if inputs.kind in ("files", "pil") or (inputs.kind == "array" and inputs.items.ndim == 4):
            return
        shape = (f"arrays of shape {inputs.items.shape}" if inputs.kind == "array"
                 else _KIND_NAMES[inputs.kind])
        raise ValueError(f"channels_last=True is a memory format for 4-D image batches (N, C, H, "
                         f"W), but X holds {shape}: pass channels_last=False.")

    def _initialize_with_example(self, inputs: Inputs) -> None:
        """Initialize, able to show the network two samples so that lazy layers get their shapes."""
        self._example_input = partial(self._example_batch, inputs)
        try:
            self.initialize()
        finally:
            del self._example_input  # transient: not a parameter, not fitted state

    def _example_batch(self, inputs: Inputs) -> torch.Tensor | dict:
        dataset = self.get_dataset(inputs.subset(np.arange(min(2, len(inputs)))))
        samples = [dataset[i] for i in range(len(dataset))]
        if inputs.kind == "texts":  # tokenized, as the network's DataLoader batches them
            return self.network_.collate(self.max_length)(samples)[0]
        return torch.stack([x for x, _ in samples])

    def initialize(self):
        self.device_ = resolve_device(self.__dict__["device"])
        super().initialize()
        self.__dict__.pop("grad_scaler_", None)  # a fresh network starts at the initial scale
        self._prepare_precision(warn=False)
        return self

    def _on_cuda(self) -> bool:
        """Whether batches go to a CUDA GPU (then pinned, and copied without blocking)."""
        device = self.__dict__.get("device_")
        if device is None:
            try:
                device = resolve_device(self.__dict__.get("device"))
            except ValueError:
                return False  # validated when fit starts
        return device.type == "cuda"

    # skorch moves tensors to ``self.device``, which must be a real device; the parameter as
    # given ("auto") stays in ``__dict__`` for get_params, clone and pickling.
    @property
    def device(self) -> str:
        resolved = self.__dict__.get("device_")
        if resolved is None:
            try:
                resolved = resolve_device(self.__dict__.get("device"))
            except (RuntimeError, TypeError, ValueError):
                return self.__dict__.get("device")  # validated when fit starts
        return str(resolved)

    @device.setter
    def device(self, value) -> None:
        self.__dict__["device"] = value

    def __sklearn_clone__(self):
        return clone_sharing_model(self)  # the pretrained module is read, never changed

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        params["device"] = self.__dict__["device"]
        # skorch lists this bookkeeping set among the parameters; its __init__ rebuilds it anyway
        params.pop("_params_to_validate", None)
        return params

    def initialize_module(self):
        self.network_ = resolve_network(
            self.model, self.weights, n_outputs=self._n_outputs(), head=self.head,
            example_input=getattr(self, "_example_input", None), text_options=self._text_options())
        self.module_ = self.network_.module
        if self.channels_last:  # 4-D weights (convolutions) in NHWC order; others are unchanged
            self.module_.to(memory_format=torch.channels_last)
        self.set_frozen(Schedule.of(self).frozen(self.network_, 0))
        return self

    def torch_compile(self, module, name):
        """``compile=True``: compile the network in place (``nn.Module.compile``, with the
        ``compile__<name>`` options), so that its parameter names, state dict and layer groups stay
        those of the uncompiled network. Criteria are not compiled."""
        if not self.compile or name not in self._modules:
            return module
        module.compile(**self.get_params_for("compile"))
        return module

    def initialize_criterion(self):
        criterion = self.criterion or self._default_criterion
        self.criterion_ = self.initialized_instance(criterion, self.get_params_for("criterion"))
        return self

    def initialize_optimizer(self, triggered_directly=None):
        schedule = Schedule.of(self)
        kwargs = self.get_params_for("optimizer")
        kwargs.pop("lr", None)
        self.optimizer_ = self.optimizer(schedule.parameter_groups(self.network_, 0),
                                         lr=schedule.base_lr(0), **kwargs)
        return self

    def _text_options(self) -> dict:
        """What a text model is built with (ignored for other models)."""
        return {"pooling": self.pooling, "adapter": self.adapter, "lora_r": self.lora_r,
                "lora_alpha": self.lora_alpha}

    def set_frozen(self, frozen: set[str]) -> None:
        """Freeze exactly the parameters named in ``frozen`` (the schedule calls this)."""
        self.frozen_ = set(frozen)
        self.inference_modules_ = apply_freeze(self.module_, self.frozen_, train_bn=self.train_bn)
        n_total = sum(p.numel() for p in self.module_.parameters())
        self.trainable_fraction_ = self.n_trainable_parameters() / max(n_total, 1)

    def n_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.module_.parameters() if p.requires_grad)

    def _set_training(self, training=True):
        super()._set_training(training)
        if training:
            set_inference_mode(self.inference_modules_)

    # ----------------------------------------------------------------- data
    def _adapt(self, X, *, fitting: bool = False) -> Inputs | Dataset:
        if isinstance(X, (Inputs, Dataset)):
            return X
        network = None if fitting else getattr(self, "network_", None)
        return adapt_for(self.model, X, network=network, path_column=self.path_column,
                         empty_text=self.empty_text)

    def _drop_bad_images(self, inputs: Inputs, y, weights):
        if self.on_bad_image != "skip" or inputs.kind != "files":
            return inputs, y, weights
        bad = find_unreadable(inputs)
        if not bad:
            return inputs, y, weights
        shown = "; ".join(f"{inputs.items[i]} ({why})" for i, why in bad[:5])
        warnings.warn(f"skipped {len(bad)} unreadable image(s) of {len(inputs)}: {shown}",
                      UserWarning, stacklevel=3)
        keep = np.setdiff1d(np.arange(len(inputs)), [i for i, _ in bad])
        return inputs.subset(keep), y[keep], (None if weights is None else weights[keep])

    def _transform(self, kind: str, train: bool):
        network = getattr(self, "network_", None)
        return make_transform(
            kind, train=train, preprocessing=network.preprocessing if network else None,
            image_size=self.image_size, mean=self.mean, std=self.std, augment=self.augment,
        )

    def get_dataset(self, X, y=None, training=False):
        inputs = self._adapt(X)
        if isinstance(inputs, Dataset):
            return inputs
        if inputs.kind == "features":  # cached backbone outputs: read a batch at a time
            return FeatureBatches(inputs.items, y)
        return InputDataset(inputs, y, transform=self._transform(inputs.kind, train=training))

    def get_split_datasets(self, X, y=None, **fit_params):
        weights = getattr(self, "_fit_weights", None)
        fraction = self.validation_plan_.fraction
        if fraction is None:
            return self._weighted(self._fit_dataset(X, y, training=True), weights), None
        train_idx, valid_idx = self._validation_split(y, fraction)
        parts = []
        for indices, training in ((train_idx, True), (valid_idx, False)):
            dataset = self._fit_dataset(X.subset(indices), y[indices], training=training)
            parts.append(self._weighted(dataset, None if weights is None else weights[indices]))
        return tuple(parts)

    @staticmethod
    def _weighted(dataset, weights):
        if weights is None:
            return dataset
        if isinstance(dataset, FeatureBatches):
            return dataset.with_weights(weights)
        return WeightedDataset(dataset, weights)

    def _fit_dataset(self, X, y, training: bool):
        """A dataset read every epoch: image files are decoded and resized once per fit, into a
        bounded cache, and only augmented afterwards (a callable ``augment`` sees PIL images, so it
        keeps decoding every time)."""
        inputs = self._adapt(X)
        if inputs.kind != "files" or not self.image_cache_mb or callable(self.augment):
            return self.get_dataset(inputs, y, training=training)
        _, resize, interpolation = image_sizes(self.network_.preprocessing, self.image_size)
        dataset = DecodedImageDataset(
            inputs.items, y, decode=make_decode_transform(resize, interpolation=interpolation),
            transform=self._transform(inputs.kind, train=training),
            cache=DecodedImageCache(max_bytes=int(self.image_cache_mb * 2**20)))
        with torch.random.fork_rng(devices=[]):  # leave the shuffling as without the cache
            dataset.predecode(num_workers=self.num_workers, batch_size=self.batch_size)
        return dataset

    def _validation_split(self, y, fraction: float):
        indices = np.arange(len(y))
        stratify = self._stratify_labels(y)
        try:
            return train_test_split(indices, test_size=fraction,
                                    random_state=self.random_state, stratify=stratify)
        except ValueError as error:
            if stratify is None:
                raise ValueError(f"validation_fraction={fraction} leaves no "
                                 f"sample to train or validate on ({len(y)} samples): pass "
                                 "validation_fraction=None.") from error
            warnings.warn(f"could not stratify the internal validation split ({error}); "
                          "splitting at random instead.", UserWarning, stacklevel=2)
            return train_test_split(indices, test_size=fraction, random_state=self.random_state)

    def _stratify_labels(self, y):
        return None

    def get_iterator(self, dataset, training=False):
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = {"batch_size": self.batch_size, "shuffle": training,
                  "num_workers": self.num_workers}
        kwargs.update(self.get_params_for(prefix))
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        if kwargs["num_workers"] > 0:
            kwargs.setdefault("persistent_workers", False)
        if self._on_cuda():  # page-locked batches copy to the GPU asynchronously (non_blocking)
            kwargs.setdefault("pin_memory", True)
        network = getattr(self, "network_", None)
        if isinstance(dataset, FeatureBatches):  # stacked a batch at a time, unless the user
            if "collate_fn" in kwargs:           # collates samples with a function of theirs
                dataset = dataset.per_sample()
            else:
                kwargs["collate_fn"] = whole_batch
        elif network is not None:
            collate = network.collate(self.max_length)
            if collate is not None:  # text networks tokenize each batch (dynamic padding)
                kwargs.setdefault("collate_fn", collate)
        return getattr(self, prefix)(dataset, **kwargs)

    # ----------------------------------------------------------------- forward
    def infer(self, x, **fit_params):
        non_blocking = self._on_cuda()
        if isinstance(x, Mapping):  # tokenized texts: input_ids, attention_mask, ...
            batch = {key: value.to(self.device_, non_blocking=non_blocking)
                     for key, value in x.items()}
            with self.precision_context():
                out = self.module_(**batch, **fit_params)
        else:
            if self.channels_last and x.dim() == 4:
                x = x.to(self.device_, memory_format=torch.channels_last,
                         non_blocking=non_blocking)
            else:
                x = x.to(self.device_, non_blocking=non_blocking)
            with self.precision_context():
                out = self.module_(x, **fit_params)
        if isinstance(out, tuple):  # inception/googlenet in train mode return (logits, aux...)
            out = out[0]
        return out.float()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if isinstance(y_true, Mapping):  # weighted samples (WeightedDataset)
            target = y_true["target"].to(y_pred.device)
            return weighted_loss(self.criterion_, y_pred, target, y_true["weight"].to(y_pred.device))
        return super().get_loss(y_pred, y_true, X=X, training=training)

    def evaluation_step(self, batch, training=False):
        if training:
            return super().evaluation_step(batch, training=True)
        self.check_is_fitted()
        with torch.inference_mode():
            self._set_training(False)
            return self.infer(batch[0])

    def _forward_numpy(self, X) -> np.ndarray:
        """The network's outputs for ``X`` after skorch's nonlinearity (softmax for classifiers)."""
        self.check_is_fitted()
        inputs = self._check_features(self._adapt(X))
        if (isinstance(inputs, Inputs) and inputs.kind != "features"
                and getattr(self, "used_feature_cache_", False)):
            return self._predict_from_cached_features(inputs)
        return NeuralNet.predict_proba(self, inputs)

    def check_is_fitted(self, attributes=None, *args, **kwargs):
        check_is_fitted(self, attributes or ["module_", "network_"])

    def __getstate__(self):
        # network_ and inference_modules_ point into module_, which skorch saves (device-safely) on
        # its own: pickle them as links, not as second copies of the weights.
        state = super().__getstate__()
        if state.get("network_") is not None:
            state["network_"] = dataclasses.replace(state["network_"], module=None)
        state.pop("inference_modules_", None)
        return state

    def __setstate__(self, state):
        # skorch maps saved tensors to state["device"]; "auto" means whatever this machine has.
        device = state["device"]
        state["device"] = str(resolve_device(device))
        state.pop("device_", None)
        super().__setstate__(state)  # falls back to the CPU when CUDA is absent
        self.device_ = torch.device(self.__dict__["device"])
        self.device = device
        if getattr(self, "network_", None) is not None:
            self.network_.module = self.module_
            self.inference_modules_ = inference_mode_modules(self.module_, self.frozen_)

    # ----------------------------------------------------------------- inspection
    def lr_find(self, X, y=None, **kwargs) -> LRFinderResult:
        """A learning-rate range test on a copy of this estimator (its own weights stay as they are).

        The rate grows exponentially over a short run until the loss diverges; the result holds
        the curve, a suggested ``lr`` and a ``plot()``. Keyword arguments are those of
        :func:`skadapt.finetune.lr_find` (``start_lr``, ``end_lr``, ``num_iter``, ``suggestion``...).

        Returns
        -------
        LRFinderResult
        """
        return lr_find(self, X, y, **kwargs)

    def layer_table(self, epoch: int | None = None) -> pd.DataFrame:
        """One row per layer group (and the head): its size, learning rate and whether it trains.

        Parameters
        ----------
        epoch : int, optional
            Show the state the schedule gives at this epoch (0-based). By default, the current state
            of a fitted estimator, or the state at the first epoch before ``fit``.

        Returns
        -------
        pandas.DataFrame
            Columns ``group``, ``depth``, ``n_params``, ``trainable`` (fraction of the group's
            parameters that train), ``lr``. ``depth`` counts groups from the head (head: -1).
        """
        self._validate_params()
        network = getattr(self, "network_", None)
        if network is None:
            network = resolve_network(self.model, self.weights, n_outputs=2, head=self.head,
                                      text_options=self._text_options())
        schedule = Schedule.of(self)
        if epoch is None and hasattr(self, "frozen_"):
            return layer_table(network, schedule, epoch=len(self.history) - 1, frozen=self.frozen_)
        return layer_table(network, schedule, epoch=epoch)

    # ----------------------------------------------------------------- hooks for subclasses
    _solve_head = None  # the convex solver of a linear head (see _probe)

    def _n_outputs(self) -> int:
        raise NotImplementedError

    def _class_weights(self):
        """``class_weight`` in terms of the encoded targets (None for regressors)."""
        return None

    def _check_target(self, y, n_samples: int):
        raise NotImplementedError

    def _encode_target(self, y):
        raise NotImplementedError


# --------------------------------------------------------------------- helpers
def check_y(y, n_samples: int) -> np.ndarray:
    """``y`` as an array of one target per sample of ``X``, or a clear error."""
    if y is None:
        raise ValueError("This estimator requires y to be passed, but the target y is None: pass "
                         "the targets of the samples in X.")
    y = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else np.asarray(y)
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)}: they must match.")
    return y


def _family(kind: str) -> str:
    """Image files and PIL images go through the same preprocessing: either serves the other."""
    return "images" if kind in ("files", "pil") else kind


def _n_features(inputs: Inputs) -> int | None:
    if inputs.kind == "array" and inputs.items.ndim == 2:
        return inputs.items.shape[1]
    return None
