"""Benchmark 6, scaling: training time per epoch and peak memory against dataset size
(``scaling.sizes`` synthetic exams, by default 1k, 4k and 16k). Time should grow linearly
(constant time per exam) and memory stay flat.

Each size trains one epoch (no validation) of ecgexp's real loop (DataModule with its loader
workers, ECGModule and the configured ``pl.Trainer``, built as in the ``training`` benchmark)
in a subprocess of its own (``python -m ecgexp.bench.scaling``), so its peak resident set size
(``VmHWM`` of ``/proc/self/status``) is its own; the loader workers' peak comes from
``RUSAGE_CHILDREN`` once they have exited. The synthetic files are written beforehand by this
process; 95 % of them form the training split. Time per exam is the steady state, from the end
of the first batch (the workers have started) to the end of the last.

To fit the suite's 10 minutes on 2 cores the network is shrunk (``scaling.overrides``: by
default ``resnet1d_small`` with three blocks, 0.45 ms of compute per exam): an epoch over 16k
exams of the default network would take about 20 minutes there, and its compute per exam does
not depend on the dataset size, which is what this benchmark is about. The tracings keep their
full 4096 x 12 samples, so the data path moves the real volume (3.2 GB for 16k exams).
"""

from __future__ import annotations

import gc
import resource
import time

import numpy as np
from omegaconf import DictConfig, open_dict

from ecgexp.bench.apart import main_of, measured_apart
from ecgexp.bench.common import (
    Context,
    StepClock,
    compose_train,
    config_trainer,
    datamodule,
    ecg_module,
    initial_weights,
)
from ecgexp.bench.report import Figure, Result
from ecgexp.data.build import build_datamodule

EPOCH_OVERRIDES = ["trainer.max_epochs=1", "+trainer.limit_val_batches=0",
                   "+trainer.num_sanity_val_steps=0", "trainer.accelerator=cpu"]


class EpochClock(StepClock):
    """``StepClock`` that also times the epoch and counts the exams of each batch."""

    def __init__(self):
        super().__init__()
        self.exams: list[int] = []
        self.epoch_s = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_s = -time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epoch_s += time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.exams.append(0 if batch is None else len(batch["exam_id"]))


def peak_rss_kib() -> int:
    """This process's peak resident set size (``VmHWM``), KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def train_one_epoch(overrides: list[str], output_dir: str) -> dict:
    """The subprocess's work: one epoch of the composed config; times and peak memory."""
    train_cfg = compose_train(overrides)
    with open_dict(train_cfg):
        train_cfg.paths.output_dir = output_dir
    dm = datamodule(train_cfg)
    module = ecg_module(train_cfg, initial_weights(train_cfg), dm.training_targets())
    clock = EpochClock()
    trainer = config_trainer(train_cfg, clock)
    trainer.fit(module, datamodule=dm)
    steady_exams = sum(clock.exams[1:])
    result = {"train_exams": len(dm.datasets["train"]), "batches": len(clock.exams),
              "epoch_s": clock.epoch_s,
              "steady_s_per_exam": (clock.ends[-1] - clock.ends[0]) / steady_exams}
    del trainer, module, dm  # shuts the persistent workers down and reaps them
    gc.collect()
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {**result, "main_peak_rss_kib": peak_rss_kib(),
            "worker_peak_rss_kib": workers or None}


def size_overrides(cfg: DictConfig, context: Context, size: int) -> list[str]:
    return [*cfg.train_overrides, f"paths.data_dir={context.scratch / 'data'}",
            f"dataset.n_exams={size}", f"seed={cfg.seed}", *EPOCH_OVERRIDES, *cfg.scaling.overrides]


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.scaling
    sizes = sorted(settings.sizes)
    per_size = {}
    for size in sizes:
        overrides = size_overrides(cfg, context, size)
        build_datamodule(compose_train(overrides))  # writes the synthetic files
        per_size[size] = measured_apart(cfg, __name__, {
            "overrides": overrides, "output_dir": str(context.scratch / "run")},
            settings.timeout_s, f"scaling ({size} exams)")
    small, large = per_size[sizes[0]], per_size[sizes[-1]]
    figures = [Figure(f"time/exam of an epoch, {sizes[-1]} vs {sizes[0]} exams",
                      large["steady_s_per_exam"] * 1e3, small["steady_s_per_exam"] * 1e3,
                      "ms/exam", f"{sizes[0]} exams", settings.target_time, "at_most"),
               Figure(f"peak RSS of the training process, {sizes[-1]} vs {sizes[0]} exams",
                      large["main_peak_rss_kib"] / 1024, small["main_peak_rss_kib"] / 1024,
                      "MiB", f"{sizes[0]} exams", settings.target_memory, "at_most")]
    if large["worker_peak_rss_kib"] and small["worker_peak_rss_kib"]:
        figures.append(Figure(f"peak RSS of a loader worker, {sizes[-1]} vs {sizes[0]} exams",
                              large["worker_peak_rss_kib"] / 1024,
                              small["worker_peak_rss_kib"] / 1024, "MiB",
                              f"{sizes[0]} exams", settings.target_memory, "at_most"))
    epochs = np.array([per_size[s]["epoch_s"] for s in sizes])
    return Result(figures=figures,
                  details={"sizes": sizes, "per_size": per_size,
                           "overrides": list(settings.overrides),
                           "epoch_s_per_exam": (epochs / np.array(
                               [per_size[s]["train_exams"] for s in sizes])).tolist(),
                           "shrunk": "the network (scaling.overrides), not the tracings"},
                  notes=[f"network shrunk for time ({' '.join(settings.overrides)}); epoch "
                         + ", ".join(f"{per_size[s]['epoch_s']:.1f} s for "
                                     f"{per_size[s]['train_exams']} training exams"
                                     for s in sizes)])


def main(payload: dict) -> dict:
    return train_one_epoch(payload["overrides"], payload["output_dir"])


if __name__ == "__main__":
    main_of(main)
