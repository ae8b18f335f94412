"""Lightning DataModule: the splits of one exam source as data loaders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Sampler

from ecgexp.data.dataset import EmbeddingDataset, ExamDataset, collate_exams
from ecgexp.data.hdf5 import TracingReader
from ecgexp.data.samplers import EpochShuffleSampler, ShardSampler
from ecgexp.data.source import AMPLITUDE_RANGE_MV, HDF5Source, screen_tracings
from ecgexp.errors import UserError
from ecgexp.processes import die_with_parent
from ecgexp.signal.leads import lead_indices

log = logging.getLogger(__name__)


class FirstBatchDataLoader(DataLoader):
    """A ``DataLoader`` whose iteration starts at the first batch asked for, not at ``iter()``.

    With workers, the iteration reads the sampler as soon as it starts: the workers at once take
    their first ``prefetch_factor`` batches of indices. When it resumes from a checkpoint,
    Lightning calls ``iter()`` on the training loader before it gives the sampler the epoch
    (``set_epoch``); started there, the resumed epoch would be shuffled as epoch 0. Started at
    the first batch, the sampler is read after ``set_epoch``, as a loader without workers reads
    it, so a resumed run sees the same batches as an uninterrupted one.
    """

    def __iter__(self) -> Iterator:
        return _StartedAtFirstBatch(super().__iter__)


class _StartedAtFirstBatch(Iterator):
    """The iterator ``start()`` returns, called at the first ``next()``."""

    def __init__(self, start: Callable[[], Iterator]):
        self._start = start
        self._iterator: Iterator | None = None

    def __next__(self):
        if self._iterator is None:
            self._iterator = self._start()
        return next(self._iterator)


def start_worker(worker_id: int, rank: int) -> None:
    """``worker_init_fn`` of the loaders: seeds the worker as Lightning seeds workers
    (``seed_everything(workers=True)``) and has it end with the process iterating the loader
    (:func:`ecgexp.processes.die_with_parent`): a worker of a killed run would otherwise live
    on for seconds holding the run folder's lock, so that the run could not be resumed at once
    ("in use by a live run"). Elsewhere than Linux, torch's watchdog ends it a little later."""
    die_with_parent()
    pl_worker_init_function(worker_id, rank)


def within_ranges(table: pd.DataFrame, ranges: dict[str, tuple[float, float, str]],
                  name: str) -> pd.DataFrame:
    """The exams whose target values lie in their plausible ``[low, high]`` (``ranges``:
    column -> (low, high, the config key that sets them)); the others are left out with a
    warning naming how many and the first exam ids."""
    for column, (low, high, key) in ranges.items():
        if column not in table:
            continue
        values = table[column]
        outside = values.notna() & ~values.between(low, high)
        if outside.any():
            shown = ", ".join(f"exam_id {e}: {v:g}" for e, v in
                              zip(table.exam_id[outside][:5], values[outside][:5]))
            log.warning("%s: %d exams with %s outside [%g, %g] left out (%s%s); set %s to "
                        "change the range", name, int(outside.sum()), column, low, high, shown,
                        ", ..." if outside.sum() > 5 else "", key)
            table = table[~outside].reset_index(drop=True)
    return table


