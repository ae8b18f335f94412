"""A linear probe on cached embeddings (``finetune=linear_probe``, ``finetune.cache_embeddings``):
the frozen backbone embeds each exam of the train and val splits once, the embeddings are
stored in the cache folder (``$ECGEXP_CACHE_DIR/embeddings``), and every epoch trains the head
on them instead of running the backbone again.

The cache file is keyed by what determines the embeddings: the data (the source's files, their
size and change times, the exams of each split and where they are stored, the leads and
scale), the network's config but its head (architecture, input contract, ``model.weights`` and
the file's SHA-256) and the backbone's initial weights when ``model.weights`` is not set (a
random encoder, fixed by the seed). A network that crops at random (``model.crop``) is not
cached: its inputs change every epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ecgexp.checkpoints import read_checkpoint, save_atomic
from ecgexp.data.datamodule import ExamDataModule
from ecgexp.data.dataset import EmbeddingDataset
from ecgexp.data.hdf5 import cache_dir
from ecgexp.inference.loop import embedded
from ecgexp.models.finetune import FineTuning
from ecgexp.models.heads import HEAD_MODULES, ECGNetwork

log = logging.getLogger(__name__)
SPLITS = ("train", "val")
# Model keys that change the head, not the embeddings.
HEAD_KEYS = ("n_outputs", "head", "n_metadata", "gaussian_hidden", "weights_trusted")


def _files(datamodule: ExamDataModule) -> list[dict]:
    reader = datamodule.reader
    paths = getattr(reader, "files", None) or [Path(reader.root) / name for name in
                                               getattr(reader, "names", [])]
    found = []
    for path in paths:
        status = Path(path).stat() if Path(path).exists() else None
        found.append({"path": str(Path(path).resolve()), "size": status and status.st_size,
                      "mtime_ns": status and status.st_mtime_ns,
                      "ctime_ns": status and status.st_ctime_ns})
    return found


def cache_key(cfg: DictConfig, net: torch.nn.Module, datamodule: ExamDataModule,
              weights: dict) -> str:
    """The SHA-256 of what the embeddings depend on (the module docstring)."""
    model = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items()
             if k not in HEAD_KEYS}
    table = datamodule.table[["exam_id", "file_index", "row", "split"]].astype(str)
    parts = {"model": model, "weights": weights, "files": _files(datamodule),
             "exams": hashlib.sha256(table.to_csv(index=False).encode()).hexdigest(),
             "leads": [int(i) for i in datamodule.lead_index],
             "scale": float(datamodule.source.scale)}
    if not weights.get("sha256"):  # random weights: those the seed gave
        digest = hashlib.sha256()
        for name, value in net.state_dict().items():
            if name.split(".")[0] not in HEAD_MODULES:
                digest.update(name.encode() + value.detach().cpu().numpy().tobytes())
        parts["initial_weights"] = digest.hexdigest()
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def cache_embeddings(cfg: DictConfig, net: torch.nn.Module, datamodule: ExamDataModule,
                     weights: dict, device: str = "auto") -> Path | None:
    """Embeds the train and val splits with the frozen backbone (or reads them from the
    cache) and gives them to ``datamodule`` for fitting; returns the cache file, or None when
    the run is not a cached linear probe."""
    tuning = FineTuning.from_config(cfg.get("finetune"))
    if tuning.mode != "linear_probe" or not tuning.cache_embeddings:
        return None
    if not isinstance(net, ECGNetwork):
        log.info("finetune.cache_embeddings: %s crops at random or has no features(); the "
                 "backbone runs every epoch", type(net).__name__)
        return None
    path = cache_dir() / "embeddings" / f"{cache_key(cfg, net, datamodule, weights)[:32]}.pt"
    splits = [s for s in SPLITS if datamodule.has_split(s)]
    start = time.perf_counter()
    stored = read_checkpoint(path, "finetune.cache_embeddings") if path.is_file() else None
    if stored is None or set(stored) != set(splits):
        stored = {split: embedded(net, datamodule.loader(split), device) for split in splits}
        try:
            save_atomic(stored, path)
        except OSError as error:  # a read-only cache costs the embeddings next time only
            log.warning("finetune.cache_embeddings: could not write %s (%s); set "
                        "ECGEXP_CACHE_DIR to a writable folder", path, error)
        verb = "embedded"
    else:
        verb = "read from the cache"
    for split in splits:
        datamodule.embedded[split] = EmbeddingDataset(stored[split], datamodule.datasets[split])
    log.info("finetune.cache_embeddings: %s exams %s in %.1f s (%s); the head trains on them",
             ", ".join(f"{s} {len(stored[s])}" for s in splits), verb,
             time.perf_counter() - start, path)
    return path
