"""Fault tolerance: a training run killed mid-epoch and resumed ends exactly like an
uninterrupted run with the same seed (CPU), with the default loader settings (two persistent
workers, each prefetching)."""

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers.commands import run_in_process
from helpers.configs import QUARTER_LENGTHS

from ecgexp.data.datamodule import ExamDataModule
from ecgexp.data.source import HDF5Source
from ecgexp.data.splits import first_n_split

RUN = ["experiment=demo", QUARTER_LENGTHS, "dataset.n_exams=240", "trainer.max_epochs=3",
       "loader.batch_size=16", "callbacks.progress_bar=null", "logger=none"]


def ecgexp(tmp_path, *args):
    env = {**os.environ, "WANDB_MODE": "offline", "ECGEXP_DATA_DIR": str(tmp_path / "data")}
    return subprocess.Popen([str(Path(sys.executable).parent / "ecgexp"), *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def children(pid: int) -> set[int]:
    """The processes ``pid`` started (its data-loader workers), from /proc."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found |= {int(child) for child in text.split()}
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def gone_within(pids: set[int], seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not any(running(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def reference_metrics(tmp_path_factory) -> dict:
    """metrics.json of an uninterrupted run."""
    tmp_path = tmp_path_factory.mktemp("reference")
    reference = run_in_process("ecgexp", tmp_path, *RUN, f"hydra.run.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-3000:]
    return json.loads((tmp_path / "reference" / "metrics.json").read_text())


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics(tmp_path, reference_metrics):
    """One run killed in its third epoch; its folder resumed with ``resume=<folder>`` (the
    run's own config), and a copy of it with the same command again in that folder and
    ``ckpt_path=last``: both end with the uninterrupted run's metrics."""
    folder = tmp_path / "interrupted"
    interrupted = ecgexp(tmp_path, *RUN, f"hydra.run.dir={folder}")
    last = folder / "checkpoints" / "last.ckpt"
    saves, seen, deadline = 0, None, time.time() + 600
    while saves < 2 and time.time() < deadline and interrupted.poll() is None:
        if last.exists() and last.stat().st_mtime_ns != seen:
            seen, saves = last.stat().st_mtime_ns, saves + 1
        time.sleep(0.02)
    time.sleep(0.05)  # into the third epoch (of about 0.3 s)
    workers = children(interrupted.pid)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert saves == 2 and not (folder / "metrics.json").exists()
    assert len(workers) >= 2 and gone_within(workers, 2.0)  # the workers end with the run

    copy = tmp_path / "interrupted_copy"
    shutil.copytree(folder, copy)
    for arguments, resumed_folder in (([f"resume={folder}"], folder),
                                      ([*RUN, f"hydra.run.dir={copy}", "ckpt_path=last"], copy)):
        resumed = run_in_process("ecgexp", tmp_path, *arguments)  # the kill needed a process
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert json.loads((resumed_folder / "metrics.json").read_text()) == reference_metrics


# --------------------------------------------------------------------------------------------
# The root causes, at the loader. With workers, an iteration started at iter() reads the sampler
# at once (to prefetch); resuming, Lightning calls iter() before it gives the sampler the epoch,
# so the resumed epoch would be shuffled as epoch 0. And workers outliving a killed run hold its
# run folder's lock.

SEED, EXAM_IDS, N_VAL = 3, np.arange(1, 25), 4
TRAIN_IDS = EXAM_IDS[N_VAL:]  # the training exams, in file order


@pytest.fixture
def source(tmp_path) -> HDF5Source:
    """A small HDF5 source: exam ids 1..24, the first 4 validate."""
    tracings = np.random.default_rng(0).normal(0, 0.1, (len(EXAM_IDS), 4096, 12))
    with h5py.File(tmp_path / "tracings.hdf5", "w") as handle:
        handle.create_dataset("tracings", data=tracings.astype(np.float32))
        handle.create_dataset("exam_id", data=EXAM_IDS)
    pd.DataFrame({"exam_id": EXAM_IDS, "y": 0.0}).to_csv(tmp_path / "labels.csv", index=False)
    return HDF5Source("small", str(tmp_path / "tracings.hdf5"), str(tmp_path / "labels.csv"),
                      split=partial(first_n_split, n_val=N_VAL), drop_padding_rows=False)


def training_loader(source: HDF5Source, num_workers: int):
    datamodule = ExamDataModule(source, ["y"], leads=source.leads, batch_size=4,
                                num_workers=num_workers, seed=SEED)
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def shuffled(epoch: int) -> list[int]:
    """The training exams in the order of ``epoch``: the permutation drawn from seed + epoch."""
    order = torch.randperm(len(TRAIN_IDS), generator=torch.Generator().manual_seed(SEED + epoch))
    return TRAIN_IDS[order.numpy()].tolist()


def exam_ids(batches) -> list[int]:
    return [exam_id for batch in batches for exam_id in batch["exam_id"].tolist()]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_epoch_has_its_own_order_however_it_is_reached(source, num_workers):
    loader = training_loader(source, num_workers)
    batches = iter(loader)  # as Lightning does: iter() once at the start of fit, ...
    loader.sampler.set_epoch(0)  # ... then the epoch
    uninterrupted = [exam_ids(batches)]
    for epoch in (1, 2):  # later epochs: the epoch, then iter()
        loader.sampler.set_epoch(epoch)
        uninterrupted.append(exam_ids(loader))
    assert uninterrupted == [shuffled(0), shuffled(1), shuffled(2)]

    resumed = training_loader(source, num_workers)  # a run resumed at epoch 2
    batches = iter(resumed)
    resumed.sampler.set_epoch(2)
    assert exam_ids(batches) == shuffled(2)


class ParentDeathSignal(torch.utils.data.Dataset):
    """One item: the signal the kernel sends the process reading it when its parent dies."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, item: int) -> int:
        signal_number = ctypes.c_int()
        ctypes.CDLL(None).prctl(2, ctypes.byref(signal_number))  # PR_GET_PDEATHSIG = 2
        return signal_number.value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_loader_workers_die_with_their_parent(source):
    """A worker outliving its killed parent would hold the run folder's lock for seconds (it
    inherits the lock's file open), so a killed run could not be resumed at once. A forked
    worker starts with no parent-death signal: the loader's ``worker_init_fn`` sets it."""
    worker_init_fn = training_loader(source, num_workers=2).worker_init_fn
    loader = torch.utils.data.DataLoader(ParentDeathSignal(), num_workers=1,
                                         worker_init_fn=worker_init_fn)
    assert next(iter(loader)).item() == signal.SIGKILL
