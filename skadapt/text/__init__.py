"""Fine-tune Hugging Face text encoders (BERT family) with :class:`PretrainedFineTuner`.

Needs the optional extra: ``pip install skadapt[text]`` (``transformers`` and ``peft``), imported
only when a text model is asked for.
"""

from skadapt.text._encoder import (
    TextEncoderNetwork,
    TextNetwork,
    is_text_model,
    resolve_text_network,
)
from skadapt.text._tokenize import TextCollate

__all__ = [
    "TextCollate",
    "TextEncoderNetwork",
    "TextNetwork",
    "is_text_model",
    "resolve_text_network",
]
