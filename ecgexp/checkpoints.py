"""The one reader of checkpoint and weights files, and atomic checkpoint writes.

Every path that reads such a file (``model.weights``, ``ckpt=``, ``resume=``, ``ckpt_path=``,
the best checkpoint a run predicts with, heatmaps) goes through :func:`read_checkpoint`, which
calls ``torch.load(weights_only=True)``: tensors and plain containers only, never code from the
file. A file that pickles other objects is refused with one line naming the file, the refused
object and the key that opts in for that one file (``model.weights_trusted=true`` for
``model.weights``, ``ckpt_trusted=true`` for ``ckpt``/``resume``/``ckpt_path``), which loads it
with ``weights_only=False``: only for files you trust, since that can run code from the file.
A safetensors file (Hugging Face's format: a JSON header and raw tensor bytes, which cannot hold
code) is read by the ``safetensors`` package (the ``encoders`` extra), its tensors as one flat
dict.

Lightning reads and writes checkpoints through :class:`ecgexp.tasks.checkpoint_io.CheckpointFiles`
(the trainer's ``CheckpointIO`` plugin, beside the training code so that reading a file here
does not import Lightning): reads through the reader above, writes under a temporary name that
is renamed into place once complete, so a full disk or a kill leaves the previous checkpoint,
never a truncated one, under the final name.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ecgexp.errors import UserError

log = logging.getLogger(__name__)
REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def read_checkpoint(path: str | Path, key: str, trusted: bool = False,
                    trust_key: str | None = None) -> Any:
    """What ``path`` stores, read with ``torch.load(weights_only=not trusted)`` on the CPU.

    ``key`` is the config key that named the file and ``trust_key`` the one that would allow
    its other objects (default ``<key>_trusted``); both appear in the errors."""
    path = Path(path)
    trust_key = trust_key or f"{key}_trusted"
    if not path.is_file():
        raise UserError(f"{key}: no checkpoint or weights file at '{path}'")
    if path.stat().st_size == 0:
        raise UserError(f"{key}: '{path}' is empty (an interrupted or failed write?); give "
                        f"another checkpoint")
    if is_safetensors(path):
        return _read_safetensors(path, key)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as error:
        refused = REFUSED_GLOBAL.search(str(error))
        if refused is None:
            raise _incomplete(key, path, "not a pickle of tensors") from error
        raise UserError(
            f"{key}: '{path}' pickles objects besides tensors (here {refused.group(1)}), "
            f"which torch.load(weights_only=True) refuses: loading them can run code from "
            f"the file. If you trust the file, set {trust_key}=true, or re-save its tensors "
            f"alone") from error
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as error:
        raise _incomplete(key, path, _first_line(error) or type(error).__name__) from error


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` is a safetensors file: named ``*.safetensors``, or starting as one does
    (an 8-byte little-endian header length, far below 2**48, then the JSON header's ``{``;
    torch.save writes a zip archive, ``PK``, or a pickle with its magic number)."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as handle:
        start = handle.read(9)
    return len(start) == 9 and start[6:8] == b"\0\0" and start[8:9] == b"{"


def _read_safetensors(path: Path, key: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, by name, on the CPU."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as error:
        raise UserError(f"{key}: '{path}' is a safetensors file, which needs the safetensors "
                        f"package: pip install 'ecgexp[encoders]'") from error
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{key}: '{path}' is not a complete safetensors file (truncated or "
                        f"corrupt: {_first_line(error) or type(error).__name__})") from error


def _incomplete(key: str, path: Path, detail: str) -> UserError:
    return UserError(f"{key}: '{path}' is not a complete checkpoint (truncated, corrupt or not "
                     f"written by torch.save: {detail})")


def _first_line(error: BaseException) -> str:
    """The first sentence of an error's message."""
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else ""


def network_state(stored: Any, path: str | Path, key: str) -> dict[str, torch.Tensor]:
    """The network ``state_dict`` in what a file stores: a published ``{'model': ...}``, an
    ecgexp (Lightning) checkpoint (its ``state_dict`` under ``net.``) or a bare state dict."""
    if isinstance(stored, dict) and isinstance(stored.get("model"), dict):
        return stored["model"]
    if isinstance(stored, dict) and isinstance(stored.get("state_dict"), dict):
        return {name.removeprefix("net."): value
                for name, value in stored["state_dict"].items() if name.startswith("net.")}
    if isinstance(stored, dict) and stored and all(isinstance(v, torch.Tensor)
                                                   for v in stored.values()):
        return stored
    raise UserError(f"{key}: '{path}' holds no state dict (expected a dict of tensors, or one "
                    f"under 'model' or a checkpoint's 'state_dict')")


def unwrapped_state(stored: Any, wrappers: tuple[str, ...], what: str) -> Mapping:
    """The state dict inside a published encoder file's wrappers (``{"state_dict": ...}``,
    ``{"model": ...}``, nested in the order given); one line naming ``what`` (``an ECG-FM
    checkpoint``) when there is none."""
    for key in wrappers:
        if isinstance(stored, Mapping) and isinstance(stored.get(key), Mapping):
            stored = stored[key]
    if not isinstance(stored, Mapping):
        raise UserError(f"model.weights: {what} holds a state dict, got {type(stored).__name__}")
    return stored


def renamed_keys(state: Mapping, prefixes: tuple[str, ...], dropped: tuple[str, ...]) -> dict:
    """``state`` with the ``prefixes`` stripped from its keys (in order) and the keys that
    then start with one of ``dropped`` left out."""
    kept = {}
    for name, value in state.items():
        for prefix in prefixes:
            name = name.removeprefix(prefix)
        if not name.startswith(dropped):
            kept[name] = value
    return kept


def save_atomic(checkpoint: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed onto
    ``path``; on any failure the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # torch.save wraps the OSError of a full disk
        cause = error if isinstance(error, OSError) else error.__context__
        reason = getattr(cause, "strerror", None) or _first_line(error)
        raise UserError(f"callbacks.model_checkpoint.dirpath: could not write checkpoint "
                        f"'{path}' ({reason}); the previous file is kept") from error
    finally:
        temporary.unlink(missing_ok=True)


def add_to_checkpoint(path: str | Path, key: str, entries: dict) -> None:
    """Adds ``entries`` to the dict stored under ``key`` of a checkpoint this run wrote (e.g.
    the validation thresholds in the model card), rewritten whole under a temporary name."""
    stored = read_checkpoint(path, "ckpt")
    stored.setdefault(key, {}).update(entries)
    save_atomic(stored, path)
