"""The console scripts, run as a user would (fresh working directory): a training run in a
new process (``two_cli_runs``, tests/conftest.py), the end-to-end proof of the ``ecgexp``
script; the others call the console scripts' entry points in this process
(``run_in_process``)."""

import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

import h5py
import pandas as pd
import pytest
from helpers.commands import run_in_process
from helpers.configs import SHORT_RUN
from helpers.runs import run_folders

LABELS = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
# SHORT_RUN with two training batches and no logger, for runs whose history nobody reads
QUICK_RUN = [*(o for o in SHORT_RUN if not o.startswith("+trainer.limit_train_batches")),
             "+trainer.limit_train_batches=2", "logger=none"]

def test_synth_writes_a_code15_dataset(tmp_path):
    result = run_in_process("ecgexp-synth", tmp_path, "n_exams=30", "n_parts=2", "seed=3",
                 f"output_dir={tmp_path / 'synth'}")
    assert result.returncode == 0, result.stderr
    labels = pd.read_csv(tmp_path / "synth" / "exams.csv")
    assert len(labels) == 30
    with h5py.File(tmp_path / "synth" / "exams_part1.hdf5") as part:
        assert part["tracings"].shape[1:] == (4096, 12) and part["exam_id"][-1] == 0
    again = run_in_process("ecgexp-synth", tmp_path, "n_exams=30",
                           f"output_dir={tmp_path / 'synth'}")
    assert again.returncode != 0 and "exams" in again.stderr  # never overwrites


@pytest.mark.slow
def test_train_writes_the_run_folder(two_cli_runs):
    """One of two processes started together (the other: tests/unit/test_run_folder.py)."""
    result = two_cli_runs[0]
    tmp_path = Path(result["cwd"])
    assert result["returncode"] == 0, result["stderr"][-3000:]
    folder = next(folder for folder in run_folders(tmp_path / "outputs")
                  if f"Run folder: {folder}" in result["stdout"])
    assert folder.is_relative_to(tmp_path / "outputs" / "abnormality" / "runs")
    output = result["stdout"] + result["stderr"]  # a readable console (the run's real output)
    for noise in ("Tip:", "litlogger", "litmodels", "_pytree", "LeafSpec"):
        assert noise not in output
    assert "total flops" not in output.lower()
    assert "`Trainer.fit` stopped" in output  # Lightning's own lines still show
    assert (folder / "config.yaml").is_file()
    provenance = json.loads((folder / "provenance.json").read_text())
    # the command line of the process, as started (test_provenance checks the rest in-process)
    assert provenance["command"] == [str(Path(sys.executable).parent / "ecgexp"), *SHORT_RUN]
    assert provenance["packages"]["torch"] == metadata.version("torch")
    labels_csv = tmp_path / "data" / "synthetic_n120_seed0" / "exams.csv"
    assert provenance["dataset"]["label_files"][0]["sha256"] == hashlib.sha256(
        labels_csv.read_bytes()).hexdigest()
    assert len(provenance["dataset"]["tracing_files"]) == 2
    assert {p.name for p in (folder / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    history = pd.read_csv(folder / "history" / "metrics.csv")
    assert {"train_loss", "val_loss", "epoch"} <= set(history.columns)

    labels = pd.read_csv(tmp_path / "data" / "synthetic_n120_seed0" / "exams.csv")
    for split in ("val", "test"):
        predictions = pd.read_csv(folder / f"predictions_{split}.csv")
        assert list(predictions.columns) == ["exam_id", *(f"score_{n}" for n in LABELS),
                                             *(f"target_{n}" for n in LABELS)]
        assert predictions[[f"score_{n}" for n in LABELS]].stack().between(0, 1).all()
        joined = predictions.merge(labels, on="exam_id", validate="one_to_one")
        assert len(joined) == len(predictions)
        for name in LABELS:  # targets are the CSV labels of the same exam
            assert (joined[f"target_{name}"] == joined[name].astype(float)).all()

    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"}
    assert set(metrics["test"]) == {*LABELS, "macro"}
    assert set(metrics["test"]["AF"]) == {"auroc", "ap", "threshold", "precision", "recall",
                                          "specificity", "f1"}
    assert "macro" in result["stdout"] and "auroc" in result["stdout"]  # the printed table


def test_cfg_job_prints_resolved_overrides(tmp_path):
    result = run_in_process("ecgexp", tmp_path, "--cfg", "job", "model.dropout=0.5",
                            "trainer.max_epochs=3")
    assert result.returncode == 0, result.stderr
    assert "dropout: 0.5" in result.stdout and "max_epochs: 3" in result.stdout


def test_multirun_sweeps_a_model_option(tmp_path):
    result = run_in_process("ecgexp", tmp_path, "-m", "model.kernel_size=5,9", *QUICK_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    folders = run_folders(tmp_path / "outputs" / "abnormality" / "multiruns")
    assert len(folders) == 2
    kernels = sorted(int(next(line for line in (f / "config.yaml").read_text().splitlines()
                              if "kernel_size" in line).split(":")[1]) for f in folders)
    assert kernels == [5, 9]


@pytest.mark.parametrize("override, message", [
    ("model.dropuot=0.5", "dropuot"),
    ("task=abnormalty", "abnormality"),
    ("dataset=code15", "dataset.tracing_files"),  # no CODE-15% files in this folder
])
def test_bad_invocations_fail_with_the_key(tmp_path, override, message):
    result = run_in_process("ecgexp", tmp_path, "model=resnet1d_small", "loader.num_workers=0",
                            override)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
