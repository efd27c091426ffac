"""The ``skadapt`` command line: ``fit``, ``evaluate``, ``predict`` and ``demo``.

Thin by design: each subcommand reads the data into what the library takes (image paths, texts or
a numeric table, and labels), builds or loads an estimator, and calls the library
(:class:`~skadapt.PretrainedFineTuner`, :func:`~skadapt.evaluation.evaluate`). What the command
line adds is only what a terminal needs: reading folders and CSV files, progress bars, one-line
error messages and files on disk (``joblib`` model files, HTML/JSON reports, prediction CSVs).

Errors a user can cause (a missing folder, an empty class folder, an unknown model, a missing
column, a checkpoint that does not fit) end with one line on stderr and exit code 1; usage errors
(an unknown option) exit with 2, as argparse does. ``--traceback`` shows the full traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torchvision
from PIL import Image
from sklearn.datasets import load_files
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback, ProgressBar
from torch import nn
from tqdm.auto import tqdm

from skadapt import PretrainedFineTuner, __version__
from skadapt.evaluation import evaluate
from skadapt.text import is_text_model

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
# The exceptions that mean "the input or an option is wrong", not "skadapt has a bug".
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError, ImportError, KeyError)
_CHUNK_BATCHES = 8  # predict shows progress every this many batches
_MODULE_SPEC = re.compile(r"^(?P<source>[\w.]+|.+\.py):(?P<attr>[\w.]+)$")
_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


# ----------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the ``skadapt`` command with ``argv`` (default: ``sys.argv[1:]``); return its exit code.

    Examples
    --------
    >>> main(["--version"])  # doctest: +SKIP
    skadapt 0.1.0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning_on_one_line
        try:
            return args.run(args)
        except KeyboardInterrupt:
            print(f"skadapt {args.command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except USER_ERRORS as error:
            if args.traceback:
                raise
            print(f"skadapt {args.command}: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_ERROR


def _one_line(error: BaseException) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    text = " ".join(text.split()) or type(error).__name__
    return text


def _show_warning_on_one_line(message, category, filename, lineno, file=None, line=None):
    print(f"skadapt: warning: {' '.join(str(message).split())}", file=sys.stderr)


# ----------------------------------------------------------------------------- parser
class _HelpFormatter(argparse.HelpFormatter):
    """Show each option's default, wrap prose paragraphs, and keep example lines as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) \
                or action.default is False:
            return text
        return f"{text} (default: %(default)s)".lstrip()

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith("  ") for line in lines):  # examples: keep them verbatim
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width,
                                                initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(paragraphs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skadapt`` command and its four subcommands."""
    parser = argparse.ArgumentParser(
        prog="skadapt", formatter_class=_HelpFormatter,
        description="Adapt a pretrained deep model to your data, the scikit-learn way.",
        epilog="Run 'skadapt COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"skadapt {__version__}")
    parser.set_defaults(command=None, traceback=False)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_fit(commands)
    _add_evaluate(commands)
    _add_predict(commands)
    _add_demo(commands)
    return parser


def _command(commands, name: str, help: str, description: str, epilog: str = ""):
    sub = commands.add_parser(name, help=help, description=description, epilog=epilog,
                              formatter_class=_HelpFormatter)
    sub.set_defaults(command=name)
    sub.add_argument("--traceback", action="store_true",
                     help="on an error, show the full Python traceback instead of one line")
    return sub


def _add_data_options(sub, labelled: bool) -> None:
    group = sub.add_argument_group(
        "data", "DATA is a folder of images (for fit and evaluate: one subfolder per class, the "
        "folder name is the label) or a CSV/TSV file with one row per sample.")
    group.add_argument("--label-column", default="label", metavar="COL",
                       help="CSV/TSV: the column holding the labels" if labelled else
                            "CSV/TSV: a label column, left out of the inputs when present")
    group.add_argument("--path-column", metavar="COL",
                       help="CSV/TSV: the column holding image paths (relative paths are taken "
                            "from the CSV file's folder)")
    group.add_argument("--text-column", metavar="COL",
                       help="CSV/TSV: the column holding texts (needs a Hugging Face text --model)")
    group.add_argument("--feature-columns", metavar="A,B,...",
                       help="CSV/TSV: numeric feature columns (default, when no path or text "
                            "column is given: every column but the label)")
    group.add_argument("--sep", help="CSV/TSV: the field separator (default: tab for .tsv/.tab "
                                     "files, comma otherwise)")


def _add_fit(commands) -> None:
    sub = _command(
        commands, "fit", help="fine-tune a pretrained model on labelled data",
        description="Fine-tune a pretrained model on labelled data, write the fitted model "
                    "(joblib) and an evaluation report (HTML with figures, and JSON).",
        epilog="examples:\n"
               "  skadapt fit photos/ --model resnet18 --weights DEFAULT --freeze backbone "
               "--epochs 10 --out model.joblib\n"
               "  skadapt fit photos/ --model mynet.py:Net --weights net.pt --image-size 32 "
               "--unfreeze-at 3\n"
               "  skadapt fit table.csv --label-column y --model mynet.py:Mlp --freeze none\n\n"
               "By default 20% of the data is held out: the saved model is trained on the rest "
               "and the report evaluates it on the held-out part. --cv K reports a K-fold "
               "cross-validation instead and saves a model trained on all the data.")
    sub.add_argument("data", metavar="DATA", help="image folder (one subfolder per class) or "
                                                  "CSV/TSV file")
    _add_data_options(sub, labelled=True)
    model = sub.add_argument_group("model")
    model.add_argument("--model", default="resnet18", metavar="NAME",
                       help="a torchvision model name (resnet18, efficientnet_b0, vit_b_16, ...), "
                            "your own module as 'file.py:Name' or 'package.module:Name' (an "
                            "nn.Module class built with no arguments, an instance, or a function "
                            "returning one), or a Hugging Face text model (a local folder or "
                            "'org/name')")
    model.add_argument("--weights", default="auto", metavar="W",
                       help="'auto' (DEFAULT for torchvision names, the module's own weights "
                            "otherwise), a torchvision weights name (DEFAULT, IMAGENET1K_V1), "
                            "'none' (random initialization), or a checkpoint file "
                            "(.pt/.pth/.safetensors)")
    model.add_argument("--head", metavar="NAME",
                       help="dotted name of the layer to replace in your own module (default: "
                            "its last nn.Linear)")
    tuning = sub.add_argument_group("fine-tuning")
    tuning.add_argument("--freeze", default="backbone", type=_freeze_spec, metavar="F",
                        help="what is frozen when training starts: 'backbone' (train the new "
                             "head only), 'none', an int k (freeze all but the last k layer "
                             "groups), or comma-separated parameter name patterns")
    tuning.add_argument("--unfreeze-at", type=_non_negative_int, metavar="EPOCH",
                        help="epoch (0-based) at which the frozen layers start training "
                             "(default: never, one stage)")
    tuning.add_argument("--unfreeze-lr", type=float, metavar="LR",
                        help="learning rate once unfrozen (default: --lr / 10)")
    tuning.add_argument("--epochs", type=_positive_int, default=10, metavar="N",
                        help="maximum number of epochs")
    tuning.add_argument("--lr", type=float, default=1e-3, help="learning rate of the new head")
    tuning.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                        help="samples per training step")
    tuning.add_argument("--image-size", type=_positive_int, metavar="PIXELS",
                        help="input size for images (default: the torchvision weights' own; "
                             "required for your own module on image files)")
    tuning.add_argument("--validation-fraction", type=_fraction_or_none, default=0.1,
                        metavar="F", help="part of the training data used for early stopping, "
                                          "or 'none'")
    tuning.add_argument("--patience", type=_int_or_none, default=5, metavar="N",
                        help="early stopping patience in epochs, or 'none'")
    tuning.add_argument("--max-length", type=_positive_int, default=128, metavar="TOKENS",
                        help="text models: texts are truncated to this many tokens")
    tuning.add_argument("--adapter", choices=["none", "lora"], default="none",
                        help="text models: add LoRA adapters (trained with the head)")
    tuning.add_argument("--skip-bad-images", action="store_true",
                        help="leave unreadable image files out (with a warning) instead of "
                             "stopping")
    tuning.add_argument("--num-workers", type=_non_negative_int, default=0, metavar="N",
                        help="processes decoding images in parallel")
    tuning.add_argument("--device", default="auto",
                        help="'auto' (a GPU when there is one), 'cpu', 'cuda', 'cuda:1', ...")
    tuning.add_argument("--random-state", type=int, default=0, metavar="SEED",
                        help="seed for initialization, shuffling, augmentation and splits")
    output = sub.add_argument_group("output")
    output.add_argument("--out", default="model.joblib", metavar="MODEL",
                        help="where to write the fitted model (load it with joblib.load)")
    output.add_argument("--report", metavar="DIR",
                        help="folder for report.html and report.json (default: the model file's "
                             "name with '-report', e.g. model-report/)")
    output.add_argument("--holdout", type=_holdout_fraction, default=0.2, metavar="F",
                        help="part of the data held out to evaluate the saved model (stratified); "
                             "0 trains on everything and writes no report")
    output.add_argument("--cv", type=_cv_folds, default=0, metavar="K",
                        help="report a stratified K-fold cross-validation (K more fits) instead "
                             "of a holdout, then train the saved model on all the data")
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.set_defaults(run=_run_fit)


def _add_evaluate(commands) -> None:
    sub = _command(
        commands, "evaluate", help="evaluate a fitted model on labelled data",
        description="Evaluate a fitted model on labelled data: print the metrics and the "
                    "confusion matrix, and write report.html (with figures) and report.json.",
        epilog="example:\n  skadapt evaluate model.joblib test_photos/ --report test-report/\n\n"
               "Pass the same data options (--path-column, --text-column, --feature-columns) "
               "as when fitting.")
    sub.add_argument("model", metavar="MODEL", help="a model file written by 'skadapt fit' (or "
                                                    "any fitted scikit-learn classifier saved "
                                                    "with joblib.dump)")
    sub.add_argument("data", metavar="DATA", help="image folder (one subfolder per class) or "
                                                  "CSV/TSV file")
    _add_data_options(sub, labelled=True)
    sub.add_argument("--report", default="report", metavar="DIR",
                     help="folder for report.html and report.json")
    sub.set_defaults(run=_run_evaluate)


def _add_predict(commands) -> None:
    sub = _command(
        commands, "predict", help="predict labels (and probabilities) for new data",
        description="Predict a label, and the probability of each class, for every sample of "
                    "DATA; write them to a CSV file with one row per sample.",
        epilog="example:\n  skadapt predict model.joblib new_photos/ --out predictions.csv\n\n"
               "For a folder, every image file under it (subfolders included) is predicted.")
    sub.add_argument("model", metavar="MODEL", help="a model file written by 'skadapt fit'")
    sub.add_argument("data", metavar="DATA", help="folder of images, or CSV/TSV file")
    _add_data_options(sub, labelled=False)
    sub.add_argument("--out", default="predictions.csv", metavar="CSV",
                     help="the CSV file to write: columns input, prediction, and proba_<class> "
                          "per class")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.set_defaults(run=_run_predict)


def _add_demo(commands) -> None:
    sub = _command(
        commands, "demo", help="run the whole workflow on bundled data (no network needed)",
        description="Pretrain a small CNN on clean handwritten digits (scikit-learn's bundled "
                    "dataset), adapt it to faded, noisy digits with 5 labels per class using the "
                    "staged freeze/unfreeze strategy, and compare it with training from scratch "
                    "and a frozen linear probe under 5-fold cross-validation. Prints a results "
                    "table and writes the reports (about a minute on 2 CPU cores).")
    sub.add_argument("--out", default="skadapt-demo", metavar="DIR",
                     help="folder for index.html, results.csv/.md and one report per approach")
    sub.add_argument("--quick", action="store_true",
                     help="a few seconds of the same steps, for testing the installation; its "
                          "numbers mean nothing")
    sub.set_defaults(run=_run_demo)


# ----------------------------------------------------------------------------- option types
def _freeze_spec(text: str):
    if text in ("backbone", "none"):
        return text
    if text.isdigit():
        return int(text)
    patterns = [pattern.strip() for pattern in text.split(",") if pattern.strip()]
    if not patterns:
        raise argparse.ArgumentTypeError("pass 'backbone', 'none', an int, or name patterns")
    return patterns


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an int >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be an int >= 0")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an int") from None


def _int_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else _positive_int(text)


def _fraction_or_none(text: str) -> float | None:
    if text.lower() == "none":
        return None
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction in (0, 1), or 'none'")
    return value


def _holdout_fraction(text: str) -> float:
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction in [0, 1)")
    return value


def _cv_folds(text: str) -> int:
    value = _int(text)
    if value == 1 or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: pass K >= 2 folds, or 0 for a holdout")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


# ----------------------------------------------------------------------------- reading data
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


# ----------------------------------------------------------------------------- the model
def resolve_model_option(spec: str):
    """``--model``: a torchvision or Hugging Face name as given, or the object ``source:attr``.

    ``file.py:Name`` imports the file (its folder joins ``sys.path``, so the saved model loads
    again from there); ``package.module:Name`` imports the module from the working directory or
    the installed packages. A function (not a class) is called with no arguments.
    """
    match = _MODULE_SPEC.match(spec)
    if match is None:
        return spec
    source, attr = match.group("source"), match.group("attr")
    module = _import_source(source, spec)
    try:
        target = module
        for part in attr.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise ValueError(f"--model {spec!r}: {source!r} has no {attr!r}.") from None
    is_class = isinstance(target, type) and issubclass(target, nn.Module)
    if is_class or isinstance(target, nn.Module):
        return target
    if callable(target):
        built = target()
        if isinstance(built, nn.Module):
            return built
    raise TypeError(f"--model {spec!r} is a {type(target).__name__}: name an nn.Module class, "
                    "an instance, or a function returning one.")


def _import_source(source: str, spec: str):
    if source.endswith(".py"):
        file = Path(source).resolve()
        if not file.is_file():
            raise FileNotFoundError(f"--model {spec!r}: no file {source!r}.")
        _put_on_path(file.parent)
        source = file.stem
    else:
        _put_on_path(Path.cwd())
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as error:
        raise ValueError(f"--model {spec!r}: cannot import {source!r} ({error}): run from the "
                         "folder that holds it, or pass 'path/to/file.py:Name'.") from None


def _put_on_path(folder: Path) -> None:
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def _weights_option(weights: str, model) -> object:
    if weights.lower() == "none":
        return None
    if weights == "auto":
        is_torchvision = isinstance(model, str) and model in torchvision.models.list_models(
            module=torchvision.models)
        return "DEFAULT" if is_torchvision else None
    return weights


def _build_estimator(args, model) -> PretrainedFineTuner:
    return PretrainedFineTuner(
        model, _weights_option(args.weights, model), head=args.head, freeze=args.freeze,
        unfreeze_at=args.unfreeze_at, unfreeze_lr=args.unfreeze_lr, lr=args.lr,
        max_epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size,
        validation_fraction=args.validation_fraction, patience=args.patience,
        max_length=args.max_length,
        adapter=None if args.adapter == "none" else args.adapter,
        on_bad_image="skip" if args.skip_bad_images else "raise",
        num_workers=args.num_workers, device=args.device, random_state=args.random_state,
        callbacks=_progress_callbacks(args.quiet))


def _check_text_model(args, model) -> None:
    if not args.text_column:
        return
    if not is_text_model(model):
        raise ValueError(f"--text-column needs a Hugging Face text model, but --model "
                         f"{args.model!r} is not one: pass a local model folder or an "
                         "'org/name' id.")


def load_model(path: str):
    """Load a model file written by ``skadapt fit`` (any fitted scikit-learn estimator)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"MODEL {path!r} is not a file: pass the file written by "
                                "'skadapt fit --out'.")
    _put_on_path(Path.cwd())  # where a --model 'module:Name' was usually imported from
    try:
        model = joblib.load(file)
    except ModuleNotFoundError as error:
        raise ValueError(f"MODEL {path!r} needs the module {error.name!r} that defined its "
                         "network: run from the folder that holds it, or add it to "
                         "PYTHONPATH.") from None
    except Exception as error:  # unpickling fails in many ways; each means "not a model file"
        raise ValueError(f"MODEL {path!r} is not a model file written by 'skadapt fit' or "
                         f"joblib.dump ({type(error).__name__}: {error}).") from None
    if not hasattr(model, "predict"):
        raise ValueError(f"MODEL {path!r} holds a {type(model).__name__}, not a fitted model.")
    check_is_fitted(model)
    return model


