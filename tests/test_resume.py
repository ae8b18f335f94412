"""Fault tolerance: a training run killed mid-epoch and resumed ends exactly like an
uninterrupted run with the same seed (CPU)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RUN = ["experiment=demo", "dataset.n_exams=500", "trainer.max_epochs=3", "loader.batch_size=16",
       "loader.num_workers=0", "callbacks.progress_bar=null", "logger=none"]


def ecgexp(tmp_path, *args):
    env = {**os.environ, "WANDB_MODE": "offline", "ECGEXP_DATA_DIR": str(tmp_path / "data")}
    return subprocess.Popen([str(Path(sys.executable).parent / "ecgexp"), *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference_metrics(tmp_path_factory) -> dict:
    """metrics.json of an uninterrupted run."""
    tmp_path = tmp_path_factory.mktemp("reference")
    reference = ecgexp(tmp_path, *RUN, f"hydra.run.dir={tmp_path / 'reference'}")
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]
    return json.loads((tmp_path / "reference" / "metrics.json").read_text())


@pytest.mark.parametrize("how", ["resume", "ckpt_path"])
def test_killed_run_resumes_to_the_same_metrics(tmp_path, reference_metrics, how):
    folder = tmp_path / "interrupted"
    interrupted = ecgexp(tmp_path, *RUN, f"hydra.run.dir={folder}")
    last = folder / "checkpoints" / "last.ckpt"
    saves, seen, deadline = 0, None, time.time() + 600
    while saves < 2 and time.time() < deadline and interrupted.poll() is None:
        if last.exists() and last.stat().st_mtime_ns != seen:
            seen, saves = last.stat().st_mtime_ns, saves + 1
        time.sleep(0.02)
    time.sleep(0.5)  # into the third epoch
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert saves == 2 and not (folder / "metrics.json").exists()

    if how == "resume":  # the run's own config, from its folder
        arguments = [f"resume={folder}", f"hydra.run.dir={tmp_path / 'resumed'}"]
    else:  # the same command again, in the same folder, from its last checkpoint
        arguments = [*RUN, f"hydra.run.dir={folder}", "ckpt_path=last"]
    resumed = ecgexp(tmp_path, *arguments)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    assert json.loads((folder / "metrics.json").read_text()) == reference_metrics


def test_resume_needs_a_run_folder(tmp_path):
    result = ecgexp(tmp_path, f"resume={tmp_path}")
    assert result.wait(timeout=120) != 0
    assert "resume: " in result.stderr.read()
