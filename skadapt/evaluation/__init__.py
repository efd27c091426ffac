"""Step 3 of the workflow: cross-validated evaluation that a person can read and trust.

:func:`evaluate` returns an :class:`EvaluationReport`: the task's metrics per fold and as mean and
standard deviation, the confusion matrix or residuals, learning curves of fine-tuners and how
each fold trained (``training``), the interpretation of its out-of-fold predictions
(``top_losses``, ``most_confused``, ``calibration``, and their plots), and ``to_frame``,
``to_markdown``, ``to_dict``, ``plot`` and ``save`` (an offline HTML page and the JSON numbers).
:func:`compare` puts several reports (or a search's best settings) side by side.
"""

from skadapt.evaluation._comparison import ReportComparison, compare
from skadapt.evaluation._report import EvaluationReport, evaluate

__all__ = ["EvaluationReport", "ReportComparison", "compare", "evaluate"]
