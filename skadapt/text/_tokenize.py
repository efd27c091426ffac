"""Moved to :mod:`skadapt.networks._tokenize`; kept so that models pickled before the move load."""

from skadapt.networks._tokenize import TextCollate  # noqa: F401
