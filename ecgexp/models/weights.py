"""Starting a network from published or earlier weights (``model.weights=<path>``).

Accepted files, all read with ``torch.load``:

- the published ``model.pth`` of the PyTorch studies, ``{'epoch', 'model': state_dict,
  'valid_loss', 'optimizer'}``, and ``ecgexp-convert-keras`` outputs (``{'model', 'config'}``);
- a bare ``state_dict``;
- an ecgexp (Lightning) checkpoint, whose ``state_dict`` holds the network under ``net.``;
- for a pretrained encoder (:class:`ecgexp.models.pretrained.PretrainedEncoder`), its published
  checkpoint: the keys are mapped from the published layout (``published_state``) and must
  fit the encoder exactly; the task's head starts at random.

Files are read by :func:`ecgexp.checkpoints.read_checkpoint` with ``weights_only=True``, which
refuses pickled objects other than tensors and plain containers. The published ``model.pth``
files store a NumPy ``valid_loss`` and are refused (docs/studies.md §6, 41): set
``model.weights_trusted=true`` to load a file you trust with ``weights_only=False``, or re-save
its state dict alone.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ecgexp.checkpoints import network_state, read_checkpoint
from ecgexp.errors import UserError
from ecgexp.models.windows import SlidingWindows

log = logging.getLogger(__name__)

# Config keys that say where weights come from; they are not constructor arguments.
WEIGHT_KEYS = ("weights", "weights_trusted")
# ``model.crop``: {window, stride, aggregate} in samples (ecgexp/models/windows.py); null: none.
CROP_KEY = "crop"
# The config keys that usually make a weights file and a model disagree.
SHAPE_KEYS = ("model.blocks, model.stem, model.kernel_size, the task's objective (outputs, head), "
              "model.n_metadata, preprocessing.leads (model.in_leads)")
MAX_LISTED = 10


def build_model(model_cfg: DictConfig, objective=None, with_weights: bool = True) -> nn.Module:
    """The network of a ``model`` config, with the output width and head of ``objective``
    (its ``n_outputs`` and ``head``) when given, wrapped in :class:`SlidingWindows` when
    ``model.crop`` is set; with ``model.weights`` set (and ``with_weights``), started from
    that file. ``with_weights=False`` when other weights follow
    (a checkpoint)."""
    settings = OmegaConf.to_container(model_cfg, resolve=True)
    weights, trusted = (settings.pop(key, None) for key in WEIGHT_KEYS)
    crop = settings.pop(CROP_KEY, None)
    if objective is not None:
        settings.update(n_outputs=objective.n_outputs, head=objective.head)
    if crop:
        n_samples = settings["n_samples"]
        model = SlidingWindows(instantiate({**settings, "n_samples": crop["window"]}),
                               n_samples, crop["window"], crop["stride"],
                               crop.get("aggregate", "max"))
    else:
        model = instantiate(settings)
    if with_weights and weights:
        load_weights(model, weights, trusted=bool(trusted))
    return model


def read_state_dict(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The network ``state_dict`` stored in ``path`` (any of the formats above), read through
    the one checkpoint reader (``weights_only=True`` unless ``trusted``)."""
    stored = read_checkpoint(path, "model.weights", trusted=trusted)
    return network_state(stored, path, "model.weights")


def _listed(items: list[str]) -> str:
    more = f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a weights file (recorded in the model card)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights(model: nn.Module, path: str | Path, trusted: bool = False) -> None:
    """Loads the weights stored in ``path`` into ``model``; every key must match in name and
    shape, else one error lists the missing, unexpected and mismatched keys. A pretrained
    encoder's published checkpoint (keys not the network's) is mapped to the encoder's keys
    and must fit them all; the head is not in it."""
    stored = read_checkpoint(path, "model.weights", trusted=trusted)
    expected = model.state_dict()
    published = False
    if hasattr(model, "published_state"):  # an ecgexp layout of this network, or a published one
        try:
            state = network_state(stored, path, "model.weights")
        except UserError:
            state = {}
        published = not state or not set(state) <= set(expected)
    if not published:
        stored = network_state(stored, path, "model.weights")
    else:
        stored = model.published_state(stored)
        expected = {k: v for k, v in expected.items() if k.startswith("encoder.")}
    missing = [key for key in expected if key not in stored]
    unexpected = [key for key in stored if key not in expected]
    mismatched = [f"{key}: file {tuple(stored[key].shape)} vs model {tuple(value.shape)}"
                  for key, value in expected.items()
                  if key in stored and stored[key].shape != value.shape]
    if missing or unexpected or mismatched:
        problems = [f"{name} ({len(keys)}): {_listed(keys)}" for name, keys in
                    [("shape mismatches", mismatched), ("missing in the file", missing),
                     ("unexpected in the file", unexpected)] if keys]
        hint = ("model.encoder_options: the published sizes; the file: the published "
                "checkpoint of model.encoder" if published else f"check {SHAPE_KEYS}")
        raise UserError(f"model.weights: '{path}' does not fit the configured model: "
                        + "; ".join(problems)
                        + f". Set the model as the weights were trained ({hint})")
    model.load_state_dict(stored, strict=not published)
    if published:
        log.warning("model.weights: %s's published weights, licence: %s", model.encoder_name,
                    model.contract["licence"])
    log.info("model.weights: loaded %d tensors from %s%s", len(stored), path,
             " (the published encoder; the head starts at random)" if published else "")
