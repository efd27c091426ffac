"""The folder layout of a saved model, its manifest and the SHA-256 of every file.

A saved model is a folder::

    manifest.json        format name and version, and the SHA-256 of every other file
    config.json          what the model is: class, parameters, fitted state, library versions
    weights.safetensors  the network's state dict (safetensors: tensors only, no code)

A ``Pipeline`` holds instead one entry per step: a sub-folder of this same layout for each
skadapt estimator (the manifest records the SHA-256 of its ``manifest.json``, which records
those of its files), a ``.skops`` file for each other step.

The manifest is read first: a folder of another format or of a newer format version is refused
before anything else is read, and every file it lists must be present with the same SHA-256.
Writing goes to a temporary sibling folder, renamed into place once complete, so a crash
never leaves a half-written model under ``path``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from skadapt.persistence._errors import PersistenceError

FORMAT_NAME = "skadapt-safe-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
WEIGHTS = "weights.safetensors"

__all__ = ["CONFIG", "FORMAT_NAME", "FORMAT_VERSION", "MANIFEST", "WEIGHTS", "read_folder",
           "sha256_of", "write_folder", "write_into"]


def sha256_of(path: Path) -> str:
    """The hexadecimal SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_folder(path: str | os.PathLike, writers: Mapping[str, Callable[[Path], None]], *,
                 overwrite: bool = False) -> Path:
    """Write each file of ``writers`` (name -> function writing that file) and the manifest
    into the folder ``path``, atomically."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise PersistenceError(f"{path} already exists: pass overwrite=True to replace it, or "
                                   "choose another path.")
        if path.is_dir() and not (path / MANIFEST).is_file() and any(path.iterdir()):
            raise PersistenceError(f"{path} is a non-empty folder that is not a saved skadapt model "
                                   "(no manifest.json): refusing to replace it; choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write_into(staging, writers)
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def write_into(folder: Path, writers: Mapping[str, Callable[[Path], None]]) -> None:
    """Write each file of ``writers`` into the existing ``folder``, then its manifest."""
    files = {}
    for name, write in writers.items():
        write(folder / name)
        # a sub-folder is pinned by its own manifest, which pins its files
        file = f"{name}/{MANIFEST}" if (folder / name).is_dir() else name
        files[file] = sha256_of(folder / file)
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def read_folder(path: str | os.PathLike) -> dict:
    """Check the folder ``path`` (format, version, every file's presence and SHA-256) and return
    its manifest."""
    path = Path(path)
    if not path.is_dir():
        raise PersistenceError(f"{path} is not a folder: pass the folder skadapt.save wrote.")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise PersistenceError(f"{manifest_path} is missing: {path} is not a complete folder "
                               "written by skadapt.save; save the model again.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PersistenceError(f"{manifest_path} is not valid JSON ({error}): the folder is "
                               "damaged; save the model again.") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise PersistenceError(f"{manifest_path} does not describe a model saved by skadapt.save "
                               f"(format {FORMAT_NAME!r} expected).")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        hint = ("it was written by a newer skadapt: upgrade skadapt to load it"
                if isinstance(version, int) and version > FORMAT_VERSION else
                "save the model again with this version of skadapt")
        raise PersistenceError(f"{manifest_path} has format version {version!r}, but this skadapt "
                               f"reads version {FORMAT_VERSION}: {hint}.")
    files = manifest.get("files")
    if not isinstance(files, dict) or CONFIG not in files:
        raise PersistenceError(f"{manifest_path} does not list {CONFIG}: the folder is damaged; "
                               "save the model again.")
    for name, expected in files.items():
        file = path / name
        parts = Path(name).parts
        if not parts or ".." in parts or Path(name).is_absolute() or not file.is_file():
            raise PersistenceError(f"{file} is missing: the folder is incomplete; copy the whole "
                                   "folder again or save the model again.")
        actual = sha256_of(file)
        if actual != expected:
            raise PersistenceError(
                f"{file} has SHA-256 {actual}, but {MANIFEST} records {expected}: the file was "
                "modified or damaged after saving; do not use it, and save the model again.")
    return manifest
