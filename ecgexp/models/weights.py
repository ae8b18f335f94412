"""Starting a network from published or earlier weights (``model.weights=<path>``).

Accepted files, all read with ``torch.load``:

- the published ``model.pth`` of the PyTorch studies, ``{'epoch', 'model': state_dict,
  'valid_loss', 'optimizer'}``, and ``ecgexp-convert-keras`` outputs (``{'model', 'config'}``);
- a bare ``state_dict``;
- an ecgexp (Lightning) checkpoint, whose ``state_dict`` holds the network under ``net.``.

Files are loaded with ``weights_only=True``, which refuses pickled objects other than tensors
and plain containers. The published ``model.pth`` files store a NumPy ``valid_loss`` and are
refused (studies.md §6, 41): set ``model.weights_trusted=true`` to load a file you trust with
``weights_only=False``, or re-save its state dict alone.
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

log = logging.getLogger(__name__)

# Config keys that say where weights come from; they are not constructor arguments.
WEIGHT_KEYS = ("weights", "weights_trusted")
# The config keys that usually make a weights file and a model disagree.
SHAPE_KEYS = ("model.blocks, model.stem, model.kernel_size, task.n_outputs, model.head, "
              "model.n_metadata, preprocessing.leads (model.in_leads)")
MAX_LISTED = 10


def build_model(model_cfg: DictConfig, with_weights: bool = True) -> nn.Module:
    """The network of a ``model`` config; with ``model.weights`` set (and ``with_weights``),
    started from that file. ``with_weights=False`` when other weights follow (a checkpoint)."""
    settings = OmegaConf.to_container(model_cfg, resolve=True)
    weights, trusted = (settings.pop(key, None) for key in WEIGHT_KEYS)
    model = instantiate(settings)
    if with_weights and weights:
        load_weights(model, weights, trusted=bool(trusted))
    return model


def read_state_dict(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The network ``state_dict`` stored in ``path`` (any of the formats above)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.weights: no file at '{path}'")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as error:
        detail = str(error).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", detail)
        if refused is None:
            raise ValueError(f"model.weights: '{path}' is not a file torch.load can read "
                             f"({detail})") from error
        raise ValueError(
            f"model.weights: '{path}' pickles objects besides the weights, which "
            f"torch.load(weights_only=True) refuses (here {refused.group(1)}); published "
            f"model.pth files store the optimizer state and a NumPy valid_loss. If you trust "
            f"the file, set model.weights_trusted=true (weights_only=False can run code from "
            f"the file), or re-save its weights alone: torch.save(torch.load(path, "
            f"weights_only=False)['model'], 'weights.pth')") from error
    if isinstance(stored, dict) and isinstance(stored.get("model"), dict):
        return stored["model"]
    if isinstance(stored, dict) and isinstance(stored.get("state_dict"), dict):
        return {key.removeprefix("net."): value for key, value in stored["state_dict"].items()
                if key.startswith("net.")}
    if isinstance(stored, dict) and all(isinstance(v, torch.Tensor) for v in stored.values()):
        return stored
    raise ValueError(f"model.weights: '{path}' holds no state dict (expected a dict of tensors, "
                     f"or one under 'model' or a checkpoint's 'state_dict')")


def _listed(items: list[str]) -> str:
    more = f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def load_weights(model: nn.Module, path: str | Path, trusted: bool = False) -> None:
    """Loads the weights stored in ``path`` into ``model``; every key must match in name and
    shape, else one error lists the missing, unexpected and mismatched keys."""
    stored = read_state_dict(path, trusted)
    expected = model.state_dict()
    missing = [key for key in expected if key not in stored]
    unexpected = [key for key in stored if key not in expected]
    mismatched = [f"{key}: file {tuple(stored[key].shape)} vs model {tuple(value.shape)}"
                  for key, value in expected.items()
                  if key in stored and stored[key].shape != value.shape]
    if missing or unexpected or mismatched:
        problems = [f"{name} ({len(keys)}): {_listed(keys)}" for name, keys in
                    [("shape mismatches", mismatched), ("missing in the file", missing),
                     ("unexpected in the file", unexpected)] if keys]
        raise ValueError(
            f"model.weights: '{path}' does not fit the configured model;\n  "
            + "\n  ".join(problems)
            + f"\nSet the model as the weights were trained: check {SHAPE_KEYS}.")
    model.load_state_dict(stored, strict=True)
    log.info("model.weights: loaded %d tensors from %s", len(stored), path)
