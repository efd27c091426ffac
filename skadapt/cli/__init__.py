"""The ``skadapt`` command line: ``fit``, ``evaluate``, ``predict`` and ``demo``.

Thin by design: each command reads the data into what the library takes (image paths, texts or
a numeric table, and labels), builds or loads an estimator, and calls the library
(:class:`~skadapt.PretrainedFineTuner`, :func:`~skadapt.evaluate`). What the command line adds is
only what a terminal needs: reading folders and CSV files, progress bars, one-line error messages
and files on disk (``joblib`` model files, HTML/JSON reports, prediction CSVs).

- ``_parser.py``: the entry point :func:`main`, the options and their help;
- ``_data.py``: reading an image folder or a CSV/TSV file;
- ``_commands.py``: the commands themselves;
- ``_demo.py``: ``skadapt demo``, the whole workflow on bundled data.
"""

from skadapt.cli._parser import build_parser, main

__all__ = ["build_parser", "main"]
