"""``ecgexp.tasks.callbacks``: ``EpochSeed`` driven by a stand-in trainer, its draws compared
with Python's, NumPy's and torch's generators seeded by hand with ``seed + epoch``;
``EpochLines``' lines for a stand-in trainer on a made-up clock, written out by hand (the
elapsed time, the ETA at the mean pace of the epochs of this process, the monitored metric and
its best under ``min`` and ``max``, NaN left out of the best)."""

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ecgexp.tasks import callbacks
from ecgexp.tasks.callbacks import EpochLines, EpochSeed


@pytest.fixture
def global_generators(monkeypatch):
    """The generators' states and Lightning's seed variables are put back after the test."""
    for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        monkeypatch.setenv(name, "0")
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def seed_trainer(epoch: int):
    progress = SimpleNamespace(current=SimpleNamespace(processed=epoch))
    return SimpleNamespace(fit_loop=SimpleNamespace(epoch_progress=progress))


def test_epoch_seed_reseeds_with_seed_plus_epoch_at_the_first_batch(global_generators):
    random.seed(10)
    np.random.seed(10)
    torch.manual_seed(10)
    expected = draws()
    EpochSeed(7).on_train_batch_start(seed_trainer(3), None, batch=None, batch_idx=0)
    assert draws() == expected
    EpochSeed(7).on_train_batch_start(seed_trainer(4), None, batch=None, batch_idx=0)
    assert draws() != expected


def test_epoch_seed_leaves_the_generators_alone_after_the_first_batch(global_generators):
    def seeded(seed):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    seeded(5)
    expected = draws()
    seeded(5)
    for batch_idx in (1, 2):  # reseeding would give the draws of seed 0 + epoch 1
        EpochSeed(0).on_train_batch_start(seed_trainer(1), None, batch=None,
                                          batch_idx=batch_idx)
    assert draws() == expected
    seeded(1)
    assert draws() != expected


class Clock:
    def __init__(self, *times):
        self.times = iter(times)

    def __call__(self):
        return next(self.times)


def trainer(epoch, metrics=None, step=0):
    return SimpleNamespace(current_epoch=epoch, max_epochs=10, num_training_batches=5,
                           global_step=step, callback_metrics=metrics or {})


def test_lines_of_a_resumed_run_with_a_metric_to_maximise(monkeypatch, capsys):
    monkeypatch.setattr(callbacks.time, "monotonic", Clock(100, 130, 160, 190, 220, 250))
    lines = EpochLines("val_auroc", "max")
    lines.on_train_start(trainer(2), None)  # resumed after 2 epochs: epochs 3 to 10 left
    # epoch 3 at 30 s: 30 s per epoch of this process, 7 epochs left
    lines.on_train_epoch_end(trainer(2, {"train_loss": torch.tensor(0.51234), "val_loss": 0.6,
                                         "val_auroc": torch.tensor(0.7)}, step=15), None)
    lines.on_train_epoch_end(trainer(3, {"val_auroc": 0.65}, step=20), None)  # 30 s each
    lines.on_train_epoch_end(trainer(4, {"val_auroc": math.nan}, step=25), None)
    lines.on_train_epoch_end(trainer(5, {"val_auroc": 0.8, "lr": 0.1}, step=30), None)
    lines.on_train_end(trainer(6), None)
    assert capsys.readouterr().out.splitlines() == [
        "training  epochs 3-10  5 batches each",
        "epoch 3/10  steps 15  elapsed 0:00:30  ETA 0:03:30  train_loss 0.5123  "
        "val_loss 0.6000  val_auroc 0.7000 (monitored, best 0.7000)",
        "epoch 4/10  steps 20  elapsed 0:01:00  ETA 0:03:00  "
        "val_auroc 0.6500 (monitored, best 0.7000)",
        "epoch 5/10  steps 25  elapsed 0:01:30  ETA 0:02:30  "
        "val_auroc nan (monitored, best 0.7000)",
        "epoch 6/10  steps 30  elapsed 0:02:00  ETA 0:02:00  "
        "val_auroc 0.8000 (monitored, best 0.8000)",
        "training done  epochs 6/10  elapsed 0:02:30"]


def test_a_minimised_monitor_is_not_repeated_and_nan_gives_no_best(monkeypatch, capsys):
    monkeypatch.setattr(callbacks.time, "monotonic", Clock(0, 20, 40, 60))
    lines = EpochLines("val_loss", "min")
    lines.on_train_start(trainer(0), None)
    lines.on_train_epoch_end(trainer(0, {"val_loss": math.nan, "train_loss": 1.0}), None)
    lines.on_train_epoch_end(trainer(1, {"val_loss": 0.4, "train_loss": 0.9}), None)
    lines.on_train_epoch_end(trainer(2, {"val_loss": 0.5}), None)
    assert capsys.readouterr().out.splitlines()[1:] == [
        "epoch 1/10  steps 0  elapsed 0:00:20  ETA 0:03:00  train_loss 1.0000  "
        "val_loss nan (monitored)",
        "epoch 2/10  steps 0  elapsed 0:00:40  ETA 0:02:40  train_loss 0.9000  "
        "val_loss 0.4000 (monitored, best 0.4000)",
        "epoch 3/10  steps 0  elapsed 0:01:00  ETA 0:02:20  "
        "val_loss 0.5000 (monitored, best 0.4000)"]


def test_a_disabled_bar_prints_nothing(monkeypatch, capsys):
    monkeypatch.setattr(callbacks.time, "monotonic", Clock(0, 10))
    lines = EpochLines("val_loss", "min")
    lines.disable()
    lines.on_train_start(trainer(0), None)
    lines.on_train_epoch_end(trainer(0, {"val_loss": 0.3}), None)
    lines.on_train_end(trainer(1), None)
    assert capsys.readouterr().out == ""
    lines.enable()
    assert lines.enabled
