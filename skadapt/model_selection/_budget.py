"""Choose a model that fits the deployment device: score against parameters, size and latency.

:func:`compare_models` cross-validates each candidate, then measures the model of its first fold
(trained on ``(k - 1) / k`` of the data, so no candidate is trained one extra time): its parameter
count, its size as ``joblib.dump`` writes it, and its prediction latency on this machine. A network
has the same size and speed whatever it was trained on; a model that stores its training data
(k-nearest neighbours) is measured a little smaller than the one fitted on everything.

Latency is the median, over ``n_repeats`` timed calls after one warm-up call, of ``predict`` on a
batch of ``latency_batch_size`` samples, divided by the batch size: the per-sample cost of batched
inference, on the CPU threads and device the estimator uses.
"""

from __future__ import annotations

import io
import numbers
import time
import warnings
from collections.abc import Mapping

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import cross_validate
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from torch import nn

COLUMNS = ["score_mean", "score_std", "n_parameters", "size_mb", "latency_ms", "fit_time_s",
           "within_budget"]
_BYTES_PER_MB = 1_000_000


def compare_models(candidates: Mapping[str, object], X, y, *, cv=5,
                   max_latency_ms: float | None = None, max_size_mb: float | None = None,
                   scoring=None, latency_batch_size: int = 64, n_repeats: int = 5,
                   groups=None, onnx_latency: bool = False) -> pd.DataFrame:
    """Cross-validate candidate models and measure what each costs to deploy on this machine.

    Parameters
    ----------
    candidates : dict of str to estimator
        Named estimators (backbones, settings, Pipelines); each is cloned, never fitted itself.
    X, y : array-like
        The data, as each candidate's ``fit`` takes it.
    cv : int or cross-validation splitter, default=5
        As in ``sklearn.model_selection.cross_validate`` (stratified for classifiers).
    max_latency_ms : float, optional
        Budget on the latency per sample, in milliseconds.
    max_size_mb : float, optional
        Budget on the size of the fitted model as ``joblib.dump`` writes it, in MB (10**6 bytes).
    scoring : str or callable, optional
        One scorer, as in sklearn (``"f1_macro"``, ``"neg_mean_absolute_error"``); by default
        the estimator's ``score``. Greater is better, as for every sklearn scorer.
    latency_batch_size : int, default=64
        Samples per timed ``predict`` call (at most the number of samples).
    n_repeats : int, default=5
        Timed calls; the median is reported.
    groups : array-like, optional
        Group labels for a group-aware ``cv`` (``GroupKFold``).
    onnx_latency : bool, default=False
        Also export each fitted fine-tuner (or Pipeline ending in one) to ONNX and report its
        latency per sample under onnxruntime, in a column ``onnx_latency_ms`` beside
        ``latency_ms`` (NaN for the other candidates). Needs ``pip install 'skadapt[onnx]'``.

    Returns
    -------
    pandas.DataFrame
        One row per candidate, indexed by name (``model``), best score first: ``score_mean``,
        ``score_std``, ``n_parameters`` (torch modules: every parameter; linear models:
        ``coef_`` and ``intercept_``; otherwise missing), ``size_mb``, ``latency_ms`` (per
        sample), ``fit_time_s`` (mean per fold) and ``within_budget``.
        ``.attrs["best"]`` is the name of the best-scoring candidate within budget (None, with a
        warning, when none is); ``.attrs["budget"]`` the budget itself.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> table = compare_models(
    ...     {"logistic": make_pipeline(StandardScaler(), LogisticRegression()),
    ...      "5-nn": make_pipeline(StandardScaler(), KNeighborsClassifier())},
    ...     X, y, cv=3, max_size_mb=0.05)
    >>> table.attrs["best"], bool(table.loc["5-nn", "within_budget"])
    ('logistic', False)
    """
    _check_candidates(candidates)
    for name, value in (("max_latency_ms", max_latency_ms), ("max_size_mb", max_size_mb)):
        if value is not None and not _is_positive(value):
            raise ValueError(f"{name}={value!r}: pass a positive number, or None for no budget.")
    for name, value in (("latency_batch_size", latency_batch_size), ("n_repeats", n_repeats)):
        if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1):
            raise ValueError(f"{name}={value!r}: pass an int >= 1.")
    if scoring is not None and not (isinstance(scoring, str) or callable(scoring)):
        raise ValueError(f"scoring={scoring!r}: pass one scorer (a name or a callable); compare "
                         "models on one metric at a time.")
    batch = _safe_indexing(X, np.arange(min(latency_batch_size, _n_samples(X))))
    rows = [_measure(name, estimator, X, y, batch, cv=cv, scoring=scoring, groups=groups,
                     n_repeats=n_repeats, onnx_latency=onnx_latency)
            for name, estimator in candidates.items()]
    table = pd.DataFrame(rows).set_index("model")
    table["n_parameters"] = table["n_parameters"].astype("Int64")
    table["within_budget"] = _within_budget(table, max_latency_ms, max_size_mb)
    columns = [*COLUMNS[:5], "onnx_latency_ms", *COLUMNS[5:]] if onnx_latency else COLUMNS
    table = table.sort_values(["score_mean", "latency_ms"], ascending=[False, True])[columns]
    table.attrs["budget"] = {"max_latency_ms": max_latency_ms, "max_size_mb": max_size_mb}
    table.attrs["best"] = _best(table, max_latency_ms, max_size_mb)
    return table


