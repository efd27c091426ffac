"""skadapt: adapt pretrained deep models to a new domain, the scikit-learn way.

Public names are imported on first use (PEP 562), so ``from skadapt import DataCleaner`` and the
command line's ``--help`` do not wait seconds for torch; ``skadapt.PretrainedFineTuner`` is
the same class as ``skadapt.finetune.PretrainedFineTuner``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Each public name and the module of skadapt that defines it: a subpackage, or a private
# top-level module such as _config (imported the same way, as skadapt.<module>).
_SUBPACKAGE_OF = {
    "config_context": "_config",
    "get_config": "_config",
    "set_config": "_config",
    "ChannelStandardizer": "preprocessing",
    "DataCleaner": "preprocessing",
    "Differencer": "preprocessing",
    "FeatureSelector": "preprocessing",
    "LagFeatures": "preprocessing",
    "RowCleaner": "preprocessing",
    "clean_rows": "preprocessing",
    "AcceleratedFineTuner": "finetune",
    "AcceleratedFineTunerRegressor": "finetune",
    "PretrainedFeatureExtractor": "finetune",
    "PretrainedFineTuner": "finetune",
    "PretrainedFineTunerRegressor": "finetune",
    "LRFinderResult": "finetune",
    "lr_find": "finetune",
    "EvaluationReport": "evaluation",
    "evaluate": "evaluation",
    "DomainShiftResult": "model_selection",
    "LeakageError": "model_selection",
    "compare_models": "model_selection",
    "domain_shift": "model_selection",
    "leakage_report": "model_selection",
    "shift_profile": "model_selection",
    "train_val_test_split": "model_selection",
    "OnnxExport": "export",
    "OnnxPredictor": "export",
    "export_onnx": "export",
    "PersistenceError": "persistence",
    "load": "persistence",
    "save": "persistence",
}
__all__ = sorted(_SUBPACKAGE_OF)


def __getattr__(name: str):
    if name not in _SUBPACKAGE_OF:
        raise AttributeError(f"module 'skadapt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"skadapt.{_SUBPACKAGE_OF[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and the API reference read
    from skadapt._config import config_context, get_config, set_config
    from skadapt.evaluation import EvaluationReport, evaluate
    from skadapt.export import OnnxExport, OnnxPredictor, export_onnx
    from skadapt.finetune import (
        AcceleratedFineTuner,
        AcceleratedFineTunerRegressor,
        LRFinderResult,
        PretrainedFeatureExtractor,
        PretrainedFineTuner,
        PretrainedFineTunerRegressor,
        lr_find,
    )
    from skadapt.model_selection import (
        DomainShiftResult,
        LeakageError,
        compare_models,
        domain_shift,
        leakage_report,
        shift_profile,
        train_val_test_split,
    )
    from skadapt.persistence import PersistenceError, load, save
    from skadapt.preprocessing import (
        ChannelStandardizer,
        DataCleaner,
        Differencer,
        FeatureSelector,
        LagFeatures,
        RowCleaner,
        clean_rows,
    )
