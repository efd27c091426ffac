"""Step 3 of the workflow: splits that do not leak, and the checks that catch the leaks that remain.

- :func:`train_val_test_split`: a three-way split, stratified, grouped or time-ordered.
- :func:`leakage_report`: duplicates, shared groups, overlapping times and target-leaking features
  between two parts; :class:`LeakageError` when asked to fail on them.
"""

from skadapt.model_selection._leakage import LeakageError, leakage_report
from skadapt.model_selection._split import train_val_test_split

__all__ = ["LeakageError", "leakage_report", "train_val_test_split"]
