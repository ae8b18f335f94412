"""Benchmark 2, data pipeline: shuffled training batches/s delivered by the DataModule (loader
workers, prefetching and pinned memory as the ``loader`` config sets them) against

- raw sequential h5py reads of as many exams from the same files (contiguous slices of a batch
  of rows, no conversion): what the storage gives at best;
- the model's consumption rate: training batches/s of the plain loop (``training`` benchmark
  of the same run, else measured here on a few steps).

Also the batch reading itself, in one process with one torch thread (as in a loader worker):
whole batches (``ExamDataset.__getitems__``: one array per batch, runs of rows read at once)
against per-exam items stacked by ``default_collate`` (the former path), on the same shuffled
batches. The details hold what bounds the pipeline: shuffled per-exam h5py reads and the
pipeline in the main process (no workers) show the cost of random access, of the
``(samples, leads) -> (leads, samples)`` transposition and of handing batches from worker
processes to the main one.
"""

from __future__ import annotations

import time

import h5py
import numpy as np
import torch
from omegaconf import DictConfig

from ecgexp.bench.checks import Check, exact
from ecgexp.bench.common import Context, PlainLoop, datamodule, initial_weights, raw_tracings
from ecgexp.bench.report import Figure, Result
from ecgexp.data.datamodule import ExamDataModule
from ecgexp.data.dataset import collate_exams
from ecgexp.data.samplers import EpochShuffleSampler


def loader_rate(loader, warmup: int, batches: int) -> float:
    """Batches/s of ``loader`` over ``batches`` batches after ``warmup`` (worker start-up),
    starting new epochs as needed."""
    delivered, started = 0, time.perf_counter()
    while True:
        for _ in loader:
            delivered += 1
            if delivered == warmup:
                started = time.perf_counter()
            if delivered == warmup + batches:
                return batches / (time.perf_counter() - started)


def raw_sequential_rate(dm: ExamDataModule, batch_size: int, batches: int) -> float:
    """Batches/s of contiguous ``batch_size``-row h5py slices, file after file."""
    handles = [h5py.File(path, "r") for path in dm.reader.files]
    try:
        tracings = [h[name] for h, name in zip(handles, dm.reader.tracings_datasets)]
        slices = [(f, start) for f, t in enumerate(tracings)
                  for start in range(0, len(t) - batch_size + 1, batch_size)]
        started = time.perf_counter()
        for number in range(batches):
            file_index, start = slices[number % len(slices)]
            tracings[file_index][start:start + batch_size]
        return batches / (time.perf_counter() - started)
    finally:
        for handle in handles:
            handle.close()


def raw_shuffled_rate(dm: ExamDataModule, batches: list[np.ndarray]) -> float:
    """Batches/s of one plain h5py read per exam of the shuffled batches, no conversion."""
    dataset = dm.datasets["train"]
    handles = [h5py.File(path, "r") for path in dm.reader.files]
    try:
        tracings = [h[name] for h, name in zip(handles, dm.reader.tracings_datasets)]
        started = time.perf_counter()
        for batch in batches:
            for file_index, row in dataset.locations[batch]:
                tracings[file_index][row]
        return len(batches) / (time.perf_counter() - started)
    finally:
        for handle in handles:
            handle.close()


