"""The learning-rate range test (fastai's ``lr_find``, after Leslie Smith) for the fine-tuners.

A copy of the estimator trains for up to ``num_iter`` batches while its learning rate grows
exponentially from ``start_lr`` to ``end_lr``; the loss of each batch is recorded and smoothed, and
the run stops once the smoothed loss has blown up. A good learning rate lies where the loss still
falls steeply, well before the minimum.

The copy goes through the estimator's own data path (its inputs, transforms, head and freezing), so
what the test trains is what the first epoch of ``fit`` trains. The caller's estimator is never
touched: ``sklearn.base.clone`` gives a fresh one, built from the same parameters.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from skadapt.finetune._decoding import find_unreadable
from skadapt.finetune._device import seeded

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SUGGESTIONS = ("valley", "steepest", "minimum")
_MIN_ITER = 5
_SHORT_CURVE = 10  # fewer steps than this before divergence: warn that the suggestion is shaky


@dataclass(frozen=True, eq=False)
class LRFinderResult:
    """The curve of a learning-rate range test and the learning rate it suggests.

    Returned by :func:`lr_find`. Every array has one entry per training step that ran.

    Attributes
    ----------
    lrs : numpy.ndarray
        The value of the estimator's ``lr`` at each step (the head's rate; every layer group's rate
        kept its ratio to it, as in ``fit``): a rate read off this axis is a value for ``lr``.
    losses : numpy.ndarray
        The training loss of the batch of each step.
    smoothed : numpy.ndarray
        Its exponential moving average (bias-corrected, as in fastai).
    suggestion : float
        The suggested learning rate: pass it as ``lr``.
    method : str
        How it was chosen: ``"valley"``, ``"steepest"`` or ``"minimum"``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skadapt import PretrainedFineTuner, lr_find
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> y = X[:, 0] > 0
    >>> result = lr_find(PretrainedFineTuner(net, freeze="none", random_state=0), X, y,
    ...                  num_iter=30)
    >>> list(result.to_frame().columns)
    ['lr', 'loss', 'smoothed_loss']
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    method: str

    def to_frame(self) -> pd.DataFrame:
        """One row per step: columns ``lr``, ``loss`` and ``smoothed_loss``."""
        return pd.DataFrame({"lr": self.lrs, "loss": self.losses, "smoothed_loss": self.smoothed})

    def plot(self, ax: Axes | None = None) -> Axes:
        """Draw the loss against the learning rate (log scale), with the suggestion marked.

        Needs matplotlib: ``pip install skadapt[plots]``.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; by default on a new figure (not registered with pyplot, so nothing
            global changes: save it with ``ax.figure.savefig(...)``).

        Returns
        -------
        matplotlib.axes.Axes
        """
        if ax is None:
            ax = _new_axes()
        ax.plot(self.lrs, self.losses, color="C0", alpha=0.3, linewidth=1, label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", label="smoothed loss")
        at = float(np.interp(np.log(self.suggestion), np.log(self.lrs), self.smoothed))
        ax.plot([self.suggestion], [at], "o", color="C3",
                label=f"suggestion ({self.method}): {self.suggestion:.2g}")
        ax.axvline(self.suggestion, color="C3", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_ylim(*_loss_range(self.losses, self.smoothed))
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title("Learning-rate range test")
        ax.legend(fontsize="small")
        return ax

    def __repr__(self) -> str:
        return (f"LRFinderResult(suggestion={self.suggestion:.3g}, method={self.method!r}, "
                f"{len(self.lrs)} steps from {self.lrs[0]:.3g} to {self.lrs[-1]:.3g})")


def lr_find(
    estimator: Any,
    X: Any,
    y: Any = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    smooth: float = 0.05,
    diverge: float = 4.0,
    suggestion: str = "valley",
) -> LRFinderResult:
    """Run a learning-rate range test on a copy of ``estimator`` and suggest a learning rate.

    A clone of ``estimator`` (same parameters, fresh pretrained weights) trains on ``X``, ``y``
    for up to ``num_iter`` batches, its learning rate growing exponentially from ``start_lr`` to
    ``end_lr``; every layer group keeps its ratio to the head's rate (``backbone_lr_mult``,
    ``layer_decay``), and what trains is what trains in the first epoch of ``fit`` (``freeze``),
    through the same inputs, transforms and head. The run stops early once the smoothed loss
    exceeds ``diverge`` times its best value, or is no longer finite. ``estimator`` itself is
    left as it was, fitted or not.

    Parameters
    ----------
    estimator : PretrainedFineTuner or PretrainedFineTunerRegressor
        Fitted or not; only its parameters are used.
    X : array-like, list of paths or texts, or DataFrame
        Training inputs, as for ``fit``.
    y : array-like of shape (n_samples,)
        Training targets, as for ``fit``.
    start_lr, end_lr : float, default=1e-7 and 10.0
        The learning rates of the first and the last step (``0 < start_lr < end_lr``).
    num_iter : int, default=100
        Training steps (batches) at most, cycling over the data when it has fewer batches.
    smooth : float, default=0.05
        Weight of each new loss in the exponential moving average (fastai's ``1 - beta``).
    diverge : float, default=4.0
        Stop once the smoothed loss exceeds this multiple of its best value so far.
    suggestion : {"valley", "steepest", "minimum"}, default="valley"
        ``"valley"`` (fastai's default): the middle of the longest stretch over which the
        smoothed loss keeps falling. ``"steepest"``: where the smoothed loss falls fastest
        against the log of the learning rate. ``"minimum"``: a tenth of the rate at the lowest
        smoothed loss. As in fastai, the first tenth of the steps and the last five are left out
        of the choice.

    Returns
    -------
    LRFinderResult
        The rates and losses of every step, the suggested rate; ``plot()`` draws the curve.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skadapt import PretrainedFineTuner, lr_find
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> y = X[:, 0] > 0
    >>> clf = PretrainedFineTuner(net, freeze="none", batch_size=16, random_state=0)
    >>> result = lr_find(clf, X, y, num_iter=50)
    >>> bool(1e-7 <= result.suggestion <= 10.0)
    True
    >>> clf = clf.set_params(lr=result.suggestion).fit(X, y)  # doctest: +SKIP
    """
    _check_parameters(start_lr, end_lr, num_iter, smooth, diverge, suggestion)
    if not hasattr(estimator, "_initialize_with_example"):
        raise TypeError(f"lr_find needs a PretrainedFineTuner or PretrainedFineTunerRegressor, "
                        f"got {type(estimator).__name__}: for a Pipeline, pass its last step "
                        "and the data as the previous steps transform it.")
    net = clone(estimator)
    net.set_params(validation_fraction=None, lr_schedule="constant", max_epochs=1)
    net._validate_params()
    inputs = net._adapt(X)
    if len(inputs) < 2:
        raise ValueError(f"lr_find needs at least 2 samples, got {len(inputs)}.")
    y = net._check_target(y, len(inputs))
    inputs, y = _without_bad_images(net, inputs, y)
    with seeded(net.random_state):
        net._initialize_with_example(inputs)
        ratios = [group["base_lr"] / net.lr for group in net.optimizer_.param_groups]
        lrs, losses, smoothed = _range_test(
            net, inputs, y, ratios, schedule=_schedule(start_lr, end_lr, num_iter),
            smooth=smooth, diverge=diverge)
    if not losses:  # the first loss comes before any update: no learning rate is to blame
        raise ValueError("the training loss is not finite at the first step, before any update: "
                         "the network gives NaN or infinite outputs or losses on this data; "
                         "check the pretrained weights and the scale of X.")
    if len(losses) < min(_MIN_ITER, num_iter):
        raise ValueError(f"the loss blew up after {len(losses)} step(s), at lr={lrs[-1]:.3g}: "
                         f"there is no curve to read; lower start_lr (e.g. "
                         f"start_lr={start_lr / 1000:g}).")
    if len(losses) < min(_SHORT_CURVE, num_iter):
        warnings.warn(f"the loss diverged after {len(losses)} of {num_iter} steps, at "
                      f"lr={lrs[-1]:.3g}: the suggestion rests on few points; lower start_lr "
                      "or end_lr.", UserWarning, stacklevel=2)
    lrs, losses, smoothed = (_frozen_array(values) for values in (lrs, losses, smoothed))
    lr = suggest(lrs, smoothed, method=suggestion, num_iter=num_iter)
    return LRFinderResult(lrs=lrs, losses=losses, smoothed=smoothed, suggestion=lr,
                          method=suggestion)


def _range_test(net, inputs, y, ratios: list[float], *, schedule: np.ndarray, smooth: float,
                diverge: float) -> tuple[list[float], list[float], list[float]]:
    """Train ``net`` one batch per learning rate of ``schedule``; stop when the loss blows up.

    Returns the rates, raw losses and smoothed losses of the steps whose loss was finite.
    """
    dataset = net.get_dataset(inputs, y, training=True)
    iterator = net.get_iterator(dataset, training=True)
    lrs, losses, smoothed = [], [], []
    average, best, beta = 0.0, math.inf, 1.0 - smooth
    while True:  # as many passes over the data as the schedule's steps need
        n_batches = 0
        for batch in iterator:
            if len(lrs) == len(schedule):
                return lrs, losses, smoothed
            n_batches += 1
            lr = float(schedule[len(lrs)])
            for group, ratio in zip(net.optimizer_.param_groups, ratios):
                group["lr"] = lr * ratio
            loss = _scalar(net.train_step(batch)["loss"])
            if not math.isfinite(loss):
                return lrs, losses, smoothed
            average = beta * average + (1.0 - beta) * loss
            value = average / (1.0 - beta ** (len(losses) + 1))  # bias correction
            lrs.append(lr)
            losses.append(loss)
            smoothed.append(value)
            best = min(best, value)
            if not math.isfinite(value) or value > diverge * best:
                return lrs, losses, smoothed
        if n_batches == 0:
            raise ValueError("the training data gave no batch: pass more samples.")


def _without_bad_images(net, inputs, y):
    """With ``on_bad_image="skip"``, leave unreadable image files out, as ``fit`` does (it warns)."""
    if net.on_bad_image != "skip" or getattr(inputs, "kind", None) != "files":
        return inputs, y
    bad = [i for i, _ in find_unreadable(inputs)]
    if not bad:
        return inputs, y
    keep = np.setdiff1d(np.arange(len(inputs)), bad)
    return inputs.subset(keep), y[keep]


def _schedule(start_lr: float, end_lr: float, num_iter: int) -> np.ndarray:
    """``num_iter`` rates growing by a constant factor, from ``start_lr`` to ``end_lr``."""
    return start_lr * (end_lr / start_lr) ** (np.arange(num_iter) / (num_iter - 1))


def suggest(lrs: np.ndarray, smoothed: np.ndarray, *, method: str = "valley",
            num_iter: int | None = None) -> float:
    """The learning rate that ``method`` picks on a smoothed range-test curve (as in fastai).

    As fastai does, the first ``num_iter // 10`` steps (a noisy start) and the last five (the
    blow-up) are left out, when enough steps remain.
    """
    if method not in SUGGESTIONS:
        raise ValueError(f"suggestion={method!r}: pass one of {SUGGESTIONS}.")
    lrs, smoothed = np.asarray(lrs, dtype=float), np.asarray(smoothed, dtype=float)
    start, stop = (len(lrs) if num_iter is None else num_iter) // 10, len(lrs) - 5
    if stop - start >= 3:
        lrs, smoothed = lrs[start:stop], smoothed[start:stop]
    if len(lrs) < 2:
        return float(lrs[0])
    if method == "minimum":
        return float(lrs[np.argmin(smoothed)] / 10)
    if method == "steepest":
        slopes = np.diff(smoothed) / np.diff(np.log(lrs))
        return float(lrs[np.argmin(slopes)])
    return float(lrs[_valley(smoothed)])


def _valley(losses: np.ndarray) -> int:
    """fastai's ``valley``: the index in the middle of the longest run of falling losses.

    The run is the longest strictly decreasing subsequence; fastai takes the middle of its middle
    third (``start + L/3 + L/6``), in log-rate space about half way down the valley.
    """
    n = len(losses)
    longest = np.ones(n, dtype=int)  # longest[i]: the longest decreasing subsequence ending at i
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            longest[i] = longest[:i][higher].max() + 1
    end = int(np.argmax(longest))  # the first index reaching the longest run
    start = end - int(longest[end]) + 1
    third = (end - start) / 3
    return start + int(third) + int(third / 2)


def _check_parameters(start_lr, end_lr, num_iter, smooth, diverge, suggestion) -> None:
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if not _is_real(value) or not 0 < value < math.inf:
            raise ValueError(f"{name}={value!r}: pass a positive learning rate, e.g. "
                             f"{name}={1e-7 if name == 'start_lr' else 10.0}.")
    if not start_lr < end_lr:
        raise ValueError(f"start_lr={start_lr!r} must be below end_lr={end_lr!r}: pass "
                         "0 < start_lr < end_lr, e.g. start_lr=1e-7, end_lr=10.")
    if not isinstance(num_iter, numbers.Integral) or isinstance(num_iter, bool) \
            or num_iter < _MIN_ITER:
        raise ValueError(f"num_iter={num_iter!r}: pass an int >= {_MIN_ITER} (100 is usual).")
    if not _is_real(smooth) or not 0 < smooth <= 1:
        raise ValueError(f"smooth={smooth!r}: pass the weight of each new loss in the moving "
                         "average, in (0, 1] (1: no smoothing).")
    if not _is_real(diverge) or not diverge > 1:
        raise ValueError(f"diverge={diverge!r}: pass a factor > 1 (the run stops once the "
                         "smoothed loss exceeds diverge times its best value).")
    if suggestion not in SUGGESTIONS:
        raise ValueError(f"suggestion={suggestion!r}: pass one of {SUGGESTIONS}.")


def _scalar(loss) -> float:
    return float(loss.detach().item()) if hasattr(loss, "detach") else float(loss)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _frozen_array(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    array.setflags(write=False)
    return array


def _loss_range(losses: np.ndarray, smoothed: np.ndarray) -> tuple[float, float]:
    """The plot's y range: the smoothed curve before its last five steps (the blow-up, left out
    of the suggestion too); raw losses beyond it are clipped."""
    low = float(min(losses.min(), smoothed.min()))
    high = float(smoothed[: max(len(smoothed) - 5, 1)].max())
    margin = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
    return low - margin, high + margin


def _new_axes():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "Plotting a learning-rate range test needs matplotlib: pip install skadapt[plots]"
        ) from error
    figure = Figure(figsize=(6.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    return figure.subplots()
