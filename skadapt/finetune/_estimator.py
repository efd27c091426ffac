"""The skorch-backed estimators: ``PretrainedFineTuner`` and ``PretrainedFineTunerRegressor``.

Why a subclass of skorch's ``NeuralNet`` rather than a wrapper around one: a subclass keeps all of
skorch in reach of the user with no glue (``callbacks=``, ``callbacks__<name>__<param>``,
``optimizer__weight_decay``, ``history_``, ``ProgressBar``, ``save_params``), and skorch already
solves cloning, pickling (a GPU-trained net loads on a CPU) and parameter routing. What skadapt adds
lives in overrides of a few well-defined hooks:

- ``initialize_module``: resolve the pretrained network and its new head (``skadapt.networks``);
- ``initialize_optimizer``: one parameter group per trainable layer group (``_freezing``);
- ``get_split_datasets`` / ``get_dataset`` / ``get_iterator``: any kind of input (``_inputs``), with
  train-time augmentation on the training part only;
- ``_set_training``: frozen parts (dropout, drop-path, BatchNorm) stay in inference mode on every batch;
- the ``fine_tuning`` callback (``_schedule``): staged and gradual unfreezing, learning rates.
"""

from __future__ import annotations

import dataclasses
import numbers
import time
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from functools import partial

import numpy as np
import pandas as pd
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import EpochScoring, EpochTimer, PassthroughScoring, PrintLog
from torch.utils.data import Dataset

from skadapt.finetune._cache import (
    DecodedImageCache,
    DecodedImageDataset,
    make_decode_transform,
    shared_cache,
)
from skadapt.finetune._device import autocast, resolve_device, seeded
from skadapt.finetune._extractor import (
    cached_backbone_features,
    head_only_module,
    why_cache_not_applicable,
)
from skadapt.finetune._freezing import (
    apply_freeze,
    frozen_at_epoch,
    head_parameters,
    inference_mode_modules,
    parameter_groups,
    set_inference_mode,
    validate_freeze,
    validate_schedule,
)
from skadapt.finetune._inputs import (
    InputDataset,
    Inputs,
    adapt_inputs,
    adapt_texts,
    find_unreadable,
    image_sizes,
    make_transform,
)
from skadapt.finetune._lr_finder import LRFinderResult, lr_find
from skadapt.finetune._probe import solve_classifier_head, solve_regressor_head
from skadapt.finetune._schedule import FineTuningSchedule
from skadapt.finetune._validation import (
    PlannedEarlyStopping,
    ValidationPlan,
    check_validation_parameters,
    plan_validation,
    summarize,
)
from skadapt.finetune._weights import WeightedDataset, fit_weights, target_of, weighted_loss
from skadapt.networks import check_array_input, resolve_network, takes_texts
from skadapt.networks._source_hf_text import validate_text_parameters

_LR_SCHEDULES = ("cosine", "constant")
_HEAD_SOLVERS = ("auto", "convex", "gradient")
_KIND_NAMES = {"array": "numeric arrays", "files": "image files", "pil": "PIL images",
               "texts": "texts"}


