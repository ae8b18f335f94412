"""How progress shows on the console, for every long job (training, prediction, evaluation,
conversion).

On a terminal, a rich bar redrawn in place: Lightning's ``RichProgressBar`` in training, a
``rich.progress`` bar elsewhere. Off a terminal (SLURM, nohup, CI, ``| tee log``), where a
redrawn bar shows nothing until it ends, plain lines on stdout, each flushed at once: training
prints one line per epoch (:class:`EpochLines`), counted work one line a minute at most and one
at the end (:class:`CountLines`). Which of the two is rich's own decision
(``Console.is_terminal``: stdout a TTY, unless ``TTY_COMPATIBLE=0``/``1`` or ``FORCE_COLOR``
says otherwise), so the bar is never drawn where rich would not redraw it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar
from rich.console import Console
from rich.progress import Progress

LINE_INTERVAL = 60.0  # seconds: the most frequent lines of counted work off a terminal


def on_terminal() -> bool:
    """Whether stdout is a terminal that rich redraws a bar on."""
    return Console().is_terminal


def print_line(*fields: str) -> None:
    """One progress line: ``fields`` two spaces apart, flushed (SLURM and pipes buffer)."""
    print("  ".join(fields), flush=True)


def clock(seconds: float) -> str:
    """``H:MM:SS``."""
    return str(timedelta(seconds=round(seconds)))


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
    metric with its best so far), one when it ends; the predictions after it as counted work
    (:class:`CountLines`, in batches)."""

    def __init__(self, monitor: str, mode: str):
        super().__init__()
        self.monitor, self.better = monitor, min if mode == "min" else max
        self.best: float | None = None
        self.enabled = True
        self.started = 0.0
        self.first_epoch = 0
        self.predicting: CountLines | None = None

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

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.enabled:
            self.predicting = CountLines("predicting", sum(trainer.num_predict_batches),
                                         "batches")

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.predicting is not None:
            self.predicting.advance()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.predicting = None


class CountLines:
    """Progress of ``total`` items as lines ``<description> <done>/<total> <unit> (<note>)``,
    time elapsed and time left at the pace so far: at most one every ``interval`` seconds (0:
    one per advance), and one when the last item is done."""

    def __init__(self, description: str, total: int, unit: str, completed: int = 0,
                 interval: float = LINE_INTERVAL):
        self.description, self.total, self.unit = description, total, unit
        self.done = self.completed = completed  # ``completed``: done before this process
        self.interval = interval
        self.started = self.last = time.monotonic()

    def advance(self, count: int = 1, note: str = "") -> None:
        self.done += count
        now = time.monotonic()
        if self.done < self.total and now - self.last < self.interval:
            return
        self.last, elapsed = now, now - self.started
        count = f"{self.description} {self.done}/{self.total} {self.unit}"
        fields = [f"{count} ({note})" if note else count, f"elapsed {clock(elapsed)}"]
        if self.done < self.total:
            pace = elapsed / max(self.done - self.completed, 1)
            fields.append(f"ETA {clock(pace * (self.total - self.done))}")
        print_line(*fields)


@contextmanager
def counting(description: str, total: int, unit: str, completed: int = 0,
             interval: float = LINE_INTERVAL, show: bool = True
             ) -> Iterator[Callable[..., None]]:
    """Progress of ``total`` items of which ``completed`` were done before: yields
    ``advance(count=1, note="")`` (``note``: what was just done, for the lines). A transient
    rich bar on a terminal, :class:`CountLines` elsewhere, nothing when ``show`` is false."""
    if not show:
        yield lambda count=1, note="": None
    elif on_terminal():
        with Progress(transient=True) as bar:
            task = bar.add_task(description, total=total, completed=completed)
            yield lambda count=1, note="": bar.advance(task, count)
    else:
        yield CountLines(description, total, unit, completed, interval).advance