# ----------------------------------------------------------------------------- progress bars
class EpochBar(Callback):
    """A skorch callback: one tqdm bar over the epochs of a fit, with the latest scores."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.bar_ = tqdm(total=net.max_epochs, desc="epochs", unit="epoch")

    def on_epoch_end(self, net, **kwargs):
        last = net.history[-1]
        shown = {key: f"{last[key]:.3f}" for key in ("train_loss", "valid_loss", "valid_acc")
                 if isinstance(last.get(key), float)}
        self.bar_.set_postfix(shown, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.bar_.close()
        del self.bar_  # a tqdm bar does not pickle


def _progress_callbacks(quiet: bool) -> list | None:
    """The epoch bar, and skorch's bar over the batches of each epoch (data loading included)."""
    if quiet:
        return None
    return [("epoch_bar", EpochBar()), ("batch_bar", ProgressBar())]


# ----------------------------------------------------------------------------- fit
def _run_fit(args) -> int:
    data = read_data(args.data, args, labelled=True)
    model = resolve_model_option(args.model)
    _check_text_model(args, model)
    estimator = _build_estimator(args, model)
    out, report_dir = Path(args.out), _report_dir(args)
    _check_writable_file(out, "--out")
    print(f"Fitting {_model_name(model)} on {data.source}", flush=True)
    report = None
    if args.cv:
        folds = StratifiedKFold(args.cv, shuffle=True, random_state=args.random_state)
        print(f"Cross-validating: {args.cv} folds, then a final fit on all the data", flush=True)
        report = evaluate(estimator, data.X, data.y, cv=folds)
        fitted = estimator.fit(data.X, data.y)
    elif args.holdout:
        train, test = _holdout_split(data, args)
        print(f"Training on {len(train)} samples, holding out {len(test)} for the report",
              flush=True)
        report = evaluate(estimator, data.X, data.y, cv=[(train, test)])
        fitted = report.estimators[0]
    else:
        fitted = estimator.fit(data.X, data.y)
    # the progress bars belong to this run, not to the model a user loads later
    fitted.set_params(callbacks=None)
    fitted.initialize_callbacks()
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(fitted, out)
    print(f"Model written to {out}")
    if report is not None:
        _print_scores(report)
        print(f"Report written to {report.save(report_dir)}")
    return 0


