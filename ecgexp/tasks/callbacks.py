"""Training callbacks of our own (the rest come from Lightning, chosen in ``callbacks``)."""

from __future__ import annotations

import math
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar

from ecgexp.progress import clock, on_terminal, print_line


class EpochSeed(pl.Callback):
    """Reseeds Python, NumPy and torch with ``seed + epoch`` before the first batch of every
    training epoch, so dropout and any other randomness of an epoch depend only on the seed and
    the epoch number: a run resumed from its last checkpoint ends exactly like an uninterrupted
    one. The epoch is the one Lightning also gives the samplers (``set_epoch``); the first batch
    is used rather than ``on_train_epoch_start``, which Lightning skips for the epoch it
    restarts after loading a checkpoint.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch, batch_idx: int) -> None:
        if batch_idx == 0:
            epoch = trainer.fit_loop.epoch_progress.current.processed
            pl.seed_everything(self.seed + epoch, workers=True, verbose=False)


class TrainingProgress:
    """The progress callback of training (``callbacks.progress_bar``): constructing it gives
    Lightning's rich bar on a terminal, else :class:`EpochLines` following ``monitor``
    (``task.monitor``, better when ``mode`` is ``min`` or ``max``). A class, so that a run
    folder's config names a registered class (:mod:`ecgexp.registry`), not a function."""

    def __new__(cls, monitor: str, mode: str) -> ProgressBar:
        return RichProgressBar() if on_terminal() else EpochLines(monitor, mode)


class EpochLines(ProgressBar):
    """Training progress as lines: one when training starts, one per epoch (epoch k/N, the
    optimiser steps so far, time elapsed, the time the remaining epochs take at the mean pace
    so far (early stopping may end sooner), ``train_loss``, ``val_loss`` and the monitored
    metric with its best so far), one when it ends (the predictions of the splits after it
    count their own lines: :func:`ecgexp.inference.table.split_predictions`)."""

    def __init__(self, monitor: str, mode: str):
        super().__init__()
        self.monitor, self.better = monitor, min if mode == "min" else max
        self.best: float | None = None
        self.enabled = True
        self.started = 0.0
        self.first_epoch = 0

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started, self.first_epoch = time.monotonic(), trainer.current_epoch
        if self.enabled:
            print_line("training", f"epochs {trainer.current_epoch + 1}-{trainer.max_epochs}",
                       f"{trainer.num_training_batches} batches each")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        elapsed = time.monotonic() - self.started
        remaining = elapsed / (epoch - self.first_epoch) * (total - epoch)
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        fields = [f"epoch {epoch}/{total}", f"steps {trainer.global_step}",
                  f"elapsed {clock(elapsed)}", f"ETA {clock(remaining)}"]
        fields += [f"{name} {metrics[name]:.4f}" for name in ("train_loss", "val_loss")
                   if name in metrics and name != self.monitor]
        if self.monitor in metrics:
            value = metrics[self.monitor]
            if not math.isnan(value):
                self.best = value if self.best is None else self.better(self.best, value)
            best = "" if self.best is None else f", best {self.best:.4f}"
            fields.append(f"{self.monitor} {value:.4f} (monitored{best})")
        print_line(*fields)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.enabled:
            print_line("training done", f"epochs {trainer.current_epoch}/{trainer.max_epochs}",
                       f"elapsed {clock(time.monotonic() - self.started)}")
