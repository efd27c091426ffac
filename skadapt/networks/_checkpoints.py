"""Checkpoint files: read a state dict (nested, ``DataParallel``-prefixed, ``.safetensors``) and
load it into a module with strict key and shape matching and a message that says what is wrong."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

_TORCH_SUFFIXES = (".pt", ".pth", ".th", ".bin")
CHECKPOINT_SUFFIXES = (*_TORCH_SUFFIXES, ".safetensors")
# Keys under which training scripts commonly nest the state dict, looked up in this order.
_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "module")
_DATA_PARALLEL_PREFIX = "module."
_SHOWN_KEYS = 10


def checkpoint_path(weights, *, names_hint: str = "torchvision weights names ('DEFAULT', "
                    "'IMAGENET1K_V1') apply only when model is a torchvision model name") -> Path:
    """``weights`` as the path of an existing checkpoint file, or a clear error."""
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be None, a weights name or a checkpoint path; got a "
            f"{type(weights).__name__}."
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights={str(weights)!r}: no checkpoint file at that path. Pass the path of a "
            f"{'/'.join(CHECKPOINT_SUFFIXES)} file; {names_hint}."
        )
    return path


def looks_like_path(text: str) -> bool:
    path = Path(text)
    return (path.suffix.lower() in CHECKPOINT_SUFFIXES or "/" in text or os.sep in text
            or path.exists())


def load_file_into(module: nn.Module, weights) -> None:
    """Load the checkpoint file ``weights`` into ``module`` (strict keys and shapes)."""
    path = checkpoint_path(weights)
    load_into(module, path, read_checkpoint(path))


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a checkpoint file, unwrapped and without a ``module.`` prefix.

    Parameters
    ----------
    path : str or path-like
        A ``.pt``, ``.pth``, ``.th`` or ``.bin`` file written by ``torch.save`` (read with
        ``weights_only=True``), its state dict possibly nested under ``"state_dict"``,
        ``"model_state_dict"``, ``"model"`` or ``"module"``, or a ``.safetensors`` file.

    Returns
    -------
    dict of str to torch.Tensor
        On the CPU; the ``module.`` prefix of a ``DataParallel`` model is stripped when every key
        carries it.

    Examples
    --------
    >>> import tempfile, torch
    >>> path = tempfile.mkdtemp() + "/linear.pt"
    >>> torch.save({"state_dict": torch.nn.Linear(2, 1).state_dict()}, path)
    >>> sorted(load_checkpoint(path))
    ['bias', 'weight']
    """
    state = read_checkpoint(Path(path))
    if all(key.startswith(_DATA_PARALLEL_PREFIX) for key in state):
        consume_prefix_in_state_dict_if_present(state, _DATA_PARALLEL_PREFIX)
    return state


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}.")
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(
            f"{str(path)!r}: unsupported checkpoint suffix {suffix!r}; pass a "
            f"{'/'.join(CHECKPOINT_SUFFIXES)} file."
        )
    try:
        if suffix == ".safetensors":
            return safetensors.torch.load_file(path, device="cpu")
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, SafetensorError) as error:
        raise ValueError(
            f"could not read {str(path)!r} as a checkpoint of tensors ({error}). Save the "
            "model's state_dict() (torch.save(model.state_dict(), path)) rather than the model."
        ) from error
    return _unwrap(content, path)


def _unwrap(content, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside ``content``, descending through the usual nesting keys."""
    while isinstance(content, Mapping):
        key = next((k for k in _NESTING_KEYS if isinstance(content.get(k), Mapping)), None)
        if key is None:
            break
        content = content[key]
    if not isinstance(content, Mapping):
        raise ValueError(f"{str(path)!r} holds a {type(content).__name__}, not a state dict.")
    not_tensors = [k for k, v in content.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{str(path)!r} holds a dict with non-tensor entries {not_tensors[:_SHOWN_KEYS]} and "
            f"no state dict under any of {list(_NESTING_KEYS)}: save the model's state_dict()."
        )
    return content


def load_into(module: nn.Module, source: Path, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``module`` with strict key and shape matching."""
    expected = module.state_dict()
    if not any(key.startswith(_DATA_PARALLEL_PREFIX) for key in expected):
        consume_prefix_in_state_dict_if_present(state, _DATA_PARALLEL_PREFIX)
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
              for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if shapes:
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        raise ValueError(_mismatch_message(source, module, missing, unexpected, shapes))
    # torch's own loading handles old checkpoint versions (e.g. BatchNorm's num_batches_tracked)
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(_mismatch_message(source, module, result.missing_keys,
                                           result.unexpected_keys, []))


def _mismatch_message(source, module, missing, unexpected, shapes) -> str:
    listed = (("missing key(s)", missing), ("unexpected key(s)", unexpected),
              ("shape mismatch(es)", shapes))
    parts = "; ".join(f"{len(keys)} {what}: {_shown(keys)}" for what, keys in listed if keys)
    return (
        f"checkpoint {str(source)!r} does not match {type(module).__name__}: {parts}. Check that "
        "it was saved from this architecture, built the same way (variant, depth, number of "
        "classes), as a plain state_dict." + _prefix_hint(missing, unexpected)
    )


def _shown(keys) -> str:
    keys = list(keys)
    more = f", ... ({len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return "[" + ", ".join(keys[:_SHOWN_KEYS]) + more + "]"


def _prefix_hint(missing, unexpected) -> str:
    """Say so when the checkpoint's keys are the model's keys behind a common prefix."""
    if not missing or not unexpected:
        return ""
    first = missing[0]
    for key in unexpected:
        if key.endswith("." + first):
            prefix = key[: -len(first)]
            stripped = {k.removeprefix(prefix) for k in unexpected if k.startswith(prefix)}
            if stripped >= set(missing):
                return (f" The checkpoint's keys carry the prefix {prefix!r}: save the inner "
                        "module's state_dict, or remove the prefix from the keys.")
    return ""