def _holdout_split(data: Data, args) -> tuple[np.ndarray, np.ndarray]:
    try:
        return train_test_split(np.arange(len(data)), test_size=args.holdout, stratify=data.y,
                                random_state=args.random_state)
    except ValueError as error:
        raise ValueError(f"--holdout {args.holdout} cannot hold out a stratified part of "
                         f"{data.source} ({error}): add samples, or pass --holdout 0 to train on "
                         "everything without a report.") from None


def _report_dir(args) -> Path:
    if args.report:
        return Path(args.report)
    out = Path(args.out)
    return out.with_name(out.stem + "-report")


def _check_writable_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a folder: pass a file path.")


def _model_name(model) -> str:
    if isinstance(model, str):
        return model
    return model.__name__ if isinstance(model, type) else type(model).__name__


def _print_scores(report, what: str = "held-out samples") -> None:
    summary = report.to_frame().drop(index=["fit_time", "predict_time"], errors="ignore")
    summary.index.name = None
    if report.n_folds == 1:
        table = summary[["mean"]].rename(columns={"mean": "score"})
        print(f"\nScores on {len(report.predictions)} {what}:")
    else:
        table = summary
        print(f"\nScores over {report.n_folds} folds (mean and standard deviation):")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    if report.confusion_matrix is not None:
        print("\nConfusion matrix (rows: true label, columns: predicted):")
        print(report.confusion_matrix.to_string())


