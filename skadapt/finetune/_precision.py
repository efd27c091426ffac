"""Numerical precision of training and prediction: the ``precision`` parameter.

=================  ==========================================================================
``precision``      what runs
=================  ==========================================================================
``"auto"``         ``"bf16-mixed"`` on a CUDA GPU, ``"32"`` elsewhere: what skadapt always did,
                   so the default changes no result
``"32"``           float32 throughout
``"bf16-mixed"``   the forward pass under ``torch.autocast`` with bfloat16 (CUDA, CPU, MPS);
                   weights, gradients and the optimizer stay float32; no gradient scaling
                   (bfloat16 has float32's range)
``"16-mixed"``     the forward pass under float16 autocast, the loss scaled by a
                   ``torch.amp.GradScaler`` before ``backward`` (float16 underflows otherwise);
                   meant for CUDA GPUs without bfloat16. It runs on the CPU too (torch has CPU
                   float16 kernels and a CPU scaler), slower than float32, with a warning
=================  ==========================================================================

The loss and the outputs are computed in float32 in every mode (``infer`` returns float32).
"""

from __future__ import annotations

import contextlib
import warnings

import torch

__all__ = ["PRECISIONS", "autocast_for", "grad_scaler_for", "resolve_precision"]

PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision (``"32"``, ``"bf16-mixed"`` or ``"16-mixed"``) on ``device``.

    Examples
    --------
    >>> resolve_precision("auto", torch.device("cpu")), resolve_precision("auto", torch.device("cuda"))
    ('32', 'bf16-mixed')
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: pass one of {', '.join(map(repr, PRECISIONS))}.")
    if precision == "auto":
        return "bf16-mixed" if device.type == "cuda" else "32"
    return precision


def check_precision(precision: str, device: torch.device) -> str:
    """:func:`resolve_precision`, warning when float16 is asked for where it only slows down."""
    resolved = resolve_precision(precision, device)
    if resolved == "16-mixed" and device.type == "cpu":
        warnings.warn("precision='16-mixed' on the CPU runs float16 autocast with gradient "
                      "scaling, slower than float32 and meant for testing: pass "
                      "precision='bf16-mixed' or '32' to train on the CPU.", UserWarning,
                      stacklevel=2)
    return resolved


def autocast_for(device: torch.device, precision: str = "auto"):
    """The context the forward pass runs in: ``torch.autocast`` for the mixed precisions, nothing
    for ``"32"``."""
    dtype = _DTYPES.get(resolve_precision(precision, device))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler_for(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A fresh gradient scaler for ``"16-mixed"``; None for the other precisions (no scaling)."""
    if resolve_precision(precision, device) != "16-mixed":
        return None
    return torch.amp.GradScaler(device.type)
