"""Lightning DataModule: the splits of one exam source as data loaders."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ecgexp.data.dataset import ExamDataset, collate_exams
from ecgexp.data.hdf5 import TracingReader
from ecgexp.data.source import HDF5Source
from ecgexp.signal.leads import lead_indices

log = logging.getLogger(__name__)


class ExamDataModule(pl.LightningDataModule):
    """Train/val/test loaders over an ``HDF5Source``.

    Args:
        source: where the exams come from (the ``dataset`` config).
        target_columns: label columns the task predicts.
        leads: the lead order the model receives (the ``preprocessing.leads`` config).
        batch_size, num_workers: loader settings; each worker opens its own HDF5 handles.
        seed: seeds the shuffling of the training batches.
    """

    def __init__(self, source: HDF5Source, target_columns: Sequence[str], leads: Sequence[str],
                 batch_size: int = 32, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.source = source
        self.target_columns = list(target_columns)
        self.lead_index = lead_indices(source.leads, leads)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.table: pd.DataFrame | None = None
        self.reader: TracingReader | None = None
        self.datasets: dict[str, ExamDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.table is not None:
            return
        self.table, self.reader = self.source.load(self.target_columns)
        for split, rows in self.table.groupby("split"):
            self.datasets[split] = ExamDataset(rows, self.reader, self.target_columns,
                                               self.lead_index, self.source.scale,
                                               self.source.nan_policy)
        log.info("%s: %s exams", self.source.name,
                 ", ".join(f"{s} {len(d)}" for s, d in self.datasets.items()))
        for split in ("train", "val"):
            if split not in self.datasets:
                raise ValueError(f"dataset.split: the '{split}' split of '{self.source.name}' "
                                 f"is empty")

    def has_split(self, split: str) -> bool:
        return split in self.datasets

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle,
                          generator=generator, num_workers=self.num_workers,
                          collate_fn=collate_exams, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")