class _PretrainedNet(NeuralNet):
    """What the classifier and the regressor share; see ``PretrainedFineTuner`` for the parameters."""

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
        self.image_cache_mb = image_cache_mb
        self.lr_schedule = lr_schedule
        self.warmup = warmup
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.num_workers = num_workers
        self.random_state = random_state
        # skorch's own parameters come back through clone() as keyword arguments.
        kwargs.setdefault("module", None)
        kwargs.setdefault("train_split", None)
        super().__init__(
            criterion=criterion, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
            batch_size=batch_size, callbacks=callbacks, verbose=verbose, device=device, **kwargs,
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
            ("print_log", PrintLog()),
        ]
        return callbacks

    def _scoring_callbacks(self):
        return []

    # ----------------------------------------------------------------- validation
    def _validate_hyperparameters(self) -> None:
        validate_freeze(self.freeze)
        validate_schedule(self.unfreeze_at, self.unfreeze, self.unfreeze_every)
        for name in ("lr", "backbone_lr_mult", "layer_decay"):
            _check_positive(name, getattr(self, name))
        if self.unfreeze_lr is not None:
            _check_positive("unfreeze_lr", self.unfreeze_lr)
        if self.lr_schedule not in _LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: pass one of {_LR_SCHEDULES}.")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup={self.warmup!r} is the fraction of a stage spent warming up: "
                             "pass a number in [0, 1).")
        check_validation_parameters(self.validation_fraction, self.patience)
        if self.head_solver not in _HEAD_SOLVERS:
            raise ValueError(f"head_solver={self.head_solver!r}: pass one of {_HEAD_SOLVERS}.")
        _check_positive("head_C", self.head_C)
        self._check_class_weight()
        if not isinstance(self.image_cache_mb, numbers.Real) or self.image_cache_mb < 0:
            raise ValueError(f"image_cache_mb={self.image_cache_mb!r}: pass a size in MiB >= 0.")
        if self.feature_cache not in ("auto", False):
            raise ValueError(f"feature_cache={self.feature_cache!r}: pass 'auto' or False.")
        if self.on_bad_image not in ("raise", "skip"):
            raise ValueError(f"on_bad_image={self.on_bad_image!r}: pass 'raise' or 'skip'.")
        if self.random_state is not None and not isinstance(self.random_state, numbers.Integral):
            raise ValueError(f"random_state={self.random_state!r}: pass an int seed or None.")
        if not (isinstance(self.max_epochs, numbers.Integral) and self.max_epochs >= 1):
            raise ValueError(f"max_epochs={self.max_epochs!r} must be an int >= 1.")
        validate_text_parameters(
            text=takes_texts(self.model), max_length=self.max_length, pooling=self.pooling,
            adapter=self.adapter, lora_r=self.lora_r, lora_alpha=self.lora_alpha,
            empty_text=self.empty_text)

    # ----------------------------------------------------------------- fitting
    def fit(self, X, y, sample_weight=None, **fit_params):
        """Fine-tune the pretrained network on ``X``, ``y``.

        Parameters
        ----------
        X : array-like, image paths, PIL images, texts or DataFrame
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample in the loss (multiplied by ``class_weight``'s).
        **fit_params
            Passed on to skorch.

        Returns
        -------
        self
        """
        self._validate_hyperparameters()
        inputs = self._adapt(X)
        if len(inputs) < 2:
            raise ValueError(f"fit needs at least 2 samples, got {len(inputs)} sample.")
        y = self._check_target(y, len(inputs))
        weights = fit_weights(y, len(inputs), sample_weight, self._class_weights())
        inputs, y, weights = self._drop_bad_images(inputs, y, weights)
        self.input_kind_ = inputs.kind
        self.n_features_in_ = _n_features(inputs)
        with seeded(self.random_state):
            if not (self.warm_start and self.initialized_):
                self._initialize_with_example(inputs)
            self._check_input_shape(inputs)
            reason = self._why_not_cached(inputs)
            self.training_path_ = "cached backbone features" if reason is None else (
                f"full network ({reason})")
            self.head_solver_ = self._resolve_head_solver(reason)
            self.head_solution_ = None  # set by the convex solver
            if reason is None:
                self._fit_head_on_cached_features(inputs, y, weights, **fit_params)
            else:
                self._train(inputs, y, weights, **fit_params)
        return self

    def _resolve_head_solver(self, reason: str | None) -> str:
        """``"convex"`` or ``"gradient"``: how the head is fitted (see ``head_solver``)."""
        if self.head_solver == "gradient":
            return "gradient"
        why_not = reason or ("a custom criterion" if self.criterion is not None else None)
        if why_not is None:
            return "convex"
        if self.head_solver == "convex":
            raise ValueError(f"head_solver='convex' solves a linear head on cached features of a "
                             f"frozen backbone, which this fit cannot use: {why_not}. Pass "
                             "head_solver='auto' or 'gradient'.")
        return "gradient"

    def _train(self, inputs, y, weights, **fit_params) -> None:
        """skorch's training loop under the validation policy, with the samples' weights."""
        plan = plan_validation(len(inputs), self.validation_fraction, self.patience,
                               self.max_epochs)
        self.validation_plan_ = plan
        self._fit_weights = weights
        try:
            NeuralNet.partial_fit(self, inputs, y, **fit_params)
        finally:
            del self._fit_weights  # transient: not a parameter, not fitted state
        self.validation_ = summarize(plan, self.history, dict(self.callbacks_).get("early_stopping"))

    def _why_not_cached(self, inputs: Inputs) -> str | None:
        """Why the frozen backbone's features cannot be computed once for this fit, or None."""
        if self.feature_cache is False:
            return "feature_cache=False"
        if self.freeze != "backbone" or self.unfreeze_at is not None or self.train_bn:
            return "the backbone trains during the fit"
        if self.adapter is not None:
            return "adapters train inside the backbone"
        if inputs.kind in ("array", "files", "pil") and (
                self.augment is True or callable(self.augment)
                or (self.augment == "auto" and inputs.kind != "array")):
            return "train-time augmentation is on"
        return why_cache_not_applicable(self.network_, partial(self._example_batch, inputs))

    def _fit_head_on_cached_features(self, inputs: Inputs, y, weights, **fit_params) -> None:
        """Run the frozen backbone once per sample (cached across fits), then fit the head alone:
        solved as the convex problem it is, or trained by the optimizer (``head_solver_``).

        The head module is shared with ``module_``, so the full network predicts with what it learned.
        """
        features = self._cached_features(inputs)
        if self.head_solver_ == "gradient":
            with self._head_only():
                self._train(features, y, weights, **fit_params)
            return
        self._solve_head_on(features, y, weights)

    def _solve_head_on(self, features: Inputs, y, weights) -> None:
        """The convex head: solved exactly on every sample; one history row with its loss."""
        head = self.module_.get_submodule(self.network_.head[-1])
        start = time.perf_counter()
        self.head_solution_ = self._solve_head(head, features.items, y, weights, self.head_C)
        self.initialize_history()
        self.history.new_epoch()
        self.history.record("epoch", 1)
        self.history.record("train_loss", self._loss_of(features, y, weights))
        self.history.record("dur", time.perf_counter() - start)
        self.validation_plan_ = ValidationPlan(
            None, 0, False, None, "convex head: solved on every sample, no epochs to pick")
        self.validation_ = summarize(self.validation_plan_, self.history)

    def _loss_of(self, features: Inputs, y, weights) -> float:
        """The (weighted) training loss of the network's head on cached features."""
        with torch.no_grad(), self._head_only():
            self._set_training(False)
            out = self.infer(torch.from_numpy(features.items))
            target = torch.as_tensor(y)
            if weights is None:
                return float(self.get_loss(out, target))
            return float(weighted_loss(self.criterion_, out, target, torch.from_numpy(weights)))

    def _cached_features(self, inputs: Inputs) -> Inputs:
        """The backbone's output (the head's input) for every sample, from the feature cache."""
        # fork the RNG: batches are then shuffled exactly as on the uncached path
        texts = inputs.kind == "texts"
        with torch.random.fork_rng(devices=[]):
            features = cached_backbone_features(
                self.network_, inputs, self._transform(inputs.kind, train=False),
                cache=shared_cache(self.cache_dir), batch_size=self.batch_size,
                num_workers=self.num_workers, device=self.device_,
                collate=self.network_.collate(self.max_length) if texts else None,
                options=f"max_length={self.max_length},pooling={self.pooling}" if texts else "")
        return Inputs(kind="features", items=features.numpy())

    @contextmanager
    def _head_only(self):
        """Let skorch see only the head (it shares its parameters with the full network)."""
        network = self.module_
        self.module_ = head_only_module(self.network_)
        try:
            yield
        finally:
            self.module_ = network

    def partial_fit(self, X, y=None, classes=None, sample_weight=None, **fit_params):
        """One more pass of ``max_epochs`` over ``X``, ``y``, keeping the weights (fits if unfitted).

        The whole network trains by gradient steps (no feature cache, no convex head).
        """
        if not self.initialized_:
            return self.fit(X, y, sample_weight=sample_weight, **fit_params)
        inputs = self._check_features(self._adapt(X))
        y = self._encode_target(_check_y(y, len(inputs)))
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
        return super().initialize()

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
        frozen = frozen_at_epoch(self.network_, 0, freeze=self.freeze, unfreeze_at=self.unfreeze_at,
                                 unfreeze=self.unfreeze, unfreeze_every=self.unfreeze_every)
        self.set_frozen(frozen)
        return self

    def initialize_criterion(self):
        criterion = self.criterion or self._default_criterion
        self.criterion_ = self.initialized_instance(criterion, self.get_params_for("criterion"))
        return self

    def initialize_optimizer(self, triggered_directly=None):
        groups = parameter_groups(self.network_, base_lr=self._stage_lr(0),
                                  backbone_lr_mult=self.backbone_lr_mult,
                                  layer_decay=self.layer_decay)
        kwargs = self.get_params_for("optimizer")
        kwargs.pop("lr", None)
        self.optimizer_ = self.optimizer(groups, lr=self._stage_lr(0), **kwargs)
        return self

    def _text_options(self) -> dict:
        """What a text model is built with (ignored for other models)."""
        return {"pooling": self.pooling, "adapter": self.adapter, "lora_r": self.lora_r,
                "lora_alpha": self.lora_alpha}

    def _stage_lr(self, epoch: int) -> float:
        if self.unfreeze_at is None or epoch < self.unfreeze_at:
            return self.lr
        return self.unfreeze_lr if self.unfreeze_lr is not None else self.lr / 10

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
    def _adapt(self, X) -> Inputs | Dataset:
        if isinstance(X, (Inputs, Dataset)):
            return X
        if takes_texts(self.model):  # the model decides: a path and a sentence are both str
            return adapt_texts(X, empty_text=self.empty_text)
        return adapt_inputs(X, path_column=self.path_column)

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
        if kind == "features":
            return None
        network = getattr(self, "network_", None)
        return make_transform(
            kind, train=train, preprocessing=network.preprocessing if network else None,
            image_size=self.image_size, mean=self.mean, std=self.std, augment=self.augment,
        )

    def get_dataset(self, X, y=None, training=False):
        inputs = self._adapt(X)
        if isinstance(inputs, Dataset):
            return inputs
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
        return dataset if weights is None else WeightedDataset(dataset, weights)

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
        network = getattr(self, "network_", None)
        collate = network.collate(self.max_length) if network is not None else None
        if collate is not None:  # text networks tokenize each batch (dynamic padding)
            kwargs.setdefault("collate_fn", collate)
        return getattr(self, prefix)(dataset, **kwargs)

    # ----------------------------------------------------------------- forward
    def infer(self, x, **fit_params):
        if isinstance(x, Mapping):  # tokenized texts: input_ids, attention_mask, ...
            batch = {key: value.to(self.device_, non_blocking=True) for key, value in x.items()}
            with autocast(self.device_):
                out = self.module_(**batch, **fit_params)
        else:
            x = x.to(self.device_, non_blocking=True)
            with autocast(self.device_):
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
                and getattr(self, "training_path_", None) == "cached backbone features"):
            # the backbone is the frozen pretrained one: its features for X may be cached already
            features = self._cached_features(inputs)
            with self._head_only():
                return NeuralNet.predict_proba(self, features)
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
        self._validate_hyperparameters()
        network = getattr(self, "network_", None)
        if network is None:
            network = resolve_network(self.model, self.weights, n_outputs=2, head=self.head,
                                      text_options=self._text_options())
        if epoch is None and hasattr(self, "frozen_"):
            frozen, base_lr = self.frozen_, self._stage_lr(len(self.history) - 1)
        else:
            epoch = epoch or 0
            frozen = frozen_at_epoch(network, epoch, freeze=self.freeze,
                                     unfreeze_at=self.unfreeze_at, unfreeze=self.unfreeze,
                                     unfreeze_every=self.unfreeze_every)
            base_lr = self._stage_lr(epoch)
        sizes = {n: p.numel() for n, p in network.module.named_parameters()}
        rows = [("head", -1, head_parameters(network), base_lr)]
        n_groups = len(network.groups)
        for i, group in enumerate(network.groups):
            depth = n_groups - 1 - i
            lr = base_lr * self.backbone_lr_mult * self.layer_decay**depth
            rows.append((group.name, depth, group.params, lr))
        table = []
        for name, depth, params, lr in rows:
            total = sum(sizes[p] for p in params)
            trained = sum(sizes[p] for p in params if p not in frozen)
            table.append({"group": name, "depth": depth, "n_params": total,
                          "trainable": trained / total if total else 0.0,
                          "lr": lr if trained else 0.0})
        return pd.DataFrame(table)

    # ----------------------------------------------------------------- hooks for subclasses
    _solve_head = None  # the convex solver of a linear head (see _probe)

    def _n_outputs(self) -> int:
        raise NotImplementedError

    def _check_class_weight(self) -> None:
        if self.class_weight is not None:
            raise ValueError(f"class_weight={self.class_weight!r} is for classifiers: weigh a "
                             "regressor's samples with fit(X, y, sample_weight=...).")

    def _class_weights(self):
        """``class_weight`` in terms of the encoded targets (None for regressors)."""
        return None

    def _check_target(self, y, n_samples: int):
        raise NotImplementedError

    def _encode_target(self, y):
        raise NotImplementedError


