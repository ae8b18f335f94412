"""Torch dataset of exams: one tracing, its targets and its exam id per item, read a batch at a
time."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate

from ecgexp.data.hdf5 import TracingReader, consecutive_runs
from ecgexp.signal.pipeline import RecordRejected
from ecgexp.signal.readers import RecordError

log = logging.getLogger(__name__)


class ExamDataset(Dataset):
    """Items are ``{"tracing": (leads, samples) float32, "target": (n_targets,) float32,
    "exam_id": int64}``, plus ``"metadata": (n_metadata,) float32`` when ``metadata`` is given.

    A data loader fetches whole batches through ``__getitems__``: the tracings of a batch are
    written straight into one ``(batch, leads, samples)`` array, without per-exam tensors or a
    stacking step, so ``collate_exams`` has nothing left to do. ``dataset[i]`` is the one-exam
    batch's item.

    Args:
        table: exam table from ``HDF5Source.load`` (``exam_id``, ``file_index``, ``row``, targets).
        reader: the source's tracing reader.
        target_columns: label columns stacked into ``target``.
        lead_index: positions of the model's leads in the stored lead order.
        scale: amplitude factor.
        nan_policy: ``error`` raises on a tracing with NaN/Inf samples; ``skip`` leaves it out
            of its batch (a batch left without exams is ``None``; ``dataset[i]`` is ``None``).
            ``ExamDataModule.setup`` already leaves such HDF5 exams out of the table (its scan,
            ``ecgexp.data.source.screen_tracings``); this check catches files changed since
            and raw records, which are only read when a batch needs them.
        metadata: ``(exams, n_metadata)`` values fed to the network beside the tracing (age,
            sex), already scaled; ``None`` for none.
    """

    def __init__(self, table: pd.DataFrame, reader: TracingReader, target_columns: Sequence[str],
                 lead_index: Sequence[int], scale: float = 1.0, nan_policy: str = "error",
                 metadata: np.ndarray | None = None):
        self.exam_ids = integer_ids(table.exam_id)
        # batches carry integer keys: the exam ids, or for names (``E07500``) positions
        self.keys = (self.exam_ids if self.exam_ids.dtype == np.int64
                     else np.arange(len(self.exam_ids), dtype=np.int64))
        self.locations = table[["file_index", "row"]].to_numpy(np.int64)
        self.targets = np.array(table[list(target_columns)], dtype=np.float32)  # own, writable copy
        self.reader = reader
        self.lead_index = np.asarray(lead_index)
        self.scale = np.float32(scale)
        self.nan_policy = nan_policy
        self.metadata = None if metadata is None else np.asarray(metadata, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.exam_ids)

    @property
    def names(self) -> np.ndarray | None:
        """The exam ids of the batches' ``exam_id`` keys (positions) when they are names;
        ``None`` when the keys are the integer exam ids themselves."""
        return None if self.exam_ids.dtype == np.int64 else self.exam_ids

    def __getitem__(self, item: int) -> dict[str, torch.Tensor] | None:
        batch = self.__getitems__([item])
        return None if batch is None else {name: values[0] for name, values in batch.items()}

    def __getitems__(self, items: Sequence[int]) -> dict[str, torch.Tensor] | None:
        """The batch of exams ``items``, in that order: ``{"tracing": (batch, leads, samples),
        "target": (batch, n_targets), "exam_id": (batch,)}`` (and ``"metadata"``), without
        the exams ``nan_policy=skip`` leaves out; ``None`` when none is left."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        tracings: np.ndarray | None = None
        kept: list[int] = []
        for item, stored in self._stored(items):  # (samples, stored leads)
            if stored is None:
                continue
            if tracings is None:
                tracings = np.empty((len(items), len(self.lead_index), stored.shape[0]),
                                    dtype=np.float32)
            tracing = tracings[len(kept)]
            tracing[...] = stored[:, self.lead_index].T
            if not np.isfinite(tracing).all():
                self._unusable(f"{self._where(item)} has NaN/Inf samples")
                continue
            kept.append(item)
        if not kept:
            return None
        tracings = tracings[:len(kept)]
        if self.scale != 1:
            tracings *= self.scale
        kept = np.asarray(kept)
        batch = {"tracing": torch.from_numpy(tracings),
                 "target": torch.from_numpy(self.targets[kept]),
                 "exam_id": torch.from_numpy(self.keys[kept])}
        if self.metadata is not None:
            batch["metadata"] = torch.from_numpy(self.metadata[kept])
        return batch

    def _where(self, item: int) -> str:
        file_index, row = self.locations[item]
        return f"exam_id {self.exam_ids[item]} (row {row} of {self.reader.files[file_index]})"

    def _stored(self, items: np.ndarray) -> Iterator[tuple[int, np.ndarray | None]]:
        """``(item, stored (samples, stored leads) tracing)`` for each of ``items``, in order;
        ``None`` for a raw record that is unreadable or rejected under ``nan_policy=skip``.
        Consecutive rows of one HDF5 file (evaluation batches) are read as one block."""
        if not hasattr(self.reader, "read_rows"):  # raw records: one by one
            yield from ((item, self._read(item)) for item in items)
            return
        locations = self.locations[items]
        for start, stop in consecutive_runs(locations):
            if stop - start > 1:
                file_index, row = locations[start]
                block = self.reader.read_rows(file_index, row, row + stop - start)
                yield from zip(items[start:stop], block)
            else:
                yield items[start], self._read(items[start])

    def _read(self, item: int) -> np.ndarray | None:
        file_index, row = self.locations[item]
        try:
            return self.reader.read(file_index, row)
        except (RecordError, RecordRejected) as error:  # raw records: unreadable or rejected
            return self._unusable(f"{self._where(item)}: {getattr(error, 'reason', error)}")

    def _unusable(self, message: str) -> None:
        if self.nan_policy == "error":
            raise ValueError(f"{message}; set dataset.nan_policy=skip to leave such exams out")
        log.warning("%s; skipped (dataset.nan_policy=skip)", message)
        return None


