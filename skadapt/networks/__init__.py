"""The network registry: every pretrained network skadapt fine-tunes, from one place.

A source per kind of ``model`` (one ``_source_*.py`` module each): torchvision names, timm
(``"timm/<name>"``), Hugging Face image models and text encoders (a folder or ``"org/name"``),
your own ``nn.Module``. Each builds the network
from ``model``/``weights``, replaces its head, splits its backbone into ordered layer groups and
says what preprocessing its inputs expect (and, for texts, how batches are tokenized): a
:class:`ResolvedNetwork`. The estimators, the feature extractor, ``shift_profile`` and the command
line get all of it from :func:`resolve_network`; this package imports none of them.
"""

from skadapt.networks._base import (
    LayerGroup,
    Preprocessing,
    ResolvedNetwork,
    Source,
    check_array_input,
)
from skadapt.networks._checkpoints import CHECKPOINT_SUFFIXES, load_checkpoint
from skadapt.networks._memo import clear_network_memo, network_memo_info, set_network_memo
from skadapt.networks._registry import (
    default_weights,
    inference_network,
    resolve_network,
    source_of,
    sources,
    takes_texts,
)
from skadapt.networks._source_torchvision import preprocessing_of, standard_preprocessing

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "LayerGroup",
    "Preprocessing",
    "ResolvedNetwork",
    "Source",
    "check_array_input",
    "clear_network_memo",
    "default_weights",
    "inference_network",
    "load_checkpoint",
    "network_memo_info",
    "preprocessing_of",
    "resolve_network",
    "set_network_memo",
    "source_of",
    "sources",
    "standard_preprocessing",
    "takes_texts",
]
