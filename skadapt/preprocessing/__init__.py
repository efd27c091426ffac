"""Step 1 of the workflow: prepare data with sklearn-compatible transformers.

- :class:`DataCleaner`: formats, wrong values, missing values and useless columns of a table;
  :func:`clean_rows` and :class:`RowCleaner` remove duplicate rows and rows with a bad target.
- :class:`FeatureSelector`: six selection methods behind one ``method`` parameter.
- :class:`ChannelStandardizer`: per-channel standardization of image arrays. For tables, use
  sklearn's ``StandardScaler``.
- :class:`Differencer`, :class:`LagFeatures`: features of ordered data, with no look-ahead.
"""

from skadapt.preprocessing._cleaning import DataCleaner
from skadapt.preprocessing._construction import Differencer, LagFeatures
from skadapt.preprocessing._image import ChannelStandardizer
from skadapt.preprocessing._rows import RowCleaner, clean_rows
from skadapt.preprocessing._selection import FeatureSelector

__all__ = [
    "ChannelStandardizer",
    "DataCleaner",
    "Differencer",
    "FeatureSelector",
    "LagFeatures",
    "RowCleaner",
    "clean_rows",
]
