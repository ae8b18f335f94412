"""Two-source training batches of the Chagas study (docs/studies.md §2.3): a fixed share of every
batch from source A, an epoch is one pass over A, and source B is an endless stream that keeps
its position across epochs."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ecgexp.data.samplers import TwoSourceBatchSampler, two_source_batches

A = np.arange(10)  # source-A dataset indices 0..9
B = np.arange(100, 107)  # source-B dataset indices 100..106


def sampler(source_a=A, source_b=B, batch_size=4, fraction_a=0.5, **options):
    return TwoSourceBatchSampler(source_a, source_b, batch_size, fraction_a, **options)


def b_draws(batches):
    return [i for batch in batches for i in batch if i in set(B.tolist())]


def test_length_is_one_pass_over_source_a():
    assert len(sampler()) == 5
    assert len(list(sampler())) == 5


def test_every_batch_holds_two_a_and_two_b():
    for batch in sampler(seed=3):
        assert sum(i in A for i in batch) == 2
        assert sum(i in B for i in batch) == 2


def test_every_a_index_appears_exactly_once_per_epoch():
    batches = sampler(seed=3)
    for _ in range(2):
        a_draws = [i for batch in batches for i in batch if i in A]
        assert sorted(a_draws) == A.tolist()


def test_b_cycles_when_exhausted():
    # 10 B draws from 7 exams: every B exam at least once, none more than twice.
    counts = Counter(b_draws(sampler(seed=3)))
    assert set(counts) == set(B.tolist())
    assert max(counts.values()) == 2


def test_unshuffled_epochs_continue_the_b_stream():
    batches = sampler(shuffle=False)
    # B stream: 100..106, 100..106, ...; epoch 2 starts at its 11th element (103).
    assert list(batches) == [[0, 1, 100, 101], [2, 3, 102, 103], [4, 5, 104, 105],
                             [6, 7, 106, 100], [8, 9, 101, 102]]
    assert list(batches) == [[0, 1, 103, 104], [2, 3, 105, 106], [4, 5, 100, 101],
                             [6, 7, 102, 103], [8, 9, 104, 105]]


def test_shuffled_b_stream_keeps_its_position_across_epochs():
    batches = sampler(seed=5)
    stream = b_draws(list(batches)) + b_draws(list(batches))  # 20 draws over two epochs
    # Each cycle of the stream is one permutation of B: draws 1-7 and 8-14.
    assert sorted(stream[:7]) == B.tolist()
    assert sorted(stream[7:14]) == B.tolist()


def test_last_partial_batch_has_the_remaining_a_and_a_full_b_share():
    batches = list(sampler(source_a=np.arange(9), shuffle=False))
    assert len(batches) == len(sampler(source_a=np.arange(9))) == 5
    assert batches[-1] == [8, 101, 102]  # B draws 9 and 10 of the stream


@pytest.mark.parametrize(("batch_size", "fraction_a"), [(4, 0.1), (4, 1.0), (4, 0.0),
                                                        (32, 0.99)])
def test_fraction_giving_no_a_or_no_b_exam_raises(batch_size, fraction_a):
    with pytest.raises(ValueError, match="task.sampler.fraction_a"):
        sampler(batch_size=batch_size, fraction_a=fraction_a)


@pytest.mark.parametrize(("source_a", "source_b"), [(np.arange(0), B), (A, np.arange(0))])
def test_empty_source_raises(source_a, source_b):
    with pytest.raises(ValueError, match="non-empty"):
        sampler(source_a=source_a, source_b=source_b)


def test_same_seed_gives_same_batches_different_seed_different_batches():
    def two_epochs(seed):
        batches = sampler(seed=seed)
        return list(batches) + list(batches)

    assert two_epochs(7) == two_epochs(7)
    assert two_epochs(7) != two_epochs(8)


def test_shuffle_gives_a_new_a_order_each_epoch():
    batches = sampler(seed=1)
    first, second = list(batches), list(batches)
    assert [i for b in first for i in b if i in A] != [i for b in second for i in b if i in A]


def test_two_source_batches_takes_source_a_from_the_column_by_position():
    table = pd.DataFrame({"chagas": [0, 1, 0, 1, 1, 0, 0, 0]},
                         index=[17, 11, 15, 12, 10, 16, 13, 14])
    batches = two_source_batches(table, batch_size=4, seed=0, source_column="chagas",
                                 source_a=1, shuffle=False)
    # A = positions 1, 3, 4; B = positions 0, 2, 5, 6, 7.
    assert batches.source_a.tolist() == [1, 3, 4]
    assert batches.source_b.tolist() == [0, 2, 5, 6, 7]
    assert list(batches) == [[1, 3, 0, 2], [4, 5, 6]]


def test_two_source_batches_missing_column_raises_key_error():
    table = pd.DataFrame({"chagas": [0, 1]})
    with pytest.raises(KeyError, match="task.sampler.source_column"):
        two_source_batches(table, 4, 0, source_column="source", source_a="samitrop")


def test_dataloader_with_two_source_batch_sampler():
    # Dataset rows 0..9 are source A, rows 10..16 source B; each item is its own index.
    dataset = TensorDataset(torch.arange(17))
    batches = TwoSourceBatchSampler(np.arange(10), np.arange(10, 17), 4, 0.5, seed=0)
    loader = DataLoader(dataset, batch_sampler=batches)
    assert len(loader) == 5
    for _ in range(2):  # two epochs
        counts = [((x < 10).sum().item(), (x >= 10).sum().item()) for (x,) in loader]
        assert counts == [(2, 2)] * 5


def test_a_resumed_epoch_draws_the_batches_of_an_uninterrupted_one():
    """Epoch 2 reached through epochs 0 and 1 (a partial epoch 0 included, as with
    limit_train_batches) or by ``set_epoch(2)`` on a new sampler (a resumed run) is the same."""
    def sampler():
        return TwoSourceBatchSampler(np.arange(10), np.arange(10, 17), batch_size=4,
                                     fraction_a=0.5, seed=3)

    uninterrupted = sampler()
    epochs = []
    for epoch in range(3):
        uninterrupted.set_epoch(epoch)
        epochs.append(list(uninterrupted))
    resumed = sampler()
    resumed.set_epoch(2)
    assert list(resumed) == epochs[2]
    assert epochs[2] != epochs[1]
    partial = sampler()
    partial.set_epoch(0)
    next(iter(partial))  # a killed or limited epoch 0
    partial.set_epoch(1)
    assert list(partial) == epochs[1]
