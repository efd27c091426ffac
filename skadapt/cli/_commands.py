"""The ``skadapt`` commands: ``fit``, ``evaluate``, ``predict`` and ``demo``.

Each reads the data (:mod:`skadapt.cli._data`), builds or loads an estimator and calls the
library; what it adds is what a terminal needs: progress bars and files on disk.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback, ProgressBar
from torch import nn
from tqdm.auto import tqdm

from skadapt.cli._data import Data, read_data
from skadapt.cli._parallel import parallel_folds
from skadapt.evaluation import evaluate
from skadapt.finetune import LRFinderResult, PretrainedFineTuner, lr_find
from skadapt.networks import default_weights, takes_texts
from skadapt.persistence import PersistenceError, load, save
from skadapt.persistence._format import MANIFEST

_CHUNK_BATCHES = 8  # predict shows progress every this many batches
_DEFAULT_LR = 1e-3
_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")  # --out paths written with joblib
_MODULE_SPEC = re.compile(r"^(?P<source>[\w.]+|.+\.py):(?P<attr>[\w.]+)$")


# ----------------------------------------------------------------------------- the model
def resolve_model_option(spec: str):
    """``--model``: a torchvision, timm or Hugging Face name as given, or the object ``source:attr``.

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
    if weights == "auto":  # pretrained for torchvision and timm names, the module's own otherwise
        return default_weights(model)
    return weights


def _build_estimator(args, model) -> PretrainedFineTuner:
    return PretrainedFineTuner(
        model, _weights_option(args.weights, model), head=args.head, freeze=args.freeze,
        unfreeze_at=args.unfreeze_at, unfreeze_lr=args.unfreeze_lr,
        lr=_DEFAULT_LR if args.lr == "auto" else args.lr,  # "auto": set by the range test
        max_epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size,
        validation_fraction=args.validation_fraction, patience=args.patience,
        head_solver=args.head_solver,
        class_weight=None if args.class_weight == "none" else args.class_weight,
        max_length=args.max_length,
        adapter=None if args.adapter == "none" else args.adapter,
        on_bad_image="skip" if args.skip_bad_images else "raise",
        num_workers=args.num_workers, device=args.device, random_state=args.random_state,
        checkpoint_dir=getattr(args, "checkpoint_dir", None),
        cache_dir=_absolute(getattr(args, "cache_dir", None)),
        callbacks=_progress_callbacks(args.quiet))


def _check_text_model(args, model) -> None:
    if not args.text_column:
        return
    if not takes_texts(model):
        raise ValueError(f"--text-column needs a Hugging Face text model, but --model "
                         f"{args.model!r} is not one: pass a local model folder or an "
                         "'org/name' id.")


def load_model(path: str):
    """Load what ``skadapt fit`` wrote: a model folder in the safe format (``skadapt.load``), or a
    joblib file (any fitted scikit-learn estimator)."""
    file = Path(path)
    if not (file.is_file() or (file / MANIFEST).is_file()):
        raise FileNotFoundError(f"MODEL {path!r} is not a file or a model folder: pass what "
                                "'skadapt fit --out' wrote.")
    _put_on_path(Path.cwd())  # where a --model 'module:Name' was usually imported from
    if file.is_dir():
        try:
            model = load(file)
        except PersistenceError as error:
            raise ValueError(f"MODEL {path!r}: {error}") from None
        return model
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
def run_fit(args) -> int:
    data = read_data(args.data, args, labelled=True)
    model = resolve_model_option(args.model)
    _check_text_model(args, model)
    if args.resume and not args.checkpoint_dir:
        raise ValueError("--resume needs --checkpoint-dir: pass the folder of the interrupted "
                         "run.")
    resume = {"resume": True} if args.resume else {}
    _warn_unused_parallel_options(args)
    estimator = _build_estimator(args, model)
    out, report_dir = Path(args.out), _report_dir(args)
    _check_model_out(out)
    print(f"Fitting {_model_name(model)} on {data.source}", flush=True)
    split = _holdout_split(data, args) if args.holdout and not args.cv else None
    lr_range_test = None
    if args.lr == "auto":  # on the data the saved model trains on: never the held-out part
        rows = split[0] if split is not None else np.arange(len(data))
        lr_range_test = _find_lr(estimator, data, rows, report_dir)
    report = None
    if args.cv:
        folds = StratifiedKFold(args.cv, shuffle=True, random_state=args.random_state)
        print(f"Cross-validating: {args.cv} folds, then a final fit on all the data", flush=True)
        report = _cross_validate(estimator, data, folds, resume, args)
        fitted = estimator.fit(data.X, data.y, **resume)
    elif split is not None:
        train, test = split
        print(f"Training on {len(train)} samples, holding out {len(test)} for the report",
              flush=True)
        report = evaluate(estimator, data.X, data.y, cv=[(train, test)], params=resume)
        fitted = report.estimators[0]
    else:
        fitted = estimator.fit(data.X, data.y, **resume)
    # the progress bars belong to this run, not to the model a user loads later
    fitted.set_params(callbacks=None)
    fitted.initialize_callbacks()
    print(f"Model written to {save_model(fitted, out)}")
    if report is not None:
        report.lr_finder = lr_range_test  # its curve beside the training curves
        _print_scores(report)
        print(f"Report written to {report.save(report_dir)}")
    return 0


