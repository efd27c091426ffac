"""A Hugging Face network's configuration and tokenizer, saved beside its weights.

A fine-tuned Hugging Face model (a text encoder or an image model) is saved as the other models
are, its whole state dict in ``weights.safetensors``, plus a ``huggingface/`` sub-folder holding
what rebuilds its architecture without the original folder or hub id: transformers'
``config.json`` and, for texts, the tokenizer files (``tokenizer.json``, ``vocab.txt``...: JSON
and text, nothing executable). The sub-folder has its own ``manifest.json`` pinning their
SHA-256, as a Pipeline's step folders do. Loading builds the network from that configuration
(random weights, replaced by the saved ones), so nothing is downloaded and no pretrained
weights are read.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from skadapt.networks import ResolvedNetwork
from skadapt.networks._saved_architecture import saved_architecture
from skadapt.persistence._format import read_folder, write_into

__all__ = ["HF_FOLDER", "HF_SOURCES", "architecture", "writer"]

HF_FOLDER = "huggingface"
HF_SOURCES = ("huggingface-text", "huggingface-vision")


def writer(network: ResolvedNetwork) -> Callable[[Path], None] | None:
    """What writes the ``huggingface/`` sub-folder of ``network``; None for other networks."""
    if network.source not in HF_SOURCES:
        return None

    def write(folder: Path) -> None:
        folder.mkdir()
        with tempfile.TemporaryDirectory() as staging:
            network.module.backbone.config.save_pretrained(staging)
            tokenizer = getattr(network, "tokenizer", None)
            if tokenizer is not None:
                tokenizer.save_pretrained(staging)
            files = sorted(Path(staging).iterdir())
            write_into(folder, {file.name: partial(shutil.copyfile, file) for file in files})

    return write


@contextlib.contextmanager
def architecture(config: dict, folder: Path, model) -> Iterator[None]:
    """Inside, a Hugging Face ``model`` saved in ``folder`` is built from its saved
    configuration (its files checked against their manifest first); other models as usual."""
    if config["network"]["source"] not in HF_SOURCES:
        yield
        return
    saved = folder / HF_FOLDER
    read_folder(saved)
    with saved_architecture(model, saved):
        yield
