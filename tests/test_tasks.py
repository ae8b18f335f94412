"""Every task trains the common network through Hydra compose and learns on synthetic data.

The learning checks compare with trivial baselines computed here from the training split
(predicting the training mean) or with fixed published-style floors (AUROC).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from ecgexp.data.build import build_datamodule
from ecgexp.models.weights import build_model
from ecgexp.train import train

TASKS = ["abnormality", "chagas", "age", "electrolyte", "electrolyte_classification",
         "electrolyte_ordinal", "electrolyte_gaussian", "af_risk"]
SMALL = ["model=resnet1d_small", "loader.num_workers=0", "callbacks.progress_bar=null",
         "logger=none"]


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    """One 3000-exam synthetic dataset shared by the learning tests (generated once)."""
    return tmp_path_factory.mktemp("data") / "synthetic_n3000_seed0"


def train_task(compose_train, synthetic_dir, tmp_path, task, *overrides):
    cfg = compose_train(f"task={task}", *SMALL, f"dataset.directory={synthetic_dir}",
                        *overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / task)
    return cfg, train(cfg), tmp_path / task


def training_mean(cfg) -> float:
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    return float(datamodule.training_targets()[:, 0].mean())


@pytest.mark.parametrize("task", TASKS)
def test_network_and_objective_agree_on_every_task(compose_train, task):
    """The composed model's outputs feed the objective's loss and prediction columns."""
    cfg = compose_train(f"task={task}", "model=resnet1d_small")
    objective = instantiate(cfg.task.objective)
    assert cfg.task.n_outputs == objective.n_outputs
    net = build_model(cfg.model)
    tracings = torch.randn(4, 12, 4096)
    metadata = torch.randn(4, cfg.model.n_metadata) if cfg.model.n_metadata else None
    outputs = net(tracings) if metadata is None else net(tracings, metadata)
    targets = {"abnormality": torch.ones(4, 6), "af_risk": torch.tensor([[1.], [2.], [3.], [1.]])
               }.get(task, torch.tensor([[1.], [0.], [4.2], [5.8]]))
    objective.fit(targets.numpy())
    assert torch.isfinite(objective.loss(outputs, targets))
    assert objective.activation(outputs).shape == (4, len(objective.prediction_columns))


def test_cfg_job_works_for_every_task(tmp_path):
    script = Path(sys.executable).parent / "ecgexp"
    env = {**os.environ, "ECGEXP_DATA_DIR": str(tmp_path / "data")}
    for task in TASKS:
        result = subprocess.run([str(script), f"task={task}", "--cfg", "job"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert f"name: {task}" in result.stdout


def test_n_outputs_mismatch_names_the_key(compose_train, synthetic_dir, tmp_path):
    with pytest.raises(ValueError, match=r"task.n_outputs=3"):
        train_task(compose_train, synthetic_dir, tmp_path, "electrolyte_classification",
                   "task.objective.buckets=[3.5,5.5]")


def test_chagas_learns_with_two_source_batches(compose_train, synthetic_dir, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "chagas",
                                   "trainer.max_epochs=12")
    assert metrics["test/chagas/auroc"] >= 0.75
    for rule in ("max_f1", "youden", "specificity_90"):
        assert 0 < metrics[f"test/{rule}/sensitivity"] <= 1
    assert 0 <= metrics["test/chagas/challenge_score"] <= 1
    table = pd.read_csv(run / "predictions_test.csv")
    assert list(table.columns) == ["exam_id", "score_chagas", "target_chagas"]


def test_age_beats_the_training_mean(compose_train, synthetic_dir, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "age",
                                   "trainer.max_epochs=8")
    test = pd.read_csv(run / "predictions_test.csv")
    baseline_mae = np.abs(test.target_age - training_mean(cfg)).mean()
    assert metrics["test/age/mae"] <= 0.8 * baseline_mae
    np.testing.assert_allclose(test.age_gap, test.predicted_age - test.target_age, atol=1e-4)
    statistics = json.loads((run / "training_statistics.json").read_text())
    weights = statistics["objective"]["sample_weights"]
    assert len(weights["values"]) == len(weights["weights"]) > 30


def test_electrolyte_regression_beats_the_training_mean(compose_train, synthetic_dir, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "electrolyte",
                                   "trainer.max_epochs=6")
    test = pd.read_csv(run / "predictions_test.csv")
    baseline_mae = np.abs(test.target_potassium - training_mean(cfg)).mean()
    assert metrics["test/potassium/mae"] <= 0.8 * baseline_mae
    assert metrics["test/hypokalaemia/auroc"] > 0.7


def test_electrolyte_gaussian_intervals_are_calibrated(compose_train, synthetic_dir, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path,
                                   "electrolyte_gaussian", "trainer.max_epochs=10")
    assert 0.8 <= metrics["test/potassium/coverage_90"] <= 0.97
    test = pd.read_csv(run / "predictions_test.csv")
    assert (test.std_potassium > 0).all()
    baseline_mae = np.abs(test.target_potassium - training_mean(cfg)).mean()
    assert metrics["test/potassium/mae"] < baseline_mae


@pytest.mark.parametrize("task,columns", [
    ("electrolyte_classification", ["predicted_potassium", *(f"prob_bucket{k}" for k in range(6))]),
    ("electrolyte_ordinal", ["predicted_potassium", *(f"prob_above{k}" for k in range(5))]),
])
def test_bucket_variants_write_values_in_mmol(compose_train, synthetic_dir, tmp_path, task,
                                              columns):
    _, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, task,
                                 "trainer.max_epochs=1", "+trainer.limit_train_batches=5")
    test = pd.read_csv(run / "predictions_test.csv")
    assert list(test.columns) == ["exam_id", *columns, "target_potassium"]
    assert set(test.predicted_potassium) <= {3.5, 3.75, 4.25, 4.75, 5.25, 5.5}
    assert np.isfinite(metrics["test/potassium/mae"])


def test_electrolyte_metadata_fusion_trains(compose_train, synthetic_dir, tmp_path):
    _, metrics, run = train_task(
        compose_train, synthetic_dir, tmp_path, "electrolyte", "trainer.max_epochs=1",
        "+trainer.limit_train_batches=3", "task.metadata_columns=[age,is_male]",
        "task.standardise_metadata=[age]", "preprocessing=eight_leads")
    statistics = json.loads((run / "training_statistics.json").read_text())
    assert set(statistics["metadata"]) == {"age"}
    assert 35 < statistics["metadata"]["age"]["mean"] < 70
    assert np.isfinite(metrics["test/potassium/mae"])


def test_af_risk_finds_current_af(compose_train, synthetic_dir, tmp_path):
    _, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "af_risk",
                                 "trainer.max_epochs=6")
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
