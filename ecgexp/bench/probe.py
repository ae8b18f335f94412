"""Benchmark 1d, linear probing on cached embeddings: one training epoch of a linear probe
(``finetune=linear_probe``) on ecgexp's cached embeddings (``finetune.cache_embeddings``,
``ecgexp/tasks/embeddings.py``) against the same epoch running the frozen encoder on every
batch (``finetune.cache_embeddings=false``), exams per second; target >= 20x.

Both sides are ecgexp's own training loop (the ``ECGModule`` of ``build_module``, the
DataModule and ``pl.Trainer`` of the training config, one epoch without validation) on the
same exams, batches and initial weights, with ``probe.model`` at its published sizes; an
epoch is its batches times the median step after ``warmup`` steps. The embeddings are
computed once before the cached side's epoch (into the suite's scratch folder); that one-off
time is reported, not counted in the epoch. Checked: the cache holds each exam's
``net.features`` (the frozen encoder's embedding of its tracing, in eval mode) within float32
rounding, and the two epochs leave the same head.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ecgexp.bench.checks import close
from ecgexp.bench.common import (
    Context,
    StepClock,
    config_trainer,
    datamodule,
    ecg_module,
    initial_weights,
    raw_tracings,
)
from ecgexp.bench.report import Figure, Result
from ecgexp.data.hdf5 import CACHE_ENV
from ecgexp.inference.loop import embedded
from ecgexp.tasks.embeddings import cache_embeddings


def _epoch(train_cfg: DictConfig, dm, state: dict, warmup: int) -> tuple[float, dict]:
    """Seconds of one training epoch of ecgexp's loop (its batches times the median step
    after ``warmup`` steps: Lightning's start-up is not an epoch's), and the head it ends
    with."""
    module = ecg_module(train_cfg, state, dm.training_targets())
    clock = StepClock()
    config_trainer(train_cfg, clock, max_epochs=1, limit_val_batches=0,
                   num_sanity_val_steps=0).fit(module, datamodule=dm)
    head = {k: v.detach().clone() for k, v in module.net.state_dict().items()
            if k.startswith("lin.")}
    return len(clock.ends) * float(np.median(clock.intervals(warmup))), head


@contextlib.contextmanager
def _cache_in(folder: Path):
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CACHE_ENV)
        else:
            os.environ[CACHE_ENV] = previous


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.probe
    overrides = [f"model={settings.model}", "finetune=linear_probe",
                 f"loader.batch_size={settings.batch_size}", "loader.num_workers=0"]
    train_cfg = context.train_config(*overrides, exams=settings.exams)
    state = initial_weights(train_cfg)
    encoder_dm = datamodule(context.train_config(*overrides, "finetune.cache_embeddings=false",
                                                 exams=settings.exams))
    encoder_s, encoder_head = _epoch(train_cfg, encoder_dm, state, settings.warmup)

    cached_dm = datamodule(train_cfg)
    module = ecg_module(train_cfg, state, cached_dm.training_targets())
    started = time.perf_counter()
    with _cache_in(context.scratch / "cache"):  # not the user's cache folder
        cache_embeddings(train_cfg, module.net, cached_dm, {"sha256": None}, device="cpu")
    embedding_s = time.perf_counter() - started
    cached_s, cached_head = _epoch(train_cfg, cached_dm, state, settings.warmup)

    n = len(cached_dm.datasets["train"])
    positions = np.arange(min(4, n))
    tracings = torch.from_numpy(raw_tracings(cached_dm, "train", positions))
    reference = embedded(module.net, [{"tracing": tracings}], "cpu")
    checks = [close("cached embeddings vs the encoder's features",
                    cached_dm.embedded["train"].features[positions], reference,
                    n=reference.shape[1]),
              close("head after one epoch, cached vs encoder",
                    torch.cat([v.flatten() for v in cached_head.values()]),
                    torch.cat([v.flatten() for v in encoder_head.values()]), n=n)]
    return Result(
        figures=[Figure(f"linear-probe epoch, {settings.model}, cached embeddings vs running "
                        f"the encoder", n / cached_s, n / encoder_s, "exams/s",
                        "encoder every batch", settings.target)],
        details={"exams": n, "epoch_s_cached": cached_s, "epoch_s_encoder": encoder_s,
                 "embedding_s": embedding_s, "model": settings.model},
        notes=[f"embedding the {n} training exams once took {embedding_s:.1f} s "
               f"(not in the epoch)"],
        checks=checks)