class PretrainedFineTuner(ClassifierMixin, _PretrainedNet):
    """Fine-tune a pretrained network as a scikit-learn classifier.

    A subclass of skorch's ``NeuralNet``: skorch's callbacks, history and progress bar work as usual.
    Every fine-tuning choice (which layer groups train, from which epoch, at what learning rate) is a
    constructor parameter, so ``GridSearchCV`` can search it.

    Parameters
    ----------
    model : str, path-like, torch.nn.Module or type
        A torchvision classification model name (``"resnet18"``, ``"vit_b_16"``...), a timm
        model ``"timm/<name>"`` or ``"timm/<name>.<pretrained tag>"`` (needs
        ``pip install skadapt[timm]``), your own module (instance or class, e.g. a network
        pretrained on your source domain), a Hugging Face image model (ViT, DINOv2, ConvNeXt: a
        local folder with its ``preprocessor_config.json``), or a Hugging Face text encoder (BERT
        family): a local directory holding ``config.json``, the weights and the tokenizer files,
        or a hub id ``"org/name"``. With a text model ``X`` is texts and the layer groups are the embeddings
        and each transformer layer (needs ``pip install skadapt[text]``; see ``docs/text.md``).
        Every source is described in ``docs/models.md``.
    weights : str, path or None, default=None
        For torchvision names: ``"DEFAULT"``, a weights name such as ``"IMAGENET1K_V1"``, or ``None``
        for random initialization; for timm names ``"DEFAULT"`` (timm's pretrained weights) or
        ``None``. For any image model: a checkpoint path (``.pt``/``.pth`` state dict, possibly
        nested under ``state_dict`` and with a ``module.`` prefix, or ``.safetensors``).
    head : str, optional
        Dotted name of the head to replace in your own module; by default its last ``nn.Linear``.
    freeze : {"backbone", "none"}, int or list of str, default="backbone"
        What is frozen when training starts: every layer group (train only the new head), nothing, all
        but the last ``k`` groups, or the parameters matching these ``fnmatch`` patterns.
    unfreeze_at : int, optional
        The epoch (0-based) at which stage 2 begins. ``None``: one stage.
    unfreeze : "all" or int, default="all"
        What becomes trainable in stage 2: everything, or the ``m`` frozen groups nearest the head.
    unfreeze_every : int, optional
        Gradual unfreezing: from ``unfreeze_at`` on, thaw one more group every ``unfreeze_every``
        epochs (up to ``unfreeze``).
    unfreeze_lr : float, optional
        Base learning rate of stage 2 (default ``lr / 10``).
    backbone_lr_mult : float, default=1.0
        Discriminative learning rates: the backbone's rate as a multiple of the head's.
    layer_decay : float, default=1.0
        Layer-wise decay: each group one step deeper (away from the head) gets ``lr * layer_decay``.
    train_bn : bool, default=False
        Keep the affine parameters of frozen BatchNorm layers trainable. Their running statistics
        stay frozen either way.
    image_size : int, optional
        Input size for image files and PIL images (by default the model's own: torchvision and
        timm names know it, with or without weights; required for your own module); for arrays,
        resize to it.
    mean, std : sequence of float, optional
        Normalization; by default the weights' own (ImageNet's for images without weights).
        Arrays are taken as already normalized unless these are given.
    augment : "auto", bool or callable, default="auto"
        Train-time augmentation (random resized crop, horizontal flip): on for images, off for arrays.
        A callable replaces it (applied to the RGB PIL image, or the tensor for arrays).
    path_column : str, optional
        The column holding image paths when ``X`` is a DataFrame.
    on_bad_image : {"raise", "skip"}, default="raise"
        What ``fit`` does with an unreadable image file: raise an error naming it, or skip it with a
        warning. ``predict`` always raises.
    max_length : int, default=128
        Text models: texts are truncated to this many tokens; each batch is padded to its longest.
    pooling : {"mean", "cls"}, default="mean"
        Text models: the head sees the mean of the token states over the attention mask, or the
        first token's state.
    adapter : {None, "lora"}, default=None
        Text models: ``"lora"`` adds LoRA adapters (``peft``) to the attention layers. Like the head
        they always train; ``freeze`` applies to the pretrained weights, so the default
        ``freeze="backbone"`` trains only the adapters and the head.
    lora_r : int, default=8
        Rank of the LoRA adapters.
    lora_alpha : float, default=16
        LoRA scaling: updates are scaled by ``lora_alpha / lora_r``.
    empty_text : {"raise", "allow"}, default="raise"
        Text models: missing (None/NaN) or empty texts raise an error naming their positions, or
        are treated as empty texts.
    feature_cache : "auto" or False, default="auto"
        When the backbone stays frozen for the whole fit (``freeze="backbone"``, no
        ``unfreeze_at``, ``train_bn=False``) and preprocessing is deterministic (no augmentation),
        run the backbone once per sample and train the head on its cached outputs: the same result,
        many times faster across epochs, CV folds and grid points (cached by sample content and a
        fingerprint of the network and preprocessing; bounded in memory, see
        ``SKADAPT_CACHE_MEMORY_BYTES``). ``training_path_`` says which path ran and why.
    head_solver : {"auto", "convex", "gradient"}, default="auto"
        How the head is fitted when it trains alone on cached features. ``"convex"`` solves it
        as the convex problem it then is: multinomial (binary: binomial) logistic regression with
        an L2 penalty by L-BFGS for classifiers, ridge regression for regressors (sklearn's
        solvers, on every sample, no epochs). ``"gradient"`` trains it for ``max_epochs`` with the
        optimizer. ``"auto"``: convex whenever the feature cache applies and the criterion is the
        default one, else gradient.
    head_C : float, default=1.0
        Inverse L2 penalty of the convex head, as ``C`` in ``LogisticRegression`` (ridge:
        ``alpha = 1 / head_C``).
    class_weight : None, "balanced" or dict, default=None
        Classifiers: weights of the classes in the loss (and in the convex head), as in sklearn.
        ``"balanced"`` weighs each class by ``n_samples / (n_classes * its count)``; a dict maps
        labels to weights (others weigh 1). Multiplied with ``fit``'s ``sample_weight``; the
        product is rescaled to average 1, so only ratios matter.
    cache_dir : path, optional
        Also keep cached features on disk there, shared between processes (``n_jobs>1``).
    image_cache_mb : float, default=1024
        Image files are decoded and resized (to the resize size before cropping) once per fit and
        kept in memory up to this bound, so later epochs only augment them; beyond it the rest is
        decoded on every access. Random crops are then taken from the resized image rather than the
        full-resolution file. ``0`` decodes every file on every epoch.
    lr : float, default=1e-3
        Learning rate of the head (and base of every other rate).
    lr_schedule : {"cosine", "constant"}, default="cosine"
        Linear warm-up then cosine decay within each stage, or a constant rate.
    warmup : float, default=0.1
        Fraction of each stage spent warming up.
    max_epochs : int, default=10
    batch_size : int, default=32
    validation_fraction : "auto", float or None, default="auto"
        Stratified internal validation split. ``"auto"``: 10% for early stopping when that is at
        least 100 samples, else none (the fit trains on every sample for the whole schedule). A
        float holds that fraction out and records ``valid_loss``/``valid_acc`` every epoch; it
        stops early and restores the best epoch only when the split has at least 100 samples.
        ``None`` trains on everything. ``validation_`` says what happened.
    patience : "auto", int or None, default="auto"
        Epochs without improvement of the validation loss before stopping early (then the best
        epoch's weights are restored). ``"auto"``: ``max(5, max_epochs // 4)``. ``None``: never
        stop early.
    num_workers : int, default=0
        DataLoader workers (image decoding runs in parallel).
    random_state : int, optional
        Seed for initialization, shuffling, augmentation and the validation split.
    device : str, default="auto"
        ``"auto"``: a GPU when present (with bfloat16 autocast), else the CPU.
    criterion, optimizer, callbacks, verbose, **kwargs
        As in skorch (``optimizer__weight_decay=...``, ``callbacks__early_stopping__patience=...``);
        the default criterion is ``CrossEntropyLoss`` and the optimizer ``AdamW``.

    Attributes
    ----------
    classes_ : ndarray
        The class labels, in the order of ``predict_proba``'s columns.
    network_ : ResolvedNetwork
        The network with its head, layer groups and preprocessing.
    history_ : skorch.History
        Per-epoch ``train_loss``, ``valid_loss``, ``valid_acc``, ``lr``, ``n_trainable``.
    training_path_ : str
        ``"cached backbone features"``, or ``"full network (<why the cache was not used>)"``.
    trainable_fraction_ : float
        Fraction of the network's parameters that train now (e.g. about 0.01 with LoRA).
    head_solver_ : {"convex", "gradient"}
        How the head was fitted; ``head_solution_`` (None unless convex) gives the solver, its
        iterations and whether it converged.
    validation_ : dict
        What the internal validation did: ``n_validation``, ``early_stopping``, ``patience``,
        ``epochs_run``, ``best_epoch`` (by validation loss; None without a split),
        ``restored_best`` (whether the best epoch's weights replaced the last ones) and
        ``policy`` (the rule applied, in words).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skadapt import PretrainedFineTuner
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> X = np.random.default_rng(0).normal(size=(60, 4)).astype("float32")
    >>> y = np.where(X[:, 0] > 0, "pos", "neg")
    >>> clf = PretrainedFineTuner(net, freeze="none", max_epochs=3, random_state=0).fit(X, y)
    >>> clf.predict(X[:2]).shape
    (2,)
    """

    _default_criterion = torch.nn.CrossEntropyLoss
    _solve_head = staticmethod(solve_classifier_head)

    def _scoring_callbacks(self):
        if self.validation_fraction is None:
            return []
        return [("valid_acc", EpochScoring(_encoded_accuracy, name="valid_acc",
                                           lower_is_better=False, use_caching=True,
                                           target_extractor=_target_numpy))]

    def _check_class_weight(self) -> None:
        weights = self.class_weight
        if weights is None or isinstance(weights, Mapping) or (
                isinstance(weights, str) and weights == "balanced"):
            return
        raise ValueError(f"class_weight={weights!r}: pass None, 'balanced' or a dict mapping "
                         "class labels to weights.")

    def _class_weights(self):
        if not isinstance(self.class_weight, Mapping):
            return self.class_weight
        unknown = [label for label in self.class_weight if label not in set(self.classes_)]
        if unknown:
            raise ValueError(f"class_weight names labels that are not in y: {unknown[:5]}; y's "
                             f"classes are {list(self.classes_)[:10]}.")
        return {code: self.class_weight[label] for code, label in enumerate(self.classes_)
                if label in self.class_weight}

    def _check_target(self, y, n_samples):
        y = _check_y(y, n_samples)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; using "
                          "y.ravel().", DataConversionWarning, stacklevel=3)
            y = y.ravel()
        if pd.isna(y).any():
            raise ValueError("y has missing labels: drop those samples (skadapt.clean_rows does "
                             "it and records them) before fitting.")
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y has a single class {self.classes_[0]!r}: a classifier needs at "
                             "least 2 classes.")
        return self._encode_target(y)

    def _encode_target(self, y):
        y = np.asarray(y)
        codes = np.searchsorted(self.classes_, y)
        codes = np.clip(codes, 0, len(self.classes_) - 1)
        unknown = self.classes_[codes] != y
        if unknown.any():
            raise ValueError(f"y has labels not seen in the first fit: {np.unique(y[unknown])[:5]}")
        return codes.astype(np.int64)

    def _n_outputs(self):
        return len(self.classes_)

    def _stratify_labels(self, y):
        return y

    def predict_proba(self, X):
        """Class probabilities, one column per entry of ``classes_``."""
        return self._forward_numpy(X)

    def predict(self, X):
        """The most probable class of each sample, as a label of ``classes_``."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]


class PretrainedFineTunerRegressor(RegressorMixin, _PretrainedNet):
    """Fine-tune a pretrained network as a scikit-learn regressor.

    The same parameters as :class:`PretrainedFineTuner`; the new head has one output per target
    column of ``y`` and the default criterion is ``MSELoss``. Targets are used as given: scale them
    (e.g. with ``TransformedTargetRegressor``) when they are far from unit scale.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skadapt import PretrainedFineTunerRegressor
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> X = np.random.default_rng(0).normal(size=(80, 3)).astype("float32")
    >>> y = X @ np.array([1.0, -2.0, 0.5])
    >>> reg = PretrainedFineTunerRegressor(net, freeze="none", max_epochs=3, random_state=0)
    >>> reg.fit(X, y).predict(X[:2]).shape
    (2,)
    """

    _default_criterion = torch.nn.MSELoss
    _solve_head = staticmethod(solve_regressor_head)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _check_target(self, y, n_samples):
        y = _check_y(y, n_samples)
        try:
            y = y.astype(np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError("y must be numeric for a regressor; use PretrainedFineTuner for "
                             "class labels.") from error
        if not np.isfinite(y).all():
            raise ValueError("y has NaN or infinite values: drop or impute them before fitting.")
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self.y_ndim_ = y.ndim
        return self._encode_target(y)

    def _encode_target(self, y):
        y = np.asarray(y, dtype=np.float32)
        return y.reshape(len(y), -1)

    def _n_outputs(self):
        return self.n_outputs_

    @available_if(lambda self: False)
    def predict_proba(self, X):
        """Not available: a regressor predicts values (skorch's NeuralNet defines this)."""

    def predict(self, X):
        """Predicted targets, shaped like the ``y`` given to ``fit``."""
        out = self._forward_numpy(X).astype(np.float64)
        return out.ravel() if self.y_ndim_ == 1 else out


# --------------------------------------------------------------------- helpers
def _encoded_accuracy(net, X, y) -> float:
    """Validation accuracy on the encoded targets skorch sees during fit."""
    return accuracy_score(np.asarray(y), net.predict_proba(X).argmax(axis=1))


def _target_numpy(y) -> np.ndarray:
    """The targets of a batch (without their weights), for skorch's scoring callbacks."""
    return target_of(y).detach().cpu().numpy()


def _check_positive(name: str, value) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name}={value!r} must be a positive number.")


def _check_y(y, n_samples: int) -> np.ndarray:
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
