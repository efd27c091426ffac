"""Hugging Face networks rebuilt from a saved folder: their architecture, not their weights.

``skadapt.save`` keeps a fine-tuned Hugging Face model's configuration and tokenizer files in the
saved folder, and its weights (all of them, fine-tuned) in ``weights.safetensors``. To load it,
the network must be built again as it was, without downloading or reading the pretrained
weights that the saved ones replace, and without the original folder or hub id, which may not
exist where the model is loaded. Inside :func:`saved_architecture`, the Hugging Face sources
build ``model`` from the saved folder's ``config.json`` (random weights, overwritten next) and
tokenizer files instead of from ``model`` itself; everywhere else nothing changes.
"""

from __future__ import annotations

import contextlib
import os
from contextvars import ContextVar
from pathlib import Path

__all__ = ["saved_architecture", "saved_folder"]

_FOLDERS: ContextVar[dict[str, Path] | None] = ContextVar("skadapt_saved_architecture",
                                                         default=None)


@contextlib.contextmanager
def saved_architecture(model: str | os.PathLike, folder: str | os.PathLike):
    """Build the Hugging Face model ``model`` from the configuration saved in ``folder``.

    Examples
    --------
    >>> with saved_architecture("org/name", "/saved/huggingface"):
    ...     print(saved_folder("org/name"))
    /saved/huggingface
    >>> print(saved_folder("org/name"))
    None
    """
    token = _FOLDERS.set({**(_FOLDERS.get() or {}), os.fspath(model): Path(folder)})
    try:
        yield
    finally:
        _FOLDERS.reset(token)


def saved_folder(model) -> Path | None:
    """The saved folder to build ``model`` from, inside :func:`saved_architecture`; else None."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    return (_FOLDERS.get() or {}).get(os.fspath(model))
