"""Where the network runs (device, seed), shared by the estimators.

``device="auto"`` (or None) is the first available of a CUDA GPU, Apple's MPS and the CPU. How
precisely it computes there (``precision``) is :mod:`skadapt.finetune._precision`;
:func:`autocast` stays here for the callers that run a network under the default policy.
"""

from __future__ import annotations

import contextlib

import torch

from skadapt.finetune._precision import autocast_for


def mps_available() -> bool:
    """Whether Apple's Metal (MPS) backend can run tensors here."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def auto_device() -> str:
    """The device ``"auto"`` stands for: CUDA, then MPS, then the CPU."""
    if torch.cuda.is_available():
        return "cuda"
    if mps_available():
        return "mps"
    return "cpu"


def resolve_device(device) -> torch.device:
    """``"auto"`` (or None) is :func:`auto_device`; anything else as torch reads it.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device in (None, "auto"):
        return torch.device(auto_device())
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device={device!r}: pass 'auto', 'cpu', 'cuda', 'cuda:<index>' or "
                         f"'mps' ({error}).") from None


def autocast(device: torch.device, precision: str = "auto"):
    """The autocast context of ``precision`` on ``device`` (``"auto"``: bfloat16 mixed precision on
    a CUDA GPU, full precision elsewhere)."""
    return autocast_for(device, precision)


@contextlib.contextmanager
def seeded(random_state):
    """Seed torch for one fit without touching the caller's global random state."""
    if random_state is None:
        yield
        return
    devices = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(random_state))
        yield
