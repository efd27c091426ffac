"""Where the network runs (device, seed), shared by the estimators.

``device="auto"`` (or None) is the first available of a CUDA GPU, Apple's MPS and the CPU. How
precisely it computes there (``precision``, its autocast) is :mod:`skadapt.finetune._precision`.
"""

from __future__ import annotations

import contextlib

import torch


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
