"""Where and how the network runs (device, precision, seed), shared by the estimators."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device) -> torch.device:
    """``"auto"`` (or None) is a GPU when there is one, else the CPU; anything else as torch reads it."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device={device!r}: pass 'auto', 'cpu', 'cuda' or 'cuda:<index>' "
                         f"({error}).") from None


def autocast(device: torch.device):
    """bfloat16 mixed precision on a GPU; full precision on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
