"""Torch dataset of exams: one tracing, its targets and its exam id per item."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate

from ecgexp.data.hdf5 import TracingReader
from ecgexp.signal.pipeline import RecordRejected
from ecgexp.signal.readers import RecordError

log = logging.getLogger(__name__)


class ExamDataset(Dataset):
    """Items are ``{"tracing": (leads, samples) float32, "target": (n_targets,) float32,
    "exam_id": int64}``, plus ``"metadata": (n_metadata,) float32`` when ``metadata`` is given.

    Args:
        table: exam table from ``HDF5Source.load`` (``exam_id``, ``file_index``, ``row``, targets).
        reader: the source's tracing reader.
        target_columns: label columns stacked into ``target``.
        lead_index: positions of the model's leads in the stored lead order.
        scale: amplitude factor.
        nan_policy: ``error`` raises on a tracing with NaN/Inf samples; ``skip`` returns ``None``
            for it, which ``collate_exams`` drops from the batch.
        metadata: ``(exams, n_metadata)`` values fed to the network beside the tracing (age,
            sex), already scaled; ``None`` for none.
    """

    def __init__(self, table: pd.DataFrame, reader: TracingReader, target_columns: Sequence[str],
                 lead_index: Sequence[int], scale: float = 1.0, nan_policy: str = "error",
                 metadata: np.ndarray | None = None):
        self.exam_ids = table.exam_id.to_numpy(np.int64)
        self.locations = table[["file_index", "row"]].to_numpy(np.int64)
        self.targets = np.array(table[list(target_columns)], dtype=np.float32)  # own, writable copy
        self.reader = reader
        self.lead_index = np.asarray(lead_index)
        self.scale = np.float32(scale)
        self.nan_policy = nan_policy
        self.metadata = None if metadata is None else np.asarray(metadata, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.exam_ids)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor] | None:
        file_index, row = self.locations[item]
        where = f"exam_id {self.exam_ids[item]} (row {row} of {self.reader.files[file_index]})"
        try:
            stored = self.reader.read(file_index, row)  # (samples, stored leads)
        except (RecordError, RecordRejected) as error:  # raw records: unreadable or rejected
            return self._unusable(f"{where}: {getattr(error, 'reason', error)}")
        tracing = np.ascontiguousarray(stored[:, self.lead_index].T, dtype=np.float32)
        if not np.isfinite(tracing).all():
            return self._unusable(f"{where} has NaN/Inf samples")
        if self.scale != 1:
            tracing *= self.scale
        item_tensors = {"tracing": torch.from_numpy(tracing),
                        "target": torch.from_numpy(self.targets[item]),
                        "exam_id": torch.tensor(self.exam_ids[item])}
        if self.metadata is not None:
            item_tensors["metadata"] = torch.from_numpy(self.metadata[item])
        return item_tensors


    def _unusable(self, message: str) -> None:
        if self.nan_policy == "error":
            raise ValueError(f"{message}; set dataset.nan_policy=skip to leave such exams out")
        log.warning("%s; skipped (dataset.nan_policy=skip)", message)
        return None


def collate_exams(items: list[dict | None]) -> dict[str, torch.Tensor] | None:
    """Stacks items, dropping the ``None`` of skipped exams; ``None`` if none is left."""
    kept = [item for item in items if item is not None]
    return default_collate(kept) if kept else None
