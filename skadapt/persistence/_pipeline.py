"""A scikit-learn ``Pipeline`` saved step by step: skadapt's estimators in sub-folders of the safe
format, every other step with skops (``skops.io``), which loads only types it trusts.

``config.json`` lists the steps in order, each with its name and where it is: ``"folder"`` (a
sub-folder, loaded by :func:`skadapt.load`), ``"skops"`` (a ``.skops`` file, loaded with skops'
default trusted types plus those the caller passes as ``trusted``), or ``"passthrough"``. A
pipeline with ``memory`` set is refused (a cache location is not part of a model).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from skadapt.persistence._errors import PersistenceError
from skadapt.persistence._format import CONFIG, write_into

__all__ = ["rebuild", "writers"]


def _skops_io():
    try:
        import skops.io
    except ImportError as error:
        raise PersistenceError("the steps of a Pipeline other than skadapt's are saved with skops: "
                               "pip install 'skadapt[persist]'.") from error
    return skops.io


def writers(pipeline: Pipeline, writers_of: Callable) -> dict[str, Callable[[Path], None]]:
    """The files holding ``pipeline``; ``writers_of`` gives those of a skadapt step."""
    if pipeline.memory is not None:
        raise PersistenceError("the Pipeline has memory set (a cache location, not part of a "
                               "model): set memory=None before saving.")
    check_is_fitted(pipeline)
    steps, files = [], {}
    for index, (name, step) in enumerate(pipeline.steps):
        if step is None or (isinstance(step, str) and step == "passthrough"):
            steps.append({"name": name, "passthrough": step})
        elif type(step).__module__.startswith("skadapt.") or isinstance(step, Pipeline):
            folder, step_files = f"step{index}", writers_of(step)
            files[folder] = lambda path, step_files=step_files: _write_subfolder(path, step_files)
            steps.append({"name": name, "folder": folder})
        else:
            file = f"step{index}.skops"
            files[file] = lambda path, step=step: _skops_io().dump(step, path)
            steps.append({"name": name, "skops": file})
    from skadapt.persistence._estimators import versions

    config = {"estimator": "Pipeline", "versions": versions(), "steps": steps,
              "params": {"verbose": bool(pipeline.verbose),
                         "transform_input": getattr(pipeline, "transform_input", None)}}
    text = json.dumps(config, indent=2)
    return {CONFIG: lambda path: path.write_text(text, encoding="utf-8"), **files}


def _write_subfolder(path: Path, files: dict) -> None:
    path.mkdir()
    write_into(path, files)


def rebuild(config: dict, folder: Path, load_step: Callable[[Path], object],
            trusted: Sequence[str]) -> Pipeline:
    """The pipeline ``config`` describes; skadapt steps come from ``load_step``."""
    steps = []
    for entry in config["steps"]:
        if "folder" in entry:
            step = load_step(folder / entry["folder"])
        elif "skops" in entry:
            step = _load_skops(folder / entry["skops"], trusted)
        elif entry.get("passthrough") in (None, "passthrough"):
            step = entry.get("passthrough")
        else:
            raise PersistenceError(f"{folder / CONFIG}: step {entry!r} is not one this skadapt "
                                   "reads; save the model again.")
        steps.append((str(entry["name"]), step))
    params = config.get("params", {})
    kwargs = {"verbose": bool(params.get("verbose", False))}
    if params.get("transform_input") is not None:
        kwargs["transform_input"] = [str(name) for name in params["transform_input"]]
    return Pipeline(steps, **kwargs)


def _load_skops(file: Path, trusted: Sequence[str]):
    sio = _skops_io()
    untrusted = [name for name in sio.get_untrusted_types(file=file) if name not in set(trusted)]
    if untrusted:
        raise PersistenceError(
            f"{file} holds types that skops does not trust by default: {untrusted}. Check that "
            f"they are what you expect, then pass skadapt.load(path, trusted={untrusted!r}).")
    return sio.load(file, trusted=list(trusted) or None)
