"""Moved to :mod:`skadapt.networks` (the network registry); these names stay for old imports."""

from skadapt.networks import (
    CHECKPOINT_SUFFIXES,
    LayerGroup,
    Preprocessing,
    ResolvedNetwork,
    load_checkpoint,
    preprocessing_of,
    resolve_network,
)

__all__ = ["CHECKPOINT_SUFFIXES", "LayerGroup", "Preprocessing", "ResolvedNetwork",
           "load_checkpoint", "preprocessing_of", "resolve_network"]
