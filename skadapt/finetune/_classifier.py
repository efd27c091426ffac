"""``PretrainedFineTuner``: a pretrained network fine-tuned as a scikit-learn classifier.

What is particular to classification lives here: labels encoded to ``classes_``, class weights,
the ``valid_acc`` score, ``predict_proba``. Everything else is the shared core
(``_estimator._PretrainedNet``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.base import ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.metrics import accuracy_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets
from skorch.callbacks import EpochScoring

from skadapt.finetune._estimator import _PretrainedNet, check_y
from skadapt.finetune._probe import solve_classifier_head
from skadapt.finetune._train_accuracy import TrainingAccuracy
from skadapt.finetune._weights import target_of

__all__ = ["PretrainedFineTuner"]


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
        pretrained on your source domain; an instance is never changed: each fit trains a copy,
        and ``clone`` shares it), a Hugging Face image model (ViT, DINOv2, ConvNeXt: a
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
        ``skadapt.set_config``). ``training_path_`` says which path ran and why.
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
    checkpoint_dir : path, optional
        Make an interrupted fit resumable: after every complete epoch, write (atomically) the
        weights, the optimizer's state, the schedule's position and unfreezing stage, the
        early-stopping state, the history and the random number generators' states into a
        subfolder named by a fingerprint of the parameters and the data (so fits of other
        settings or folds, e.g. in ``GridSearchCV(n_jobs=2)``, never share one; the file is
        ``checkpoint_path_``). ``fit(X, y, resume=True)`` continues from the last complete epoch;
        with the same ``random_state`` on a CPU it ends with exactly the weights of an
        uninterrupted fit. The file is read with ``torch.load(weights_only=True)`` and kept after
        the fit. Only the full-network path checkpoints: a head trained on cached features
        (``used_feature_cache_``) is fast to refit and writes nothing, nor does ``partial_fit``.
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
        ``"auto"``: a CUDA GPU when present, else Apple's MPS, else the CPU; or a torch device
        (``"cpu"``, ``"cuda:1"``, ``"mps"``). On CUDA, batches are pinned in memory and copied
        without blocking (``iterator_train__pin_memory=False`` turns pinning off).
    precision : {"auto", "32", "bf16-mixed", "16-mixed"}, default="auto"
        ``"auto"``: bfloat16 mixed precision on a CUDA GPU, float32 elsewhere (what earlier
        versions did). ``"bf16-mixed"``: the forward pass under bfloat16 autocast (CUDA, CPU, MPS).
        ``"16-mixed"``: float16 autocast with gradient scaling (``grad_scaler_``), for GPUs without
        bfloat16; on the CPU it runs, slowly, with a warning. Weights, gradients and the optimizer
        stay float32. The cached-features path of a frozen backbone keeps ``"auto"``'s precision.
    accumulate_grad_batches : int, default=1
        Batches whose gradients add up to one optimizer step: each batch's loss is divided by
        their number, so ``k`` batches of ``batch_size`` give (up to float rounding) the step of one
        batch of ``k * batch_size`` without its memory (except for BatchNorm statistics, taken per
        batch). The last, partial group of an epoch steps too, on the mean of its batches. The
        learning-rate schedule counts optimizer steps.
    channels_last : bool, default=False
        Convolution weights and 4-D input batches in NHWC memory order, faster with mixed
        precision on recent GPUs; the results are the same up to float rounding. For image
        inputs only: other inputs raise a ``ValueError``.
    compile : bool, default=False
        Compile the network with ``torch.compile`` (in place: parameter names and saved weights
        are unchanged); options as ``compile__mode="max-autotune"``, ``compile__backend=...``.
        The first batches take longer while it compiles.
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
    used_feature_cache_ : bool
        Whether the head was fitted alone on cached backbone features (then ``predict`` reads the
        cache too); ``training_path_`` says the same in words: ``"cached backbone features"``, or
        ``"full network (<why the cache was not used>)"``.
    training_path_ : str
        Which path ``fit`` took, and why, for reports.
    precision_ : {"32", "bf16-mixed", "16-mixed"}
        The precision ``precision`` resolved to on the device of the last fit.
    grad_scaler_ : torch.amp.GradScaler or None
        The float16 loss scaler of ``precision="16-mixed"`` (None otherwise).
    checkpoint_path_ : str or None
        The checkpoint file this fit wrote (None without ``checkpoint_dir`` or on the
        cached-features path).
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

    _parameter_constraints = {
        **_PretrainedNet._parameter_constraints,
        "class_weight": [StrOptions({"balanced"}), Mapping, None],
    }
    _default_criterion = torch.nn.CrossEntropyLoss
    _solve_head = staticmethod(solve_classifier_head)

    def _scoring_callbacks(self):
        train = [("train_acc", TrainingAccuracy())]
        if self.validation_fraction is None:
            return train
        return [*train, ("valid_acc", EpochScoring(_encoded_accuracy, name="valid_acc",
                                                   lower_is_better=False, use_caching=True,
                                                   target_extractor=_target_numpy))]

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
        y = check_y(y, n_samples)
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


def _encoded_accuracy(net, X, y) -> float:
    """Validation accuracy on the encoded targets skorch sees during fit."""
    return accuracy_score(np.asarray(y), net.predict_proba(X).argmax(axis=1))


def _target_numpy(y) -> np.ndarray:
    """The targets of a batch (without their weights), for skorch's scoring callbacks."""
    return target_of(y).detach().cpu().numpy()