def _check_candidates(candidates) -> None:
    if not isinstance(candidates, Mapping) or not candidates:
        raise TypeError("candidates must be a non-empty dict of name -> estimator, e.g. "
                        "{'resnet18': PretrainedFineTuner('resnet18', ...), ...}.")
    for name, estimator in candidates.items():
        if not isinstance(name, str):
            raise TypeError(f"candidate name {name!r} is a {type(name).__name__}: name each "
                            "candidate with a str.")
        if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
            raise TypeError(f"candidate {name!r} is a {type(estimator).__name__} without fit and "
                            "predict: pass an sklearn-compatible estimator.")


def _is_positive(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0


def _n_samples(X) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


def _measure(name: str, estimator, X, y, batch, *, cv, scoring, groups, n_repeats,
             onnx_latency: bool = False) -> dict:
    try:
        result = cross_validate(clone(estimator), X, y, groups=groups, cv=cv, scoring=scoring,
                                return_estimator=True, error_score="raise")
    except Exception as error:
        if hasattr(error, "add_note"):  # Python >= 3.11
            error.add_note(f"(raised while cross-validating candidate {name!r})")
        raise
    fitted = result["estimator"][0]
    row = {"model": name, "score_mean": float(np.mean(result["test_score"])),
           "score_std": float(np.std(result["test_score"])),
           "n_parameters": n_parameters(fitted), "size_mb": _size_bytes(fitted) / _BYTES_PER_MB,
           "latency_ms": latency_ms(fitted, batch, n_repeats),
           "fit_time_s": float(np.mean(result["fit_time"]))}
    if onnx_latency:  # the same batch and timing, through onnxruntime
        from skadapt.export._latency import onnx_latency_ms

        row["onnx_latency_ms"] = onnx_latency_ms(fitted, batch, n_repeats)
    return row


def n_parameters(estimator) -> int | None:
    """Parameters of a fitted estimator: torch modules' scalars, or linear models' coefficients.

    Looks at the estimator and, for a Pipeline, at each of its steps: a step with a fitted torch
    module (skorch's ``module_``) counts every scalar of it; a linear model counts ``coef_`` and
    ``intercept_``. None when no step has either (trees, neighbours: their size says more).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> n_parameters(LogisticRegression().fit(np.eye(4), [0, 1, 0, 1]))
    5
    """
    steps = [step for _, step in estimator.steps] if isinstance(estimator, Pipeline) \
        else [estimator]
    counts = [_step_parameters(step) for step in steps]
    counts = [count for count in counts if count is not None]
    return int(sum(counts)) if counts else None


def _step_parameters(step) -> int | None:
    module = getattr(step, "module_", None)
    if isinstance(module, nn.Module):
        return sum(parameter.numel() for parameter in module.parameters())
    if hasattr(step, "coef_"):
        return int(np.size(step.coef_) + np.size(getattr(step, "intercept_", ())))
    return None


def _size_bytes(estimator) -> int:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.tell()


def latency_ms(estimator, batch, n_repeats: int) -> float:
    """Median milliseconds per sample of ``estimator.predict(batch)``, after one warm-up call."""
    estimator.predict(batch)  # warm-up: lazy initialization, caches, first-call allocations
    timings = []
    for _ in range(n_repeats):
        start = time.perf_counter()
        estimator.predict(batch)
        timings.append(time.perf_counter() - start)
    return 1000 * float(np.median(timings)) / _n_samples(batch)


def _within_budget(table: pd.DataFrame, max_latency_ms, max_size_mb) -> pd.Series:
    fits = pd.Series(True, index=table.index)
    if max_latency_ms is not None:
        fits &= table.latency_ms <= max_latency_ms
    if max_size_mb is not None:
        fits &= table.size_mb <= max_size_mb
    return fits


def _best(table: pd.DataFrame, max_latency_ms, max_size_mb) -> str | None:
    affordable = table.index[table.within_budget]
    if len(affordable):
        return str(affordable[0])
    warnings.warn(f"no candidate fits the budget (max_latency_ms={max_latency_ms}, "
                  f"max_size_mb={max_size_mb}): the fastest takes "
                  f"{table.latency_ms.min():.3g} ms per sample and the smallest "
                  f"{table.size_mb.min():.3g} MB. Raise the budget or add smaller candidates.",
                  UserWarning, stacklevel=3)
    return None
