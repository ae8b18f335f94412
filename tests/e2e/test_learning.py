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
from helpers.learning import HALF_LENGTHS, LEARNING_EXAMS, cohort_overrides, train_task
from helpers.runs import built_once

from ecgexp.data.build import build_datamodule
from ecgexp.data.synthetic import write_code15


def learning_data(tmp_path_factory) -> Path:
    """One synthetic dataset of the learning tests, generated once for every worker (this
    file and test_survival_learning.py)."""
    return built_once(tmp_path_factory, "learning_data", lambda folder: write_code15(
        folder, n_exams=LEARNING_EXAMS, n_parts=2, seed=0) and folder)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return learning_data(tmp_path_factory)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return cohort_overrides(tmp_path_factory)


def baseline_mae(cfg, test: pd.DataFrame, target: str) -> float:
    """MAE on the test predictions of predicting the training split's mean."""
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    mean = float(datamodule.training_targets()[:, 0].mean())
    return float(np.abs(test[f"target_{target}"] - mean).mean())


@pytest.mark.slow
def test_chagas_learns_with_two_source_batches(compose_train, synthetic_dir, cohort, tmp_path,
                                               margin):
    # Scored on the 2000-exam cohort (~200 positives): on the test split the AUROC was 0.776
    # to 0.838 by seed for models at 0.807 to 0.831 on the cohort (issue 28).
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "chagas",
                                   "trainer.max_epochs=12", *cohort)
    margin("cohort AUROC", metrics["cohort/chagas/auroc"], 0.75)
    assert metrics["cohort/chagas/auroc"] >= 0.75
    for rule in ("max_f1", "youden", "specificity_90"):
        assert 0 < metrics[f"test/{rule}/sensitivity"] <= 1
    assert 0 <= metrics["test/chagas/challenge_score"] <= 1
    table = pd.read_csv(run / "predictions_test.csv")
    assert list(table.columns) == ["exam_id", "score_chagas", "target_chagas"]


@pytest.mark.slow
def test_age_beats_the_training_mean(compose_train, synthetic_dir, tmp_path, margin):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "age",
                                   "trainer.max_epochs=3", *HALF_LENGTHS)
    test = pd.read_csv(run / "predictions_test.csv")
    margin("MAE", metrics["test/age/mae"], 0.8 * baseline_mae(cfg, test, "age"), higher=False)
    assert metrics["test/age/mae"] <= 0.8 * baseline_mae(cfg, test, "age")
    np.testing.assert_allclose(test.age_gap, test.predicted_age - test.target_age, atol=1e-4)
    statistics = json.loads((run / "training_statistics.json").read_text())
    weights = statistics["objective"]["sample_weights"]
    assert len(weights["values"]) == len(weights["weights"]) > 30


@pytest.mark.slow
def test_electrolyte_regression_beats_the_training_mean(compose_train, synthetic_dir, tmp_path,
                                                        margin):
    # On resnet1d_small, after 3 epochs the MAE ratio was 0.73 to 0.80 by seed, at the bar, and
    # 4 epochs left a 5.5 % margin; at half the lengths, 6 epochs left 18 % and 5 leave 15 %
    # (seeds 0-2, default and AVX2 kernels, issue 28).
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "electrolyte",
                                   "trainer.max_epochs=5", *HALF_LENGTHS)
    test = pd.read_csv(run / "predictions_test.csv")
    bar = 0.8 * baseline_mae(cfg, test, "potassium")
    margin("MAE", metrics["test/potassium/mae"], bar, higher=False)
    margin("hypokalaemia AUROC", metrics["test/hypokalaemia/auroc"], 0.7)
    assert metrics["test/potassium/mae"] <= bar
    assert metrics["test/hypokalaemia/auroc"] > 0.7


@pytest.mark.slow
def test_electrolyte_gaussian_intervals_are_calibrated(compose_train, synthetic_dir, cohort,
                                                       tmp_path, margin):
    """On the 2000-exam cohort: the 90 % intervals cover at least 80 % (not too narrow), and
    the predicted standard deviations are within a factor 1.5 of the errors (the root mean
    square of the standardised residuals, computed here, in [1/1.5, 1.5]: not too wide
    either). The coverage itself varied from 0.86 to 0.94 by seed and CPU kernel after 5
    epochs, and 0.88 to 0.96 on the test split after 3 (issue 28), so its old upper bar,
    0.97, sat on what the seed gave. After 4 epochs at half the lengths (seeds 0-2, default and
    AVX2 kernels): coverage 0.889 to 0.928 (margin 11 %), RMS 1.04 to 1.21 (19 %), MAE 16 %
    below the baseline."""
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path,
                                   "electrolyte_gaussian", "trainer.max_epochs=4",
                                   *HALF_LENGTHS, *cohort)
    margin("coverage", metrics["cohort/potassium/coverage_90"], 0.8)
    assert metrics["cohort/potassium/coverage_90"] >= 0.8
    external = pd.read_csv(run / "predictions_cohort.csv").dropna(
        subset=["target_potassium", "mean_potassium", "std_potassium"])
    assert len(external) > 1900
    z = (external.target_potassium - external.mean_potassium) / external.std_potassium
    rms = float(np.sqrt(np.mean(z ** 2)))
    margin("RMS of z", min(rms * 1.5, 1.5 / rms), 1.0)  # in [1/1.5, 1.5]: the nearer end
    assert 1 / 1.5 <= rms <= 1.5
    test = pd.read_csv(run / "predictions_test.csv")
    assert (test.std_potassium > 0).all()
    assert metrics["test/potassium/mae"] < baseline_mae(cfg, test, "potassium")


@pytest.mark.slow
def test_af_risk_finds_current_af(compose_train, synthetic_dir, tmp_path, margin):
    _, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "af_risk",
                                 "trainer.max_epochs=4")
    margin("current AF AUROC", metrics["test/class2/auroc"], 0.9)
    assert metrics["test/class2/auroc"] >= 0.9
    for name in ("auroc", "ap", "sensitivity", "ppv", "specificity", "f1"):
        assert f"test/class3_vs_1/{name}" in metrics
    test = pd.read_csv(run / "predictions_test.csv")
    assert set(test.target_exam_class) <= {1, 2, 3}
    np.testing.assert_allclose(test[["prob_class1", "prob_class2", "prob_class3"]].sum(axis=1),
                               1, rtol=1e-5)


def test_an_empty_validation_split_is_refused_unless_every_exam_trains(compose_train,
                                                                       synthetic_dir):
    overrides = ["task=age", f"dataset.directory={synthetic_dir}"]
    with pytest.raises(ValueError, match=r"the 'val' split of 'synthetic' is empty; .*split=all"):
        build_datamodule(compose_train(*overrides, "dataset.split.val_fraction=0")).setup()
    datamodule = build_datamodule(compose_train(*overrides, "split=all"))
    datamodule.setup()
    assert not datamodule.validation and set(datamodule.table.split) == {"train"}
    assert len(datamodule.table) == LEARNING_EXAMS


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

