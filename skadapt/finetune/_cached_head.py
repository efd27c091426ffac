"""The fine-tuner's frozen-backbone path: the head fitted alone on cached backbone features.

When the backbone stays frozen for the whole fit and the preprocessing is deterministic, training
the whole network equals training its head on the backbone's outputs, computed once per sample
(and cached across epochs, folds and grid points). The head is then either solved as the convex
problem it is (``_probe``) or trained by skorch's loop on the features (``head_solver``).
``predict`` on such an estimator reuses the cache too: its backbone is the pretrained one.

Whether the cache applies is checked by running the network on two samples
(``why_cache_not_applicable``); the answer is remembered per process for the same architecture,
weights, head and preprocessing (an LRU of 256 answers; ``clear_cacheability_memo`` empties it),
so a grid search runs that check once, not once per fit.

A mixin of the fine-tuning estimators (``_estimator._PretrainedNet``): it works on the estimator's
own state (``module_``, ``network_``, ``criterion_``, ``history``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
from skorch import NeuralNet

from skadapt.finetune._adapters import Inputs
from skadapt.finetune._cacheability import head_only_module, why_cache_not_applicable
from skadapt.finetune._cached_features import cached_backbone_features
from skadapt.finetune._embedding_cache import shared_cache
from skadapt.finetune._fingerprint import fingerprint, module_fingerprint, transform_fingerprint
from skadapt.finetune._freezing import set_inference_mode
from skadapt.finetune._validation import ValidationPlan, summarize
from skadapt.finetune._weights import weighted_loss

__all__ = ["CachedHeadMixin", "clear_cacheability_memo"]

# What why_cache_not_applicable answered, by network and input (a few bytes each): an LRU.
_MAX_CACHEABILITY = 256
_CACHEABILITY: OrderedDict[str, str | None] = OrderedDict()
_LOCK = threading.Lock()


def clear_cacheability_memo() -> None:
    """Forget what the cacheability checks answered (they run again on the next fit)."""
    with _LOCK:
        _CACHEABILITY.clear()


class CachedHeadMixin:
    """Fit and predict through cached backbone features when that is the same computation."""

    def _why_not_cached(self, inputs: Inputs) -> tuple[str | None, str | None]:
        """Why the frozen backbone's features cannot be computed once for this fit (or None), and
        the backbone's :func:`module_fingerprint` when it was computed to decide."""
        if self.feature_cache is False:
            return "feature_cache=False", None
        if self.freeze != "backbone" or self.unfreeze_at is not None or self.train_bn:
            return "the backbone trains during the fit", None
        if self.adapter is not None:
            return "adapters train inside the backbone", None
        if inputs.kind in ("array", "files", "pil") and (
                self.augment is True or callable(self.augment)
                or (self.augment == "auto" and inputs.kind != "array")):
            return "train-time augmentation is on", None
        backbone = module_fingerprint(self.network_.module, exclude=self.network_.head)
        return self._network_cacheability(inputs, backbone), backbone

    def _network_cacheability(self, inputs: Inputs, backbone: str) -> str | None:
        """:func:`why_cache_not_applicable` for this network (whose backbone has the fingerprint
        ``backbone``) and kind of input, checked by running the network on two samples once per
        process for the same architecture, weights, head and preprocessing (every fit of a grid
        search asks the same question)."""
        network = self.network_
        head = network.module.get_submodule(network.head[-1])
        shape = inputs.items.shape[1:] if inputs.kind == "array" else ()
        key = fingerprint(backbone,
                          f"heads={network.head!r};{head!r};{type(head).__qualname__}",
                          f"kind={inputs.kind};shape={tuple(shape)}",
                          transform_fingerprint(self._transform(inputs.kind, train=False)),
                          f"max_length={self.max_length}" if inputs.kind == "texts" else "")
        with _LOCK:
            if key in _CACHEABILITY:
                _CACHEABILITY.move_to_end(key)
                return _CACHEABILITY[key]
        reason = why_cache_not_applicable(network, partial(self._example_batch, inputs))
        with _LOCK:
            _CACHEABILITY[key] = reason
            while len(_CACHEABILITY) > _MAX_CACHEABILITY:
                _CACHEABILITY.popitem(last=False)
        return reason

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

    def _fit_head_on_cached_features(self, inputs: Inputs, y, weights, *, backbone: str,
                                     **fit_params) -> None:
        """Run the frozen backbone (fingerprint ``backbone``) once per sample (cached across fits),
        then fit the head alone: solved as the convex problem it is, or trained by the optimizer
        (``head_solver_``).

        The head module is shared with ``module_``, so the full network predicts with what it learned.
        """
        features = self._cached_features(inputs, backbone)
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

    def _cached_features(self, inputs: Inputs, backbone: str | None = None) -> Inputs:
        """The backbone's output (the head's input) for every sample, from the feature cache
        (``backbone``: the backbone's fingerprint, when known)."""
        # fork the RNG: batches are then shuffled exactly as on the uncached path
        texts = inputs.kind == "texts"
        with torch.random.fork_rng(devices=[]):
            features = cached_backbone_features(
                self.network_, inputs, self._transform(inputs.kind, train=False),
                cache=shared_cache(self.cache_dir), batch_size=self.batch_size,
                num_workers=self.num_workers, device=self.device_, precision=self.precision,
                collate=self.network_.collate(self.max_length) if texts else None,
                options=f"max_length={self.max_length},pooling={self.pooling}" if texts else "",
                backbone=backbone)
        return Inputs(kind="features", items=features.numpy())

    def _predict_from_cached_features(self, inputs: Inputs) -> np.ndarray:
        """``predict_proba``'s outputs through the cache: the backbone is the frozen pretrained
        one, so the features of ``inputs`` may be cached already."""
        features = self._cached_features(inputs)
        with self._head_only():
            return NeuralNet.predict_proba(self, features)

    @contextmanager
    def _head_only(self):
        """Let skorch see only the head (it shares its parameters with the full network)."""
        network = self.module_
        self.module_ = head_only_module(self.network_)
        # the frozen backbone does not run here: skorch's train()/eval() switches need not put
        # its parts back in inference mode on every batch (they are, once, on the way out)
        parts = self.__dict__.get("inference_modules_")
        if parts is not None:
            self.inference_modules_ = []
        try:
            yield
        finally:
            self.module_ = network
            if parts is not None:
                self.inference_modules_ = parts
                set_inference_mode(parts)
