"""Reading ``DATA`` for the commands: an image folder or a CSV/TSV file, with clear errors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_files

_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


@dataclass
class Data:
    """What a subcommand hands the library: the inputs, the labels and a name per sample."""

    X: object
    y: np.ndarray | None
    names: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.names)


def read_data(path: str, args, labelled: bool) -> Data:
    """Read an image folder or a CSV/TSV file into :class:`Data`, with clear errors."""
    location = Path(path)
    if not location.exists():
        raise FileNotFoundError(f"DATA {path!r} does not exist: pass an image folder or a "
                                "CSV/TSV file.")
    if location.is_dir():
        _reject_column_options(args, path)
        return _read_image_folder(location) if labelled else _read_flat_folder(location)
    return _read_table(location, args, labelled)


def _image_suffixes() -> list[str]:
    suffixes = set(Image.registered_extensions())
    return sorted(suffixes | {suffix.upper() for suffix in suffixes})


def _read_image_folder(root: Path) -> Data:
    classes = sorted(entry.name for entry in root.iterdir()
                     if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise ValueError(f"{str(root)!r} has no class folders: put the images of each class in "
                         f"a subfolder named after the class, e.g. {root / 'cats'}/1.jpg.")
    bunch = load_files(root, categories=classes, load_content=False, shuffle=False,
                       allowed_extensions=_image_suffixes())
    counts = np.bincount(bunch.target, minlength=len(bunch.target_names))
    empty = [name for name, count in zip(bunch.target_names, counts) if count == 0]
    if empty:
        raise ValueError(f"class folder(s) {', '.join(repr(str(root / n)) for n in empty)} hold "
                         "no image files: add images or remove the folder.")
    labels = np.asarray(bunch.target_names)[bunch.target]
    paths = [str(name) for name in bunch.filenames]
    return Data(X=paths, y=labels, names=paths, source=f"{len(paths)} images in {len(classes)} "
                                                       f"class folders of {root}")


def _read_flat_folder(root: Path) -> Data:
    suffixes = set(_image_suffixes())
    paths = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix in suffixes
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not paths:
        raise ValueError(f"{str(root)!r} holds no image files (files with a suffix Pillow "
                         "reads: .jpg, .png, .gif, .bmp, .tif, .webp, ...).")
    return Data(X=paths, y=None, names=paths, source=f"{len(paths)} images under {root}")


def _reject_column_options(args, path: str) -> None:
    given = [f"--{name.replace('_', '-')}" for name in ("path_column", "text_column",
                                                         "feature_columns")
             if getattr(args, name, None)]
    if given:
        raise ValueError(f"{', '.join(given)}: only for CSV/TSV files, but DATA {path!r} is a "
                         "folder: drop the option, or pass the CSV file.")


def _read_table(path: Path, args, labelled: bool) -> Data:
    sep = args.sep or _TABLE_SUFFIXES.get(path.suffix.lower())
    if sep is None:
        raise ValueError(f"DATA {str(path)!r} is neither a folder nor a .csv/.tsv file: pass "
                         "--sep to read another delimited text file.")
    try:
        table = pd.read_csv(path, sep=sep)
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not a text file: pass a CSV/TSV file or an image "
                         "folder.") from None
    if table.empty:
        raise ValueError(f"{str(path)!r} has no rows.")
    y = _labels(table, args, path) if labelled else None
    inputs = table.drop(columns=[args.label_column], errors="ignore")
    X, names = _table_inputs(inputs, args, path)
    return Data(X=X, y=y, names=names, source=f"{len(table)} rows of {path}")


def _labels(table: pd.DataFrame, args, path: Path) -> np.ndarray:
    column = args.label_column
    if column not in table.columns:
        raise ValueError(f"{str(path)!r} has no label column {column!r}; its columns are "
                         f"{list(table.columns)}: pass --label-column NAME.")
    missing = np.flatnonzero(table[column].isna().to_numpy())
    if len(missing):
        shown = ", ".join(str(row) for row in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(f"the label column {column!r} of {str(path)!r} has {len(missing)} "
                         f"empty value(s), in rows {shown} (0-based, header excluded): label or "
                         "drop those rows.")
    return table[column].to_numpy()


def _table_inputs(table: pd.DataFrame, args, path: Path) -> tuple[object, list[str]]:
    chosen = [name for name in ("path_column", "text_column", "feature_columns")
              if getattr(args, name)]
    if len(chosen) > 1:
        raise ValueError(f"pass only one of --path-column, --text-column and --feature-columns; "
                         f"got {len(chosen)}.")
    rows = [str(i) for i in range(len(table))]
    if args.path_column:
        column = _column(table, args.path_column, path, "--path-column")
        # a plain list of paths: the model then reads it whatever column it was fitted on
        paths = [os.path.join(path.parent, value) if isinstance(value, str) else value
                 for value in table[column]]
        return paths, [str(value) for value in table[column]]
    if args.text_column:
        column = _column(table, args.text_column, path, "--text-column")
        return table[column], rows
    if args.feature_columns:
        columns = [name.strip() for name in args.feature_columns.split(",") if name.strip()]
        for name in columns:
            _column(table, name, path, "--feature-columns")
        table = table[columns]
    text = [name for name in table.columns if not pd.api.types.is_numeric_dtype(table[name])]
    if text:
        raise ValueError(f"column(s) {text} of {str(path)!r} are not numeric: pass "
                         "--path-column for image paths, --text-column for texts, or "
                         "--feature-columns to choose numeric columns.")
    if table.shape[1] == 0:
        raise ValueError(f"{str(path)!r} has no feature columns besides the label.")
    return table, rows


def _column(table: pd.DataFrame, name: str, path: Path, option: str) -> str:
    if name not in table.columns:
        raise ValueError(f"{option}: {str(path)!r} has no column {name!r}; its columns are "
                         f"{list(table.columns)}.")
    return name