class EmbeddingDataset(Dataset):
    """A split's exams as a frozen backbone's embeddings (a linear probe on cached features):
    items ``{"features": (F,) float32, "target", "exam_id"}`` (and ``"metadata"``), batches
    through ``__getitems__`` as :class:`ExamDataset`'s, in its exam order."""

    def __init__(self, features: torch.Tensor, exams: ExamDataset):
        if len(features) != len(exams):
            raise ValueError(f"{len(features)} embeddings for {len(exams)} exams")
        self.features, self.exams = features.float(), exams

    def __len__(self) -> int:
        return len(self.exams)

    def __getitems__(self, items: Sequence[int]) -> dict[str, torch.Tensor]:
        kept = np.asarray(items, dtype=np.int64).reshape(-1)
        batch = {"features": self.features[kept],
                 "target": torch.from_numpy(self.exams.targets[kept]),
                 "exam_id": torch.from_numpy(self.exams.keys[kept])}
        if self.exams.metadata is not None:
            batch["metadata"] = torch.from_numpy(self.exams.metadata[kept])
        return batch


def integer_ids(exam_ids: pd.Series) -> np.ndarray:
    """``exam_ids`` as int64 when they are integers, else as an object array of names."""
    if pd.api.types.is_integer_dtype(exam_ids):
        return exam_ids.to_numpy(np.int64)
    return exam_ids.astype(str).to_numpy(object)


def collate_exams(batch: dict[str, torch.Tensor] | list[dict | None] | None
                  ) -> dict[str, torch.Tensor] | None:
    """The loaders' ``collate_fn``. A batch from ``ExamDataset.__getitems__`` (or ``None``)
    passes through; a list of items (``dataset[i]``) is stacked, dropping the ``None`` of
    skipped exams; ``None`` if none is left."""
    if batch is None or isinstance(batch, dict):
        return batch
    kept = [item for item in batch if item is not None]
    return default_collate(kept) if kept else None