def _cross_validate(estimator: PretrainedFineTuner, data: Data, folds, resume: dict, args):
    """``--cv``: the folds fitted here, in ``--n-jobs`` local processes, or on the Dask cluster
    of ``--scheduler``; folds fitted in parallel show no progress bars (they would interleave)."""
    scheduler, n_jobs = getattr(args, "scheduler", None), getattr(args, "n_jobs", None)
    if scheduler is None and n_jobs in (None, 1):
        return evaluate(estimator, data.X, data.y, cv=folds, params=resume)
    quiet = clone(estimator).set_params(callbacks=None)
    # image files: absolute paths, which workers started in another folder read all the same
    X = [_absolute(x) for x in data.X] if isinstance(data.X, list) else data.X
    with parallel_folds(scheduler, n_jobs, upload=_model_files(args.model),
                        modules=_model_modules(estimator.model)) as jobs:
        where = (f"the Dask cluster at {scheduler}" if scheduler
                 else "local processes, one per core" if n_jobs == -1
                 else f"{n_jobs} local processes")
        print(f"Fitting the folds on {where}", flush=True)
        return evaluate(quiet, X, data.y, cv=folds, params=resume, n_jobs=jobs)


def _absolute(path):
    return os.path.abspath(path) if isinstance(path, str) else path


def _model_files(spec: str) -> list[Path]:
    """The Python file of a ``--model file.py:Name``, which the workers of a cluster import."""
    match = _MODULE_SPEC.match(spec)
    if match is None or not match.group("source").endswith(".py"):
        return []
    return [Path(match.group("source"))]


def _model_modules(model) -> list[str]:
    """The module that defines a ``--model`` class or instance (none for a name)."""
    if isinstance(model, str):
        return []
    return [(model if isinstance(model, type) else type(model)).__module__]


def _warn_unused_parallel_options(args) -> None:
    if not args.cv and (getattr(args, "scheduler", None) or getattr(args, "n_jobs", None)):
        warnings.warn("--scheduler and --n-jobs spread the folds of --cv; without --cv the "
                      "model is fitted here.", UserWarning, stacklevel=2)


def _find_lr(estimator: PretrainedFineTuner, data: Data, rows: np.ndarray,
             report_dir: Path) -> LRFinderResult:
    """``--lr auto``: a learning-rate range test on ``rows``; its suggestion (3 significant
    digits, as printed) becomes the estimator's ``lr``, its plot ``lr_find.png`` in the report
    folder."""
    print(f"Learning-rate range test on {len(rows)} samples", flush=True)
    result = lr_find(estimator, _safe_indexing(data.X, rows), data.y[rows])
    lr = float(f"{result.suggestion:.3g}")
    try:
        ax = result.plot()
    except ImportError:
        plot = "no plot: matplotlib is missing (pip install skadapt[plots])"
    else:
        report_dir.mkdir(parents=True, exist_ok=True)
        ax.figure.savefig(report_dir / "lr_find.png", dpi=100)
        plot = f"plot in {report_dir / 'lr_find.png'}"
    print(f"Suggested learning rate: {lr:g} ({result.method}, {len(result.lrs)} steps); {plot}",
          flush=True)
    estimator.set_params(lr=lr)
    return result


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


