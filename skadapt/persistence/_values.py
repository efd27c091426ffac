"""Parameter values as JSON, and classes as import paths.

JSON holds numbers, strings, booleans, None, lists and string-keyed dicts as they are; the other
values a parameter may take are tagged objects (one key starting with ``$``):

- ``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}`` (keys that are not strings),
  ``{"$array": [...], "dtype": "<U3"}`` (numbers, strings, booleans);
- ``{"$path": "..."}`` for path-like values;
- ``{"$class": "package.module:Qualified.Name"}`` for a class, imported when loading, and only
  for a parameter that takes one, as a subclass of what it accepts (``optimizer``: an
  ``Optimizer``; ``model``, ``criterion``: an ``nn.Module``...);
- ``{"$torchvision_weights": "ResNet18_Weights.IMAGENET1K_V1"}``.

Anything else (functions, callback instances, a criterion instance...) has no safe form and is
refused with a :class:`PersistenceError` naming the parameter. Importing a class runs its
module's top-level code, as any ``import`` does: load only folders whose classes you trust.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path, PurePath

import numpy as np
import torch

from skadapt.persistence._errors import PersistenceError

__all__ = ["decode", "encode", "import_class", "import_path"]

_IDENTIFIERS = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_ARRAY_KINDS = "biufUO"


def import_path(cls: type, what: str) -> str:
    """``"module:qualname"`` of ``cls``, checked to import back to ``cls``."""
    path = f"{cls.__module__}:{cls.__qualname__}"
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise PersistenceError(
            f"{what} is the class {cls.__qualname__}, defined in a script or inside a function: "
            "loading must import it by name. Move it to a module (e.g. my_models.py) importable "
            "where the model is loaded.")
    try:
        found = import_class(path, what)
    except PersistenceError as error:
        raise PersistenceError(f"{what}: {cls.__qualname__} cannot be imported back by its name "
                               f"{path!r}: {error}") from error
    if found is not cls:
        raise PersistenceError(f"{what}: importing {path!r} gives another object than the class "
                               f"{cls.__qualname__}; define it at the top level of its module.")
    return path


def import_class(path: str, what: str, base: type | tuple[type, ...] | None = None) -> type:
    """The class at ``"module:qualname"``, or a :class:`PersistenceError` naming it."""
    module_name, _, qualname = str(path).partition(":")
    if not (_IDENTIFIERS.match(module_name) and _IDENTIFIERS.match(qualname)):
        raise PersistenceError(f"{what}: {path!r} is not an import path 'package.module:Class'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise PersistenceError(
            f"{what} needs the class {qualname} from module {module_name!r}, which cannot be "
            f"imported ({error}): install or put on sys.path the code that defines "
            f"{path}.") from error
    found = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise PersistenceError(
                f"{what} needs the class {qualname} from module {module_name!r}, which has no "
                f"{part!r}: restore the code that defines {path} (renamed or moved?).")
    if not isinstance(found, type):
        raise PersistenceError(f"{what}: {path} is not a class.")
    if base is not None and not issubclass(found, base):
        names = " or ".join(b.__name__ for b in (base if isinstance(base, tuple) else (base,)))
        raise PersistenceError(f"{what}: {path} is not a subclass of {names}.")
    return found


def encode(value, what: str):
    """``value`` as JSON-ready data (see the module's docstring), or a PersistenceError."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, tuple):
        return {"$tuple": [encode(item, what) for item in value]}
    if isinstance(value, list):
        return [encode(item, what) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return {key: encode(item, what) for key, item in value.items()}
        return {"$dict": [[encode(key, what), encode(item, what)] for key, item in value.items()]}
    if isinstance(value, np.ndarray) and value.dtype.kind in _ARRAY_KINDS and value.ndim == 1:
        items = [encode(item.item() if isinstance(item, np.generic) else item, what)
                 for item in value]
        if value.dtype.kind == "O" and not all(isinstance(item, (str, int, float, bool))
                                               for item in items):
            raise PersistenceError(f"{what} holds values that are not numbers or strings: they "
                                   "have no safe representation.")
        return {"$array": items, "dtype": value.dtype.str}
    if isinstance(value, (os.PathLike, PurePath)):
        return {"$path": os.fspath(value)}
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, type):
        return {"$class": import_path(value, what)}
    try:
        from torchvision.models import WeightsEnum
    except ImportError:  # pragma: no cover - torchvision is a dependency
        WeightsEnum = ()  # noqa: N806
    if isinstance(value, WeightsEnum):
        return {"$torchvision_weights": f"{type(value).__name__}.{value.name}"}
    raise PersistenceError(
        f"{what}={value!r} has no safe representation (JSON values, and classes importable by "
        "name, are saved; instances, functions and callbacks are not): pass a value of those "
        "kinds, or persist this estimator with joblib (which runs pickle when loading).")


def decode(data, what: str, base: type | tuple[type, ...] | None = None):
    """The value ``encode`` gave ``data`` for; classes are imported and checked against ``base``
    (with ``base=None``, a class is refused: a saved folder names classes only where a parameter
    takes one)."""
    if isinstance(data, list):
        return [decode(item, what, base) for item in data]
    if not isinstance(data, dict):
        return data
    if "$tuple" in data:
        return tuple(decode(item, what, base) for item in data["$tuple"])
    if "$dict" in data:
        return {decode(key, what): decode(item, what, base) for key, item in data["$dict"]}
    if "$array" in data:
        dtype = np.dtype(data["dtype"])
        if dtype.kind not in _ARRAY_KINDS:
            raise PersistenceError(f"{what}: unsupported array dtype {data['dtype']!r}.")
        if dtype.kind == "O":
            array = np.empty(len(data["$array"]), dtype=object)
            array[:] = data["$array"]
            return array
        return np.array(data["$array"], dtype=dtype)
    if "$path" in data:
        return Path(data["$path"])
    if "$class" in data:
        if base is None:  # only parameters that take a class may name one
            raise PersistenceError(f"{what}: a class ({data['$class']!r}) is not accepted here.")
        return import_class(data["$class"], what, base)
    if "$torchvision_weights" in data:
        from torchvision.models import get_weight

        return get_weight(data["$torchvision_weights"])
    return {key: decode(item, what, base) for key, item in data.items()}