# ----------------------------------------------------------------------------- evaluate
def _run_evaluate(args) -> int:
    model = load_model(args.model)
    data = read_data(args.data, args, labelled=True)
    print(f"Evaluating {args.model} on {data.source}", flush=True)
    # A frozen estimator's fit does nothing: one "fold" that trains on no sample and tests on all.
    everything = (np.arange(0), np.arange(len(data)))
    report = evaluate(FrozenEstimator(model), data.X, data.y, cv=[everything])
    _print_scores(report, what="samples")
    print(f"Report written to {report.save(args.report)}")
    return 0


# ----------------------------------------------------------------------------- predict
def _run_predict(args) -> int:
    model = load_model(args.model)
    data = read_data(args.data, args, labelled=False)
    out = Path(args.out)
    _check_writable_file(out, "--out")
    chunk = _CHUNK_BATCHES * getattr(model, "batch_size", 32)
    starts = range(0, len(data), chunk)
    labels, probabilities = [], []
    for start in tqdm(starts, desc="predicting", unit="chunk", disable=args.quiet):
        part = _rows(data.X, start, start + chunk)
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(part))
            probabilities.append(proba)
            labels.append(np.asarray(model.classes_)[proba.argmax(axis=1)])
        else:
            labels.append(np.asarray(model.predict(part)))
    table = pd.DataFrame({"input": data.names, "prediction": np.concatenate(labels)})
    if probabilities:
        proba = np.concatenate(probabilities)
        for j, label in enumerate(model.classes_):
            table[f"proba_{label}"] = proba[:, j]
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"Predictions for {len(table)} samples written to {out}")
    return 0


def _rows(X, start: int, stop: int):
    if isinstance(X, (pd.DataFrame, pd.Series)):
        return X.iloc[start:stop]
    return X[start:stop]


# ----------------------------------------------------------------------------- demo
def _run_demo(args) -> int:
    from skadapt._demo import run_demo

    run_demo(args.out, quick=args.quick)
    return 0