def save_model(fitted, out: Path) -> Path:
    """Write ``fitted`` to ``out``: a folder in the safe format (``skadapt.save``: no pickle), or
    a joblib file when ``out`` ends in ``.joblib``/``.pkl``. A model the safe format cannot hold
    (e.g. one with a callable ``augment``) is written with joblib beside it, and the reason printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix in _PICKLE_SUFFIXES:
        joblib.dump(fitted, out)
        return out
    try:
        return save(fitted, out, overwrite=True)
    except PersistenceError as error:
        fallback = out.with_name(out.name + ".joblib")
        print(f"The safe format cannot hold this model yet ({error}); writing it with joblib "
              "instead.", file=sys.stderr)
        joblib.dump(fitted, fallback)
        return fallback


def _check_model_out(out: Path) -> None:
    """Before fitting: ``--out`` must be a new folder, a saved model's folder, or a joblib file."""
    if out.suffix in _PICKLE_SUFFIXES:
        _check_writable_file(out, "--out")
    elif out.is_file():
        raise ValueError(f"--out {str(out)!r} is a file: pass a folder for the model in the safe "
                         "format, or a path ending in .joblib for joblib.")
    elif out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ValueError(f"--out {str(out)!r} is a folder that holds no saved model: pass a new "
                         "folder (it would be replaced).")


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
def run_evaluate(args) -> int:
    model = load_model(args.model)
    data = read_data(args.data, args, labelled=True)
    print(f"Evaluating {args.model} on {data.source}", flush=True)
    # A frozen estimator's fit does nothing: one "fold" that trains on no sample and tests on all.
    everything = (np.arange(0), np.arange(len(data)))
    report = evaluate(FrozenEstimator(model), data.X, data.y, cv=[everything],
                      data_name=data.source)
    report.estimator_name = f"{args.model} ({report.estimator_name})"  # the report's header
    _print_scores(report, what="samples")
    print(f"Report written to {report.save(args.report)}")
    return 0


# ----------------------------------------------------------------------------- predict
def run_predict(args) -> int:
    if Path(args.model).suffix.lower() == ".onnx":  # written by 'skadapt export'
        from skadapt.export import OnnxPredictor

        model = OnnxPredictor(args.model)
    else:
        model = load_model(args.model)
    data = read_data(args.data, args, labelled=False)
    out = Path(args.out)
    _check_writable_file(out, "--out")
    chunk = _CHUNK_BATCHES * getattr(model, "batch_size", 32)
    starts = range(0, len(data), chunk)
    labels, probabilities, embeddings = [], [], []
    for start in tqdm(starts, desc="predicting", unit="chunk", disable=args.quiet):
        part = _rows(data.X, start, start + chunk)
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(part))
            probabilities.append(proba)
            labels.append(np.asarray(model.classes_)[proba.argmax(axis=1)])
        elif hasattr(model, "predict"):
            labels.append(np.asarray(model.predict(part)))
        else:  # a feature extractor: one column per embedding dimension
            embeddings.append(np.asarray(model.transform(part)))
    table = pd.DataFrame({"input": data.names})
    if labels:
        table["prediction"] = np.concatenate(labels)
    else:
        values = np.concatenate(embeddings)
        table = table.join(pd.DataFrame(values, columns=[f"emb{j}" for j in range(values.shape[1])]))
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


# ----------------------------------------------------------------------------- export
def run_export(args) -> int:
    from skadapt.export import export_onnx

    model = load_model(args.model)
    exported = export_onnx(model, args.out, quantize=args.quantize)
    size = f"{exported.n_bytes / 2**20:.2f} MiB"
    if exported.float_n_bytes is not None:
        size += f" (int8; {exported.float_n_bytes / 2**20:.2f} MiB in float32)"
    print(f"ONNX model written to {exported.path}, {size}; beside it: "
          f"{', '.join(path.name for path in exported.files[1:])}")
    return 0


# ----------------------------------------------------------------------------- demo
def run_demo(args) -> int:
    from skadapt.cli._demo import run_demo

    run_demo(args.out, quick=args.quick)
    return 0
