"""The ``skadapt`` command's entry point, its options and their help.

Only the standard library is imported here: the commands (:mod:`skadapt.cli._commands`) are
imported once the options are parsed, so ``--help`` answers at once.

Errors a user can cause (a missing folder, an empty class folder, an unknown model, a missing
column, a checkpoint that does not fit) end with one line on stderr and exit code 1; usage errors
(an unknown option) exit with 2, as argparse does. ``--traceback`` shows the full traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
import warnings

from skadapt import __version__

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
# The exceptions that mean "the input or an option is wrong", not "skadapt has a bug".
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError, ImportError, KeyError)


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
            return _run(args)
        except KeyboardInterrupt:
            print(f"skadapt {args.command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except USER_ERRORS as error:
            if args.traceback:
                raise
            print(f"skadapt {args.command}: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_ERROR


def _run(args) -> int:
    # Imported only now: the commands need torch, which takes seconds to import, and --help,
    # --version and usage errors should not wait for it.
    commands = importlib.import_module("skadapt.cli._commands")
    return getattr(commands, f"run_{args.command}")(args)


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
    """The argument parser of the ``skadapt`` command and its subcommands."""
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
    _add_export(commands)
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
                    "(a folder in skadapt's safe format) and an evaluation report (HTML with figures, "
                    "and JSON).",
        epilog="examples:\n"
               "  skadapt fit photos/ --model resnet18 --weights DEFAULT --freeze backbone "
               "--epochs 10 --out model\n"
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
                            "a timm model as 'timm/NAME' (needs pip install skadapt[timm]), "
                            "your own module as 'file.py:Name' or 'package.module:Name' (an "
                            "nn.Module class built with no arguments, an instance, or a function "
                            "returning one), or a Hugging Face image or text model (a local "
                            "folder or 'org/name')")
    model.add_argument("--weights", default="auto", metavar="W",
                       help="'auto' (DEFAULT for torchvision and timm names, the module's own "
                            "weights otherwise), DEFAULT or a torchvision weights name "
                            "(IMAGENET1K_V1), "
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
    tuning.add_argument("--lr", type=_lr_or_auto, default=1e-3, metavar="LR|auto",
                        help="learning rate of the new head, or 'auto': run a learning-rate "
                             "range test on the training data first, use the rate it suggests "
                             "and plot the test as lr_find.png in the report folder")
    tuning.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                        help="samples per training step")
    tuning.add_argument("--image-size", type=_positive_int, metavar="PIXELS",
                        help="input size for images (default: the model's own for "
                             "torchvision and timm names, with or without weights; required "
                             "for your own module on image files)")
    tuning.add_argument("--validation-fraction", type=_fraction_auto_or_none, default="auto",
                        metavar="F", help="part of the training data held out to monitor the fit "
                        "and stop early (only with 100 or more samples), 'auto' (10%% when that "
                        "is 100 samples or more, else none) or 'none'")
    tuning.add_argument("--patience", type=_int_auto_or_none, default="auto", metavar="N",
                        help="early stopping patience in epochs, 'auto' (max(5, epochs // 4)) "
                             "or 'none'")
    tuning.add_argument("--class-weight", choices=["none", "balanced"], default="none",
                        help="'balanced': weigh classes by the inverse of their frequency")
    tuning.add_argument("--head-solver", choices=["auto", "convex", "gradient"], default="auto",
                        help="a frozen backbone's linear head: solved exactly on cached features "
                             "(convex, the default when possible) or trained by gradient steps")
    tuning.add_argument("--max-length", type=_positive_int, default=128, metavar="TOKENS",
                        help="text models: texts are truncated to this many tokens")
    tuning.add_argument("--adapter", choices=["none", "lora"], default="none",
                        help="text models: add LoRA adapters (trained with the head)")
    tuning.add_argument("--skip-bad-images", action="store_true",
                        help="leave unreadable image files out (with a warning) instead of "
                             "stopping")
    tuning.add_argument("--cache-dir", metavar="DIR",
                        help="keep a frozen backbone's features on disk in DIR: later runs, the "
                             "folds of --cv and the workers of --scheduler (on storage they "
                             "share) compute each sample's features once")
    tuning.add_argument("--num-workers", type=_non_negative_int, default=0, metavar="N",
                        help="processes decoding images in parallel")
    tuning.add_argument("--device", default="auto",
                        help="'auto' (a GPU when there is one), 'cpu', 'cuda', 'cuda:1', ...")
    tuning.add_argument("--random-state", type=int, default=0, metavar="SEED",
                        help="seed for initialization, shuffling, augmentation and splits")
    output = sub.add_argument_group("output")
    output.add_argument("--out", default="model", metavar="MODEL",
                        help="where to write the fitted model: a folder in skadapt's safe format "
                             "(no pickle; load it with skadapt.load), or a file ending in "
                             ".joblib (joblib.load)")
    output.add_argument("--report", metavar="DIR",
                        help="folder for report.html and report.json (default: the model file's "
                             "name with '-report', e.g. model-report/)")
    output.add_argument("--holdout", type=_holdout_fraction, default=0.2, metavar="F",
                        help="part of the data held out to evaluate the saved model (stratified); "
                             "0 trains on everything and writes no report")
    output.add_argument("--cv", type=_cv_folds, default=0, metavar="K",
                        help="report a stratified K-fold cross-validation (K more fits) instead "
                             "of a holdout, then train the saved model on all the data")
    output.add_argument("--n-jobs", type=_n_jobs, metavar="N",
                        help="--cv: folds fitted at a time, in local processes or, with "
                             "--scheduler, on the cluster's workers; -1: as many as there are "
                             "cores or workers (default: 1, or every worker with --scheduler)")
    output.add_argument("--scheduler", metavar="ADDRESS",
                        help="--cv: fit the folds on a Dask cluster, given its scheduler's "
                             "address (tcp://host:8786) or scheduler file (.json). Needs pip "
                             "install 'skadapt[dask]'; the workers must read DATA (and "
                             "--cache-dir) at the same paths")
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    output.add_argument("--checkpoint-dir", metavar="DIR",
                        help="after every epoch, save what resuming an interrupted fit needs in "
                             "a subfolder of DIR (one per fit)")
    output.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from the last complete epoch saved "
                             "in --checkpoint-dir (same data and options)")


def _add_evaluate(commands) -> None:
    sub = _command(
        commands, "evaluate", help="evaluate a fitted model on labelled data",
        description="Evaluate a fitted model on labelled data: print the metrics and the "
                    "confusion matrix, and write report.html (with figures) and report.json.",
        epilog="example:\n  skadapt evaluate model test_photos/ --report test-report/\n\n"
               "Pass the same data options (--path-column, --text-column, --feature-columns) "
               "as when fitting.")
    sub.add_argument("model", metavar="MODEL", help="a model written by 'skadapt fit' (or any "
                                                    "fitted scikit-learn classifier saved with "
                                                    "skadapt.save or joblib.dump)")
    sub.add_argument("data", metavar="DATA", help="image folder (one subfolder per class) or "
                                                  "CSV/TSV file")
    _add_data_options(sub, labelled=True)
    sub.add_argument("--report", default="report", metavar="DIR",
                     help="folder for report.html and report.json")


def _add_predict(commands) -> None:
    sub = _command(
        commands, "predict", help="predict labels (and probabilities) for new data",
        description="Predict a label, and the probability of each class, for every sample of "
                    "DATA; write them to a CSV file with one row per sample.",
        epilog="example:\n  skadapt predict model new_photos/ --out predictions.csv\n\n"
               "For a folder, every image file under it (subfolders included) is predicted.")
    sub.add_argument("model", metavar="MODEL", help="a model written by 'skadapt fit', or "
                                                    "an ONNX file written by 'skadapt export'")
    sub.add_argument("data", metavar="DATA", help="folder of images, or CSV/TSV file")
    _add_data_options(sub, labelled=False)
    sub.add_argument("--out", default="predictions.csv", metavar="CSV",
                     help="the CSV file to write: columns input, prediction, and proba_<class> "
                          "per class")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_export(commands) -> None:
    sub = _command(
        commands, "export", help="export a fitted model to ONNX, for onnxruntime",
        description="Export a model written by 'skadapt fit' to one ONNX graph with a dynamic "
                    "batch size; its classes and preprocessing are stored in the graph and in "
                    "a JSON file beside it (and a text model's tokenizer in a folder beside it). "
                    "'skadapt predict OUT.onnx DATA' runs it with onnxruntime.",
        epilog="example:\n  skadapt export model model.onnx --quantize\n"
               "  skadapt predict model.onnx new_photos/ --out predictions.csv\n\n"
               "Needs pip install 'skadapt[onnx]'.")
    sub.add_argument("model", metavar="MODEL", help="a model written by 'skadapt fit'")
    sub.add_argument("out", metavar="OUT", help="the ONNX file to write, e.g. model.onnx")
    sub.add_argument("--quantize", action="store_true",
                     help="store the weights as int8 (dynamic quantization): a smaller, "
                          "faster graph with slightly different outputs")


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


def _int_auto_or_none(text: str) -> int | str | None:
    if text.lower() in ("none", "auto"):
        return None if text.lower() == "none" else "auto"
    return _positive_int(text)


def _fraction_auto_or_none(text: str) -> float | str | None:
    if text.lower() in ("none", "auto"):
        return None if text.lower() == "none" else "auto"
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction in (0, 1), 'auto' or 'none'")
    return value


def _holdout_fraction(text: str) -> float:
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction in [0, 1)")
    return value


def _n_jobs(text: str) -> int:
    value = _int(text)
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"{text!r}: pass N >= 1 fits at a time, or -1 for as "
                                         "many as there are cores or workers")
    return value


def _cv_folds(text: str) -> int:
    value = _int(text)
    if value == 1 or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: pass K >= 2 folds, or 0 for a holdout")
    return value


def _lr_or_auto(text: str) -> float | str:
    if text.lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: pass a learning rate (e.g. 0.001) or "
                                         "'auto'") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: pass a positive learning rate or 'auto'")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
