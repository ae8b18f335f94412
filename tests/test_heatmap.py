"""``ecgexp task=heatmap``: heatmaps of every task's checkpoint through the main entry point."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from omegaconf import open_dict

from ecgexp.cli import main
from ecgexp.heatmap import extract_heatmaps
from ecgexp.train import train


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data") / "synthetic_n400_seed0"


def tiny_run(compose_train, synthetic_dir, folder: Path, task: str) -> Path:
    cfg = compose_train(f"task={task}", "model=resnet1d_small", "dataset.n_exams=400",
                        f"dataset.directory={synthetic_dir}", "trainer.max_epochs=1",
                        "+trainer.limit_train_batches=2", "loader.num_workers=0",
                        "callbacks.progress_bar=null", "logger=none")
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    train(cfg)
    return folder


def heatmap_config(compose_train, synthetic_dir, run: Path, out: Path, *overrides):
    cfg = compose_train("task=heatmap", f"ckpt={run if run is not None else 'null'}",
                        f"dataset.directory={synthetic_dir}",
                        "dataset.n_exams=400", "task.figures.max_exams=2", *overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


@pytest.mark.parametrize("task,target,method", [
    ("abnormality", "AF", "gradcam"),
    ("chagas", "chagas", "saliency"),
    ("age", "0", "integrated_gradients"),
    ("electrolyte_gaussian", "1", "gradcam"),  # the log-variance output
    ("electrolyte_ordinal", "3", "guided_backprop"),
    ("af_risk", "2", "gradcam"),
])
def test_every_task_checkpoint_gives_heatmaps(compose_train, synthetic_dir, tmp_path, task,
                                              target, method):
    run = tiny_run(compose_train, synthetic_dir, tmp_path / "run", task)
    cfg = heatmap_config(compose_train, synthetic_dir, run, tmp_path / "heatmaps",
                         f"task.target={target}", f"task.method={method}",
                         "task.select.top_k=3", "task.select.bottom_k=2",
                         "task.layer=resblock1d_1.conv1")
    summary = main.__wrapped__(cfg)
    assert summary["exams"] == 5
    with h5py.File(tmp_path / "heatmaps" / "heatmaps.h5", "r") as handle:
        maps, scores = handle["heatmaps"][:], handle["score"][:]
        exam_ids = handle["exam_id"][:]
        assert maps.shape == (5, 12, 4096) and maps.dtype == np.float32
        assert handle.attrs["method"] == method
    assert np.isfinite(maps).all()
    assert list(scores[:3]) == sorted(scores[:3], reverse=True)  # top 3, highest first
    assert scores[:3].min() >= scores[3:].max()  # then the bottom 2
    test_ids = pd.read_csv(run / "predictions_test.csv").exam_id
    assert set(exam_ids) <= set(test_ids)
    if method == "gradcam":
        assert maps.min() >= 0 and maps.max() <= 1
        np.testing.assert_array_equal(maps[:, 0], maps[:, 5])  # one time map for every lead
    figures = sorted((tmp_path / "heatmaps" / "figures").glob("*.png"))
    assert len(figures) == 2
    image = imread(figures[0])
    assert image.shape[0] > 400 and image.std() > 0


def test_explicit_exam_ids_and_only_positives(compose_train, synthetic_dir, tmp_path):
    run = tiny_run(compose_train, synthetic_dir, tmp_path / "run", "abnormality")
    test = pd.read_csv(run / "predictions_test.csv")
    wanted = [int(test.exam_id[4]), int(test.exam_id[1])]
    cfg = heatmap_config(compose_train, synthetic_dir, run, tmp_path / "ids",
                         f"task.select.exam_ids=[{wanted[0]},{wanted[1]}]")
    extract_heatmaps(cfg)
    with h5py.File(tmp_path / "ids" / "heatmaps.h5", "r") as handle:
        assert list(handle["exam_id"][:]) == wanted
    cfg = heatmap_config(compose_train, synthetic_dir, run, tmp_path / "positives",
                         "task.target=RBBB", "task.select.only_positives=true")
    extract_heatmaps(cfg)
    with h5py.File(tmp_path / "positives" / "heatmaps.h5", "r") as handle:
        chosen = set(handle["exam_id"][:])
    assert chosen == set(test.exam_id[test.target_RBBB == 1])


def test_bad_inputs_name_the_keys(compose_train, synthetic_dir, tmp_path):
    with pytest.raises(ValueError, match="ckpt: give the run folder"):
        extract_heatmaps(heatmap_config(compose_train, synthetic_dir, None, tmp_path / "x"))
    with pytest.raises(ValueError, match="ckpt: no run folder"):
        extract_heatmaps(heatmap_config(compose_train, synthetic_dir, tmp_path / "nope",
                                        tmp_path / "x"))
    run = tiny_run(compose_train, synthetic_dir, tmp_path / "run", "abnormality")
    with pytest.raises(ValueError, match="task.target"):
        extract_heatmaps(heatmap_config(compose_train, synthetic_dir, run, tmp_path / "x",
                                        "task.target=nothing"))
    with pytest.raises(ValueError, match="task.method"):
        extract_heatmaps(heatmap_config(compose_train, synthetic_dir, run, tmp_path / "x",
                                        "task.method=occlusion"))


def test_heatmap_is_one_override_on_the_cli(compose_train, synthetic_dir, tmp_path):
    run = tiny_run(compose_train, synthetic_dir, tmp_path / "run", "chagas")
    script = Path(sys.executable).parent / "ecgexp"
    env = {**os.environ, "WANDB_MODE": "offline"}
    result = subprocess.run(
        [str(script), "task=heatmap", f"ckpt={run / 'checkpoints' / 'last.ckpt'}",
         "task.select.top_k=2", "task.figures.formats=[png,pdf]",
         f"hydra.run.dir={tmp_path / 'cli'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "cli" / "heatmaps.h5").is_file()
    assert len(list((tmp_path / "cli" / "figures").glob("*.pdf"))) == 2
