"""Every task learns on synthetic data: the learning checks compare with trivial baselines
computed here from the training split (predicting the training mean) or with fixed
published-style floors (AUROC); and what a task fits on the training split (its split rule,
pos_weight) comes from that split."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import built_once
from omegaconf import open_dict

from ecgexp.data.build import build_datamodule
from ecgexp.data.synthetic import write_code15
from ecgexp.train import train

SMALL = ["model=resnet1d_small", "loader.num_workers=0", "callbacks.progress_bar=null",
         "logger=none"]

LEARNING_EXAMS = 1500


def learning_data(tmp_path_factory) -> Path:
    """One synthetic dataset of the learning tests, generated once for every worker (this
    file and test_survival_learning.py)."""
    return built_once(tmp_path_factory, "learning_data", lambda folder: write_code15(
        folder, n_exams=LEARNING_EXAMS, n_parts=2, seed=0) and folder)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return learning_data(tmp_path_factory)


def train_task(compose_train, synthetic_dir, tmp_path, task, *overrides,
               n_exams=LEARNING_EXAMS):
    cfg = compose_train(f"task={task}", *SMALL, f"dataset.directory={synthetic_dir}",
                        f"dataset.n_exams={n_exams}", *overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / task)
    return cfg, train(cfg), tmp_path / task


def baseline_mae(cfg, test: pd.DataFrame, target: str) -> float:
    """MAE on the test predictions of predicting the training split's mean."""
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    mean = float(datamodule.training_targets()[:, 0].mean())
    return float(np.abs(test[f"target_{target}"] - mean).mean())


@pytest.mark.slow
def test_chagas_learns_with_two_source_batches(compose_train, synthetic_dir, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "chagas",
                                   "trainer.max_epochs=12")
    assert metrics["test/chagas/auroc"] >= 0.75
    for rule in ("max_f1", "youden", "specificity_90"):
        assert 0 < metrics[f"test/{rule}/sensitivity"] <= 1
    assert 0 <= metrics["test/chagas/challenge_score"] <= 1
    table = pd.read_csv(run / "predictions_test.csv")
    assert list(table.columns) == ["exam_id", "score_chagas", "target_chagas"]


@pytest.mark.slow
def test_age_beats_the_training_mean(compose_train, synthetic_dir, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "age",
                                   "trainer.max_epochs=3")
    test = pd.read_csv(run / "predictions_test.csv")
    assert metrics["test/age/mae"] <= 0.8 * baseline_mae(cfg, test, "age")
    np.testing.assert_allclose(test.age_gap, test.predicted_age - test.target_age, atol=1e-4)
    statistics = json.loads((run / "training_statistics.json").read_text())
    weights = statistics["objective"]["sample_weights"]
    assert len(weights["values"]) == len(weights["weights"]) > 30


@pytest.mark.slow
def test_electrolyte_regression_beats_the_training_mean(compose_train, synthetic_dir, tmp_path):
    # 4 epochs: after 3 the MAE ratio was 0.73 to 0.80 by seed, at the bar (issue 28).
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "electrolyte",
                                   "trainer.max_epochs=4")
    test = pd.read_csv(run / "predictions_test.csv")
    assert metrics["test/potassium/mae"] <= 0.8 * baseline_mae(cfg, test, "potassium")
    assert metrics["test/hypokalaemia/auroc"] > 0.7


@pytest.mark.slow
def test_electrolyte_gaussian_intervals_are_calibrated(compose_train, synthetic_dir, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path,
                                   "electrolyte_gaussian", "trainer.max_epochs=3")
    assert 0.8 <= metrics["test/potassium/coverage_90"] <= 0.97
    test = pd.read_csv(run / "predictions_test.csv")
    assert (test.std_potassium > 0).all()
    assert metrics["test/potassium/mae"] < baseline_mae(cfg, test, "potassium")


@pytest.mark.slow
def test_af_risk_finds_current_af(compose_train, synthetic_dir, tmp_path):
    _, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "af_risk",
                                 "trainer.max_epochs=4")
    assert metrics["test/class2/auroc"] >= 0.9
    for name in ("auroc", "ap", "sensitivity", "ppv", "specificity", "f1"):
        assert f"test/class3_vs_1/{name}" in metrics
    test = pd.read_csv(run / "predictions_test.csv")
    assert set(test.target_exam_class) <= {1, 2, 3}
    np.testing.assert_allclose(test[["prob_class1", "prob_class2", "prob_class3"]].sum(axis=1),
                               1, rtol=1e-5)


def test_split_group_replaces_the_dataset_rule(compose_train, synthetic_dir):
    datamodule = build_datamodule(compose_train("task=age", "split=age_balanced",
                                                f"dataset.directory={synthetic_dir}"))
    datamodule.setup()
    table = datamodule.table
    assert (table.groupby("patient_id").split.nunique() == 1).all()
    n_patients = table.patient_id.nunique()
    assert table[table.split == "test"].patient_id.nunique() == int(0.15 * n_patients)
    assert table[table.split == "val"].patient_id.nunique() == int(0.05 * n_patients)


def test_pos_weight_auto_comes_from_the_training_split_and_reaches_the_checkpoint(
        compose_train, synthetic_dir, tmp_path):
    cfg, _, run = train_task(compose_train, synthetic_dir, tmp_path, "chagas",
                             "task.objective.pos_weight=auto", "trainer.max_epochs=1",
                             "+trainer.limit_train_batches=2")
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    training = datamodule.table[datamodule.table.split == "train"]
    expected = (training.chagas == 0).sum() / (training.chagas == 1).sum()
    statistics = json.loads((run / "training_statistics.json").read_text())
    assert statistics["objective"]["pos_weight"]["chagas"] == pytest.approx(expected)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["objective_state"]["pos_weight"]["chagas"] == pytest.approx(expected)

