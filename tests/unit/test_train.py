"""``train(cfg)`` in-process on the composed config: reproducibility, fast_dev_run, W&B."""

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers.configs import QUARTER_LENGTHS
from omegaconf import open_dict

from ecgexp.train import train

TINY = ["experiment=demo", QUARTER_LENGTHS, "dataset.n_exams=120", "trainer.max_epochs=1",
        "+trainer.limit_train_batches=3", "loader.num_workers=0", "loader.batch_size=16",
        "callbacks.progress_bar=null", "dataset.split.val_fraction=0.3",
        "dataset.split.test_fraction=0.3"]


def train_into(cfg, folder: Path) -> dict:
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    return train(cfg)


def test_same_config_gives_same_predictions_and_metrics(compose_train, tmp_path):
    first = train_into(compose_train(*TINY), tmp_path / "first")
    second = train_into(compose_train(*TINY), tmp_path / "second")
    assert first == second
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "first" / "predictions_test.csv"),
                                  pd.read_csv(tmp_path / "second" / "predictions_test.csv"))
    other_seed = train_into(compose_train(*TINY, "seed=1"), tmp_path / "other")
    assert other_seed != first


def test_fast_dev_run_predicts_without_a_best_checkpoint(compose_train, tmp_path):
    metrics = train_into(compose_train(*TINY, "+trainer.fast_dev_run=true"), tmp_path / "run")
    assert "test/macro/auroc" in metrics
    assert not (tmp_path / "run" / "checkpoints" / "best.ckpt").exists()  # last weights used
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["test"]["macro"]["f1"] == pytest.approx(metrics["test/macro/f1"], nan_ok=True)