class ExamDataModule(pl.LightningDataModule):
    """Train/val/test loaders over an ``HDF5Source``.

    Args:
        source: where the exams come from (the ``dataset`` config).
        target_columns: label columns the task predicts.
        leads: the lead order the model receives (the ``preprocessing.leads`` config).
        batch_size, num_workers: loader settings; each worker opens its own HDF5 handles and
            its workers persist across epochs.
        eval_batch_size: batch size of the validation, test and prediction loaders (no
            gradients are kept, so larger batches fit and run faster); ``None``: ``batch_size``.
        prefetch_factor: batches each worker loads ahead (with ``num_workers > 0``).
        pin_memory: page-locked batches for faster copies to a GPU; ``None``: when the trainer
            runs on a CUDA device.
        seed: seeds the shuffling of the training batches.
        metadata_columns: exam-table columns fed to the network beside the tracing
            (``task.metadata_columns``, e.g. age and sex for the electrolyte fusion head).
        standardise_metadata: those of them z-scored with the training split's statistics.
        target_builder: a task's derived targets (``task.targets``), run on the exam table.
        sampler: builds the training batch sampler from the training exams, the batch size,
            the seed, the process rank and the number of processes (``task.sampler``, e.g.
            two-source mixing); ``None`` shuffles.
        binary_columns: those of ``target_columns`` whose values must be 0 or 1 (the targets
            of a binary or multi-label objective); a value outside {0, 1} is named at set-up.
        metadata_statistics: ``{column: {mean, std}}`` fitted earlier (a trained model's, from
            its model card): the metadata is standardised with them instead of with this
            data's training split.
        validation: whether the run validates (an empty validation split is an error);
            ``False`` for ``split=all``, where every exam trains.

    ``setup`` checks the data before training: label values (numbers; ``binary_columns``
    0/1), and, for HDF5 files, one scan of every exam the run uses (cached, see
    ``ecgexp.data.source.screen_tracings``): unreadable rows, NaN/Inf samples and all-zero
    exams stop the run or are left out (``dataset.nan_policy``), and amplitudes that are not
    mV (``dataset.scale``) stop it.

    Under distributed training every process loads its own share of each split (the samplers
    shard by the trainer's rank; ``trainer.use_distributed_sampler`` is off), so the per-rank
    batch size is ``batch_size``.
    """

    def __init__(self, source: HDF5Source, target_columns: Sequence[str], leads: Sequence[str],
                 batch_size: int = 32, num_workers: int = 0, seed: int = 0,
                 eval_batch_size: int | None = None, prefetch_factor: int = 2,
                 pin_memory: bool | None = None,
                 metadata_columns: Sequence[str] = (), standardise_metadata: Sequence[str] = (),
                 target_builder: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                 sampler: Callable[..., Sampler] | None = None,
                 binary_columns: Sequence[str] = (),
                 metadata_statistics: dict[str, dict[str, float]] | None = None,
                 valid_ranges: dict[str, tuple[float, float, str]] | None = None,
                 validation: bool = True):
        super().__init__()
        self.validation = validation
        unknown = [c for c in standardise_metadata if c not in metadata_columns]
        if unknown:
            raise ValueError(f"task.standardise_metadata: {unknown} are not in "
                             f"task.metadata_columns ({list(metadata_columns)})")
        not_targets = [c for c in binary_columns if c not in target_columns]
        if not_targets:
            raise UserError(f"task.objective: the binary labels {not_targets} are not among "
                            f"the target columns ({list(target_columns)})")
        self.binary_columns = list(binary_columns)
        self.valid_ranges = dict(valid_ranges or {})
        self.source = source
        self.target_columns = list(target_columns)
        self.lead_index = lead_indices(source.leads, leads)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.eval_batch_size = eval_batch_size or batch_size
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.seed = seed
        self.metadata_columns = list(metadata_columns)
        self.standardise_metadata = list(standardise_metadata)
        self.target_builder = target_builder
        self.sampler = sampler
        self.table: pd.DataFrame | None = None
        self.reader: TracingReader | None = None
        self.datasets: dict[str, ExamDataset] = {}
        # A linear probe's cached embeddings of the train and val splits, fed while fitting
        # (ecgexp/tasks/embeddings.py); the splits are still predicted from their tracings.
        self.embedded: dict[str, EmbeddingDataset] = {}
        self.fitted_metadata = dict(metadata_statistics or {})
        self.metadata_statistics: dict[str, dict[str, float]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.table is not None:
            return
        table, self.reader = self.source.load(self.target_columns, self.metadata_columns,
                                              self.target_builder, self.binary_columns)
        table = within_ranges(table, self.valid_ranges, self.source.name)
        if isinstance(self.reader, TracingReader):  # raw records are checked as they are read
            table = screen_tracings(
                table, self.reader, self.source.scale, self.source.nan_policy,
                getattr(self.source, "amplitude_range", AMPLITUDE_RANGE_MV), self.source.name)
        self.table = table
        for split in ("train", "val") if self.validation else ("train",):
            if not (self.table.split == split).any():
                raise ValueError(f"dataset.split: the '{split}' split of '{self.source.name}' "
                                 f"is empty" + ("; give it exams (dataset.split.val_fraction), "
                                                "or train on every exam without validation: "
                                                "split=all" if split == "val" else ""))
        self._name_splits_without_positives()
        metadata = self._scaled_metadata()
        for split, rows in self.table.groupby("split"):
            self.datasets[split] = ExamDataset(
                rows, self.reader, self.target_columns, self.lead_index, self.source.scale,
                self.source.nan_policy, None if metadata is None else metadata[rows.index])
        log.info("%s: %s exams", self.source.name,
                 ", ".join(f"{s} {len(d)}" for s, d in self.datasets.items()))

    def _name_splits_without_positives(self) -> None:
        """One warning per binary label that a split has no positive exam of (its AUROC,
        threshold or recall there are undefined), at start-up."""
        for label in self.binary_columns:
            counts = self.table.groupby("split")[label].agg(["sum", "size"])
            empty = [f"{split} (0 of {int(row['size'])})" for split, row in counts.iterrows()
                     if row["sum"] == 0]
            if empty:
                log.warning("%s: no positive '%s' exam in the %s split; its metrics there are "
                            "undefined: choose other fractions (dataset.split.val_fraction, "
                            "test_fraction) or another split_seed", self.source.name, label,
                            ", ".join(empty))

    def _scaled_metadata(self) -> np.ndarray | None:
        """Metadata columns as ``(exams, n_metadata)``, standardised with training statistics."""
        if not self.metadata_columns:
            return None
        metadata = self.table[self.metadata_columns].to_numpy(np.float64)
        train = (self.table.split == "train").to_numpy()
        for name in self.standardise_metadata:
            column = self.metadata_columns.index(name)
            if name in self.fitted_metadata:
                mean, std = (self.fitted_metadata[name][k] for k in ("mean", "std"))
            else:
                mean, std = metadata[train, column].mean(), metadata[train, column].std()
            if not std > 0:
                raise ValueError(f"task.standardise_metadata: '{name}' is constant in the "
                                 f"training split")
            metadata[:, column] = (metadata[:, column] - mean) / std
            self.metadata_statistics[name] = {"mean": float(mean), "std": float(std)}
        return metadata

    def training_targets(self) -> np.ndarray:
        """``(exams, targets)`` of the training split, for the objective's statistics."""
        return self.datasets["train"].targets

    def has_split(self, split: str) -> bool:
        return split in self.datasets

    def _shard(self) -> dict[str, int]:
        """This process's rank and the number of processes (0 and 1 outside a trainer)."""
        if self.trainer is None:
            return {"rank": 0, "world_size": 1}
        return {"rank": self.trainer.global_rank, "world_size": self.trainer.world_size}

    def loader(self, split: str, shuffle: bool = False, shard: bool = False,
               embedded: bool = False) -> DataLoader:
        """Batches of one split: shuffled with ``seed + epoch`` (``batch_size``) when
        ``shuffle``, else in order (``eval_batch_size``); with ``shard`` only this process's
        share of it (all of it in a single process); with ``embedded`` its cached embeddings
        when it has some."""
        dataset = self.embedded.get(split, self.datasets[split]) if embedded else (
            self.datasets[split])
        if shuffle:
            sampler = EpochShuffleSampler(len(dataset), self.seed, **self._shard())
            return self._data_loader(dataset, batch_size=self.batch_size, sampler=sampler)
        sampler = ShardSampler(len(dataset), **(self._shard() if shard else {}))
        return self._data_loader(dataset, batch_size=self.eval_batch_size, sampler=sampler)

    def _data_loader(self, dataset: ExamDataset | EmbeddingDataset, **batching) -> DataLoader:
        """A loader of whole batches (``ExamDataset.__getitems__``) with the worker settings,
        started at its first batch (``FirstBatchDataLoader``), its workers started by
        ``start_worker``."""
        pin_memory = self.pin_memory
        if pin_memory is None:
            pin_memory = (self.trainer is not None
                          and self.trainer.strategy.root_device.type == "cuda")
        workers = self.num_workers > 0
        return FirstBatchDataLoader(
            dataset, num_workers=self.num_workers, collate_fn=collate_exams,
            persistent_workers=workers, pin_memory=pin_memory,
            prefetch_factor=self.prefetch_factor if workers else None,
            worker_init_fn=partial(start_worker, rank=self._shard()["rank"]), **batching)

    def train_dataloader(self) -> DataLoader:
        if self.sampler is None:
            return self.loader("train", shuffle=True, embedded=True)
        train_rows = self.table[self.table.split == "train"].reset_index(drop=True)
        batch_sampler = self.sampler(table=train_rows, batch_size=self.batch_size,
                                     seed=self.seed, **self._shard())
        return self._data_loader(self.embedded.get("train", self.datasets["train"]),
                                 batch_sampler=batch_sampler)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", shard=True, embedded=True)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", shard=True)
