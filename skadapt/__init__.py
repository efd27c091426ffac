"""skadapt: adapt pretrained deep models to a new domain, the scikit-learn way."""

__version__ = "0.1.0"
