"""Step 3 of the workflow: splits that do not leak, and the checks that catch the leaks that remain.

- :func:`train_val_test_split`: a three-way split, stratified, grouped or time-ordered.
- :func:`leakage_report`: duplicates, shared groups, overlapping times and target-leaking features
  between two parts; :class:`LeakageError` when asked to fail on them.
- :func:`domain_shift`: how far a target domain is from the source (a domain classifier's AUC and
  an MMD), with advice on how deep to fine-tune; :func:`shift_profile`: the same by layer group.
- :func:`compare_models`: cross-validated score, parameters, size and latency of candidate models,
  with the best one within a latency or size budget.
"""

from skadapt.model_selection._budget import compare_models
from skadapt.model_selection._leakage import LeakageError, leakage_report
from skadapt.model_selection._shift import DomainShiftResult, domain_shift, shift_profile
from skadapt.model_selection._split import train_val_test_split

__all__ = [
    "DomainShiftResult",
    "LeakageError",
    "compare_models",
    "domain_shift",
    "leakage_report",
    "shift_profile",
    "train_val_test_split",
]
