"""Samplers for the training split.

``EpochShuffleSampler`` shuffles with ``seed + epoch``, so the order of any epoch depends only on
the seed and the epoch number and a run resumed from a checkpoint sees the same batches as an
uninterrupted one (Lightning calls ``set_epoch`` before each epoch).

``TwoSourceBatchSampler`` is the Chagas study's two-source training (docs/studies.md §2.3): every
batch holds a fixed number of exams from source A (e.g. SaMi-Trop, all positive) and the rest
from source B (e.g. CODE); an epoch is one pass over source A, and source B is an endless
stream that keeps its position across epochs and is reshuffled each time it is exhausted.

Under distributed training (``trainer=ddp``) each process builds the same sampler with its
``rank`` and the ``world_size``: every rank draws the same global order from the seed and keeps
its share, padded (by repeating the start of the order, as ``DistributedSampler`` does) so that
all ranks run the same number of steps. ``ShardSampler`` gives evaluation splits out unpadded.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Sampler


def _check_rank(rank: int, world_size: int) -> None:
    if not 0 <= rank < world_size:
        raise ValueError(f"sampler: rank {rank} is not in [0, {world_size}) processes")


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(n)`` drawn from ``seed + epoch``; with ``world_size > 1`` the
    positions ``rank, rank + world_size, ...`` of it, padded to ``ceil(n / world_size)``."""

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        _check_rank(rank, world_size)
        self.n, self.seed, self.epoch = n, seed, 0
        self.rank, self.world_size = rank, world_size

    @property
    def sampler(self) -> TwoSourceBatchSampler:
        """Lightning sets the epoch of ``loader.batch_sampler.sampler``: that is this one."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        padded = list(itertools.islice(itertools.cycle(order), len(self) * self.world_size))
        return iter(padded[self.rank::self.world_size])


class ShardSampler(Sampler[int]):
    """The positions ``rank, rank + world_size, ...`` of ``range(n)`` in order, unpadded: an
    evaluation split shared out among processes, every exam seen once."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        _check_rank(rank, world_size)
        self.n, self.rank, self.world_size = n, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))


class TwoSourceBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices: ``n_a`` from ``source_a`` then ``batch_size - n_a``
    from ``source_b``, with ``n_a = round(fraction_a * batch_size)``.

    The last batch of an epoch holds the ``len(source_a) % n_a`` remaining A exams (when not
    zero) and a full share of B exams. With ``shuffle`` the A order is a new permutation each
    epoch and B is reshuffled each cycle (the published loaders read in file order).

    The draws of epoch ``e`` are those that follow ``e`` whole epochs from ``seed``:
    :meth:`set_epoch` (called by Lightning before each epoch) replays the earlier epochs when
    the sampler is not already there, so a run resumed from a checkpoint sees the same batches
    as an uninterrupted one.
    """

    def __init__(self, source_a: np.ndarray, source_b: np.ndarray, batch_size: int,
                 fraction_a: float, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1):
        _check_rank(rank, world_size)
        self.n_a = int(round(fraction_a * batch_size))
        if not 0 < self.n_a < batch_size:
            raise ValueError(f"task.sampler.fraction_a: {fraction_a} of a batch of {batch_size} "
                             f"gives {self.n_a} source-A exams; both sources need at least one "
                             f"exam per batch")
        if len(source_a) == 0 or len(source_b) == 0:
            raise ValueError(f"task.sampler: the training split has {len(source_a)} source-A "
                             f"and {len(source_b)} source-B exams; both must be non-empty")
        self.source_a = np.asarray(source_a, dtype=np.int64)
        self.source_b = np.asarray(source_b, dtype=np.int64)
        self.n_b = batch_size - self.n_a
        self.shuffle = shuffle
        self.rank, self.world_size = rank, world_size
        self.seed = seed
        self._restart()

    def _restart(self) -> None:
        """The state before epoch 0."""
        self.rng = np.random.default_rng(self.seed)
        self._b_order = self._order(self.source_b)
        self._b_position = 0
        self._epoch = 0

    @property
    def sampler(self) -> TwoSourceBatchSampler:
        """Lightning sets the epoch of ``loader.batch_sampler.sampler``: that is this one."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Brings the draws to the start of ``epoch``: replays epochs ``0 .. epoch - 1`` unless
        the sampler has just finished epoch ``epoch - 1``."""
        if epoch == self._epoch:
            return
        self._restart()
        for _ in range(epoch):
            for _ in self._global_batches():
                pass
            self._epoch += 1

    def _order(self, indices: np.ndarray) -> np.ndarray:
        return self.rng.permutation(indices) if self.shuffle else indices.copy()

    def _next_b(self) -> list[int]:
        taken: list[int] = []
        while len(taken) < self.n_b:
            if self._b_position == len(self._b_order):
                self._b_order, self._b_position = self._order(self.source_b), 0
            end = min(len(self._b_order), self._b_position + self.n_b - len(taken))
            taken.extend(self._b_order[self._b_position:end].tolist())
            self._b_position = end
        return taken

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.source_a) / self.n_a) / self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        """Every rank draws the same global batches (the B stream advances identically) and
        yields batches ``rank, rank + world_size, ...`` of them."""
        for number, batch in enumerate(self._global_batches()):
            if number % self.world_size == self.rank:
                yield batch
        self._epoch += 1

    def _global_batches(self) -> Iterator[list[int]]:
        """The batches of one epoch of every rank, drawn in order."""
        order_a = self._order(self.source_a)
        batches_a = [order_a[start:start + self.n_a]
                     for start in range(0, len(order_a), self.n_a)]
        padded = itertools.islice(itertools.cycle(batches_a), len(self) * self.world_size)
        for batch_a in padded:
            yield batch_a.tolist() + self._next_b()


def two_source_batches(table: pd.DataFrame, batch_size: int, seed: int, source_column: str,
                       source_a, fraction_a: float = 0.5, shuffle: bool = True, rank: int = 0,
                       world_size: int = 1) -> TwoSourceBatchSampler:
    """Two-source sampler over the training exams ``table`` (rows in dataset order): source A
    is every exam whose ``source_column`` equals ``source_a``, source B the others.

    With the bundled data ``source_column=chagas, source_a=1`` mixes positives and negatives;
    with SaMi-Trop + CODE-15% (``dataset=chagas_sources``) use ``source_column=source,
    source_a=samitrop``.
    """
    if source_column not in table.columns:
        raise KeyError(f"task.sampler.source_column: column '{source_column}' not in the exam "
                       f"table (columns: {', '.join(map(str, table.columns))})")
    is_a = (table[source_column] == source_a).to_numpy()
    positions = np.arange(len(table))
    return TwoSourceBatchSampler(positions[is_a], positions[~is_a], batch_size, fraction_a,
                                 seed, shuffle, rank, world_size)