def reading_rates(dm: ExamDataModule, batches: list[np.ndarray], repeats: int
                  ) -> tuple[dict, Check]:
    """Batches/s of whole-batch reads and of per-exam items + ``default_collate``, alternated,
    in this process with one torch thread; and the check that both give the same tensors on
    the first batch (the same samples copied and scaled: exact)."""
    dataset = dm.datasets["train"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ways = {"batched": lambda batch: dataset.__getitems__(batch),
                "per_exam": lambda batch: collate_exams([dataset[int(i)] for i in batch])}
        first = {name: read(batches[0]) for name, read in ways.items()}
        same = exact(f"batched vs per-exam reads ({', '.join(first['batched'])})",
                     first["batched"], first["per_exam"], "the same samples copied and scaled")
        rates: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(repeats):
            for name, read in ways.items():
                started = time.perf_counter()
                for batch in batches:
                    read(batch)
                rates[name].append(len(batches) / (time.perf_counter() - started))
    finally:
        torch.set_num_threads(threads)
    return rates, same


def consumption_rate(context: Context, train_cfg: DictConfig, dm: ExamDataModule) -> float:
    """Training samples/s of the model (plain loop), from the training benchmark if it ran."""
    if "model_samples_per_s" in context.measured:
        return context.measured["model_samples_per_s"]
    batch_size, steps = train_cfg.loader.batch_size, 2
    positions = np.arange(2 * steps * batch_size) % len(dm.datasets["train"])
    tracings = torch.from_numpy(raw_tracings(dm, "train", positions))
    targets = torch.from_numpy(dm.datasets["train"].targets[positions])
    plain = PlainLoop(train_cfg, initial_weights(train_cfg))
    seconds = plain.timed(tracings, targets, batch_size, warmup=steps, steps=steps)
    return batch_size * steps / sum(seconds)


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.data
    train_cfg = context.train_config()
    dm = datamodule(train_cfg)
    batch_size = dm.batch_size
    order = np.array(list(EpochShuffleSampler(len(dm.datasets["train"]), train_cfg.seed)))
    shuffled = [order[start:start + batch_size]
                for start in range(0, len(order) - batch_size + 1, batch_size)]
    shuffled = shuffled[:settings.read_batches]
    rates = {"pipeline": [], "raw_sequential": [], "raw_shuffled": [], "in_process": []}
    in_process = datamodule(context.train_config("loader.num_workers=0"))
    for _ in range(settings.repeats):
        rates["pipeline"].append(loader_rate(dm.train_dataloader(), settings.warmup_batches,
                                             settings.batches))
        rates["raw_sequential"].append(raw_sequential_rate(dm, batch_size, settings.batches))
        rates["raw_shuffled"].append(raw_shuffled_rate(dm, shuffled))
        rates["in_process"].append(loader_rate(in_process.train_dataloader(),
                                               settings.warmup_batches, settings.batches))
    reading, same_reads = reading_rates(dm, shuffled, settings.repeats)
    best = {name: max(values) for name, values in {**rates, **reading}.items()}
    consumption = consumption_rate(context, train_cfg, dm) / batch_size
    loader = {key: train_cfg.loader.get(key) for key in train_cfg.loader}
    return Result(
        figures=[
            Figure("train batches/s, DataModule vs raw sequential h5py", best["pipeline"],
                   best["raw_sequential"], "batches/s", "raw sequential h5py",
                   settings.target_raw),
            Figure("train batches/s, DataModule vs model consumption", best["pipeline"],
                   consumption, "batches/s", "plain training loop (CPU)",
                   settings.target_consumption),
            Figure("batch reads vs per-exam items + default_collate (1 thread)",
                   best["batched"], best["per_exam"], "batches/s", "per-exam items",
                   settings.target_batched),
        ],
        details={"loader": loader, "batch_size": batch_size, "timed_batches": settings.batches,
                 "warmup_batches": settings.warmup_batches, "repeats": settings.repeats,
                 "batches_per_s": {**rates, **reading},
                 "model_consumption_batches_per_s": consumption,
                 "exam_bytes": len(dm.lead_index) * dm.source.n_samples * 4},
        notes=[f"bounds: shuffled per-exam h5py reads {best['raw_shuffled']:.0f} batches/s "
               f"(random access), the pipeline without workers {best['in_process']:.0f} "
               f"batches/s (+ transposition, NaN check), with "
               f"{train_cfg.loader.num_workers} workers {best['pipeline']:.0f} batches/s"
               + (" (+ handing each batch to the main process through shared memory)"
                  if train_cfg.loader.num_workers else "")],
        checks=[same_reads])
