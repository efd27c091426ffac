"""Moved to :mod:`skadapt.networks._source_hf_text`; kept so that models pickled before the move
load."""

from skadapt.networks._source_hf_text import (  # noqa: F401
    ADAPTERS,
    EMPTY_TEXT,
    POOLINGS,
    TextEncoderNetwork,
    TextNetwork,
    resolve_text_network,
    validate_text_parameters,
)
