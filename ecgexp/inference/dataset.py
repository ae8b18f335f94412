"""Batched prediction of every exam of a dataset by one model or a mean ensemble.

Exams are read, brought to the model's input contract and screened (:mod:`.screening`) in
data-loader worker processes while the network runs on the batches already read."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ecgexp.data.hdf5 import consecutive_runs
from ecgexp.inference.inputs import HDF5Inputs, RecordInputs
from ecgexp.inference.loop import device_of, inferred
from ecgexp.inference.screening import exam_flags, no_ecg
from ecgexp.processes import die_with_parent
from ecgexp.progress import counting
from ecgexp.signal.pipeline import RecordRejected
from ecgexp.signal.readers import RecordError

log = logging.getLogger(__name__)


class PredictionDataset(Dataset):
    """Batches ``{"index", "tracing" (batch, leads, samples), "amplitude", "flags",
    "problem"}`` of the exams of ``table``: ``problem`` is why an exam could not be fed to the
    model (unreadable, rejected by the signal steps, NaN/Inf samples; its tracing is zeros and
    its prediction is left empty), ``flags`` what looks wrong in a fed one."""

    def __init__(self, table: pd.DataFrame, inputs: HDF5Inputs | RecordInputs,
                 leads: Sequence[str], reference_mv: float | None):
        self.locations = table[["file_index", "row"]].to_numpy(np.int64)
        # problems known before reading (a record left out for a duplicate exam id)
        self.known = (table["problem"].fillna("").astype(str).to_numpy() if "problem" in table
                      else np.full(len(table), "", dtype=object))
        self.inputs, self.leads, self.reference_mv = inputs, list(leads), reference_mv
        self.n_samples = int(inputs.n_samples if isinstance(inputs, HDF5Inputs)
                             else inputs.pipeline.n_samples)

    def __len__(self) -> int:
        return len(self.locations)

    def __getitems__(self, items: Sequence[int]) -> dict:
        items = np.asarray(items, dtype=np.int64)
        tracings = np.zeros((len(items), len(self.leads), self.n_samples), np.float32)
        problems = [""] * len(items)
        for position, tracing, problem in self._read(items):
            if problem:
                problems[position] = problem
            elif not np.isfinite(tracing).all():
                problems[position] = "NaN/Inf samples"
            else:
                tracings[position] = tracing.T
        amplitude, flags = exam_flags(tracings, self.leads, self.reference_mv)
        for position, reason in enumerate(no_ecg(tracings)):
            if problems[position] or reason:  # not fed: the problem alone says why
                problems[position], flags[position] = problems[position] or reason, ""
        return {"index": torch.from_numpy(items), "tracing": torch.from_numpy(tracings),
                "amplitude": amplitude, "flags": flags, "problem": problems}

    def _read(self, items: np.ndarray):
        """``(position, (samples, leads) tracing, problem)`` of each item."""
        if isinstance(self.inputs, RecordInputs):
            for position, item in enumerate(items):
                if self.known[item]:
                    yield position, None, self.known[item]
                    continue
                try:
                    yield position, self.inputs.read(int(self.locations[item, 0])), ""
                except RecordError as error:
                    yield position, None, f"unreadable: {error.reason}"
                except RecordRejected as error:  # read, but not the model's input
                    yield position, None, error.reason
            return
        locations = self.locations[items]
        for start, stop in consecutive_runs(locations):  # one read per block of rows
            file_index, row = locations[start]
            block = self.inputs.read_rows(int(file_index), int(row), int(row + stop - start))
            yield from zip(range(start, stop), block, [""] * (stop - start))


def _as_read(batch: dict) -> dict:
    """The loader's ``collate_fn``: ``__getitems__`` already returns whole batches."""
    return batch


def _start_worker(worker_id: int) -> None:
    die_with_parent()


def predicted_batches(models: Sequence, dataset: PredictionDataset, metadata: np.ndarray | None,
                      batch_size: int = 64, num_workers: int = 0, device: str = "auto",
                      progress: bool = True, start: int = 0) -> Iterator[dict]:
    """The exams of ``dataset`` from position ``start`` on, a batch at a time and in order:
    ``{"index": (batch,) positions, "predictions": (members, batch, prediction columns)``
    (NaN for exams that could not be fed), ``"amplitude_mv"``, ``"flags"``, ``"problem"}``.

    ``models`` are :class:`ecgexp.api.TrainedModel` of one task and input contract;
    ``metadata``: ``(exams, columns)`` raw values of their metadata inputs, or ``None``."""
    target = device_of(device)
    exams = dataset if start == 0 else Subset(dataset, range(start, len(dataset)))
    loader = DataLoader(exams, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_as_read, worker_init_fn=_start_worker,
                        pin_memory=target.type == "cuda",
                        persistent_workers=False, prefetch_factor=4 if num_workers else None)

    def fed(batches: Iterator[dict]) -> Iterator[dict]:
        """The batches with the exams to feed (a tracing, and every metadata input)."""
        for batch in batches:
            index = batch["index"].numpy()
            problems = list(batch["problem"])
            batch["fed"] = np.array([not p for p in problems], dtype=bool)
            if metadata is not None:
                complete = np.isfinite(metadata[index]).all(axis=1)
                batch["problem"] = [p or ("" if ok else "missing metadata inputs")
                                    for p, ok in zip(problems, complete)]
                batch["fed"] &= complete
                batch["raw_metadata"] = np.nan_to_num(metadata[index])
            yield batch

    with counting("predicting", len(dataset), "exams", completed=start,
                  show=progress) as advance:
        for done in inferred(models, fed(iter(loader)), target):
            batch = done.batch
            yield {"index": batch["index"].numpy(), "predictions": done.predictions,
                   "amplitude_mv": np.asarray(batch["amplitude"], dtype=np.float64),
                   "flags": list(batch["flags"]), "problem": list(batch["problem"])}
            advance(len(batch["index"]))
