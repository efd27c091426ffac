"""Fine-tune Hugging Face text encoders (BERT family) with :class:`PretrainedFineTuner`.

Needs the optional extra: ``pip install skadapt[text]`` (``transformers`` and ``peft``), imported
only when a text model is asked for. The encoders are one source of the network registry
(:mod:`skadapt.networks`); this package names what text users need.
"""

from skadapt.networks._registry import takes_texts
from skadapt.networks._source_hf_text import (
    TextEncoderNetwork,
    TextNetwork,
    resolve_text_network,
)
from skadapt.networks._tokenize import TextCollate


def is_text_model(model: object) -> bool:
    """Whether ``model`` is a Hugging Face text encoder: a local directory, or an ``org/name``
    hub id (``timm/<name>`` is a timm image model). Decided from the model alone, never from
    ``X``: an image path and a sentence are both strings.

    Examples
    --------
    >>> is_text_model("sentence-transformers/all-MiniLM-L6-v2"), is_text_model("resnet18")
    (True, False)
    """
    return takes_texts(model)


__all__ = [
    "TextCollate",
    "TextEncoderNetwork",
    "TextNetwork",
    "is_text_model",
    "resolve_text_network",
]
