"""Every task learns on synthetic data: the learning checks compare with trivial baselines
computed here from the training split (predicting the training mean) or with fixed
published-style floors (AUROC); and what a task fits on the training split (its split rule,
pos_weight) comes from that split."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import open_dict

from ecgexp.data.build import build_datamodule
from ecgexp.train import train

SMALL = ["model=resnet1d_small", "loader.num_workers=0", "callbacks.progress_bar=null",
         "logger=none"]

LEARNING_EXAMS = 1500


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    """One synthetic dataset shared by the learning tests (generated once)."""
    return tmp_path_factory.mktemp("data") / f"synthetic_n{LEARNING_EXAMS}_seed0"


def train_task(compose_train, synthetic_dir, tmp_path, task, *overrides):
    cfg = compose_train(f"task={task}", *SMALL, f"dataset.directory={synthetic_dir}",
                        f"dataset.n_exams={LEARNING_EXAMS}", *overrides)
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
                                   "trainer.max_epochs=4")
    test = pd.read_csv(run / "predictions_test.csv")
    assert metrics["test/age/mae"] <= 0.8 * baseline_mae(cfg, test, "age")
    np.testing.assert_allclose(test.age_gap, test.predicted_age - test.target_age, atol=1e-4)
    statistics = json.loads((run / "training_statistics.json").read_text())
    weights = statistics["objective"]["sample_weights"]
    assert len(weights["values"]) == len(weights["weights"]) > 30


@pytest.mark.slow
def test_electrolyte_regression_beats_the_training_mean(compose_train, synthetic_dir, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "electrolyte",
                                   "trainer.max_epochs=4")
    test = pd.read_csv(run / "predictions_test.csv")
    assert metrics["test/potassium/mae"] <= 0.8 * baseline_mae(cfg, test, "potassium")
    assert metrics["test/hypokalaemia/auroc"] > 0.7


@pytest.mark.slow
def test_electrolyte_gaussian_intervals_are_calibrated(compose_train, synthetic_dir, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path,
                                   "electrolyte_gaussian", "trainer.max_epochs=4")
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


# A larger synthetic cohort the survival models are tested on (external set: about 1280 first
# exams with about 400 deaths), so that the C-index ratio is not the noise of ~200 exams.
SURVIVAL_TEST = ["+dataset@test_datasets.cohort=synthetic", "test_datasets.cohort.n_exams=2000",
                 "test_datasets.cohort.synthesis_seed=7"]


def survival_check(cfg, run):
    """The test cohort's predictions joined with its exam table, with the true log-hazard of
    the generator (``synthetic.log_hazard`` of age, AF and the bundle-branch blocks), and
    the C-index (lifelines) of the model and of the true log-hazard."""
    from lifelines.utils import concordance_index

    from ecgexp.data.synthetic import log_hazard

    predictions = pd.read_csv(run / "predictions_cohort.csv").dropna(subset=["target_timey"])
    exams = pd.read_csv(f"{cfg.test_datasets.cohort.directory}/exams.csv")
    cohort = predictions.merge(exams, on="exam_id", validate="one_to_one")
    time, death = cohort.target_timey.to_numpy(), cohort.target_death.to_numpy()
    assert (cohort.timey.to_numpy() == time).all() and len(cohort) > 1000
    eta = log_hazard(cohort.age, cohort.AF, cohort.LBBB, cohort.RBBB)
    model_c = concordance_index(time, -cohort.risk_score.to_numpy(), death)
    true_c = concordance_index(time, -eta, death)
    return cohort, model_c, true_c


@pytest.mark.slow
def test_cox_survival_reaches_ninety_percent_of_the_true_hazard_c_index(
        compose_train, synthetic_dir, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "survival",
                                   "trainer.max_epochs=8", *SURVIVAL_TEST)
    cohort, model_c, true_c = survival_check(cfg, run)
    assert model_c >= 0.9 * true_c, (model_c, true_c)
    assert metrics["cohort/death/harrell_c"] == pytest.approx(model_c, abs=0.01)  # time ties


@pytest.mark.slow
def test_discrete_time_survival_learns_and_its_curves_are_calibrated(
        compose_train, synthetic_dir, tmp_path):
    """C-index as the Cox model's; and on the held-out test split (the population the model
    was trained on: another synthetic sample differs from it by chance, by about 0.04 in
    5-year survival at these sizes) the mean predicted survival at each horizon lies in the 95 %
    bootstrap interval of the Kaplan–Meier estimate (lifelines) of the same exams."""
    from lifelines import KaplanMeierFitter

    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "survival_discrete",
                                   "trainer.max_epochs=8", *SURVIVAL_TEST)
    _, model_c, true_c = survival_check(cfg, run)
    assert model_c >= 0.9 * true_c, (model_c, true_c)
    cohort = pd.read_csv(run / "predictions_test.csv")
    horizons = list(cfg.task.objective.horizons)
    rng = np.random.default_rng(0)
    resamples = []
    for _ in range(200):
        sample = cohort.iloc[rng.integers(len(cohort), size=len(cohort))]
        fitter = KaplanMeierFitter().fit(sample.target_timey, sample.target_death)
        resamples.append(fitter.survival_function_at_times(horizons).to_numpy())
    lower, upper = np.percentile(resamples, [2.5, 97.5], axis=0)
    predicted = cohort[[f"survival_at_{h:g}" for h in horizons]].mean().to_numpy()
    assert ((lower <= predicted) & (predicted <= upper)).all(), (lower, predicted, upper)
    assert metrics["cohort/death/ibs"] < 0.25  # a constant 0.5 would score 0.25
