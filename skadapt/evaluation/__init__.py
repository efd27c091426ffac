"""Step 3 of the workflow: cross-validated evaluation that a person can read and trust.

:func:`evaluate` returns an :class:`EvaluationReport`: the task's metrics per fold and as mean and
standard deviation, the confusion matrix or residuals, learning curves of fine-tuners and how
each fold trained (``training``), and ``to_frame``, ``to_markdown``, ``to_dict``, ``plot`` and
``save``.
"""

from skadapt.evaluation._report import EvaluationReport, evaluate

__all__ = ["EvaluationReport", "evaluate"]
