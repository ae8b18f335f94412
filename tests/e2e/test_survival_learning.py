"""The survival tasks learn on synthetic data whose hazard is known: the C-index of a trained
model against that of the generator's true log-hazard on a larger synthetic cohort, and the
discrete-time model's survival curves against Kaplan–Meier (lifelines). Apart from
test_learning.py so that the two files run on both workers."""

import numpy as np
import pandas as pd
import pytest
from helpers.learning import HALF_LENGTHS, cohort_overrides, train_task
from helpers.runs import built_once

from ecgexp.data.synthetic import write_code15


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    """The training set of the survival checks (below), generated once."""
    return built_once(tmp_path_factory, "survival_data", lambda folder: write_code15(
        folder, n_exams=SURVIVAL_EXAMS, n_parts=2, seed=0) and folder)


@pytest.fixture(scope="module")
def survival_test(tmp_path_factory):
    """The larger synthetic cohort as the external set ``cohort`` (about 1280 first exams and
    400 deaths: a C-index ratio that is not the noise of the ~200 exams of the test split)."""
    return cohort_overrides(tmp_path_factory)


# The true log-hazard is linear in the first exam's age, AF and bundle-branch blocks. AF and the
# blocks are plain on the ECG; age is not (PR +0.8 ms and QRS/T amplitudes -1 % per year): the
# hazard of AF and the blocks alone has C 0.665 on the cohort, the old bar (0.9 x 0.734) itself,
# so an ECG-only model passed or failed by how much age it picked up (0.657 to 0.673 by CPU
# kernel, 0.59 to 0.67 by seed). The ~630 training exams of the 1500-exam learning set (only
# first exams carry a follow-up) were over-fitted from the third epoch on, and the checkpoint
# was chosen by the validation loss, which for Cox is a partial likelihood over each batch of
# 32 as the risk set: noisy, so an early epoch won. So the survival checks train on 3000 exams
# (~1250 with a follow-up in training) for 3 epochs, with dropout 0.5; the network is given the
# age (`metadata_columns`, as in the published age/sex fusion), so the check asks whether the
# objective recovers the whole known hazard; and the checkpoint is the best validation C-index
# (over the whole split); the network is resnet1d_small at half its lengths (HALF_LENGTHS).
# With the split stratified by the event (issue 29) the best validation C-index came within
# 3 epochs at every seed and CPU kernel tried: the smallest margins were Cox 9 %, discrete-time
# 9.6 % (C-index), 36 % (IBS) and 7.8 % (Kaplan-Meier), as at 4 epochs (issue 28's note).
SURVIVAL_EXAMS = 3000
SURVIVAL_OVERRIDES = ["trainer.max_epochs=3", "task.metadata_columns=[age]",
                      "+task.standardise_metadata=[age]", "model.dropout=0.5",
                      "task.monitor=val_cindex", "task.monitor_mode=max", *HALF_LENGTHS]


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
        compose_train, synthetic_dir, survival_test, tmp_path, margin):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "survival",
                                   *SURVIVAL_OVERRIDES, *survival_test,
                                   n_exams=SURVIVAL_EXAMS)
    cohort, model_c, true_c = survival_check(cfg, run)
    margin("C-index", model_c, 0.9 * true_c)
    assert model_c >= 0.9 * true_c, (model_c, true_c)
    assert metrics["cohort/death/harrell_c"] == pytest.approx(model_c, abs=0.01)  # time ties


@pytest.mark.slow
def test_discrete_time_survival_learns_and_its_curves_follow_kaplan_meier(
        compose_train, synthetic_dir, survival_test, tmp_path, margin):
    """C-index as the Cox model's; and on the held-out test split (the population the model
    was trained on: another synthetic sample differs from it by chance) the mean predicted
    survival falls with the horizon and lies within 0.15 of the Kaplan–Meier estimate
    (lifelines) of the same exams. Closer agreement, within the KM's own 95 % interval (about
    ±0.05 on these ~380 exams), needs a converged model: after 4 CPU epochs the mean predicted
    5-year survival was off by -0.07 to +0.1 depending on the seed and the epoch chosen
    (checked in issue 28). A constant hazard of 0.5 per year would be 0.5 to 0.6 off."""
    from lifelines import KaplanMeierFitter

    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "survival_discrete",
                                   *SURVIVAL_OVERRIDES, *survival_test,
                                   n_exams=SURVIVAL_EXAMS)
    _, model_c, true_c = survival_check(cfg, run)
    margin("C-index", model_c, 0.9 * true_c)
    assert model_c >= 0.9 * true_c, (model_c, true_c)
    cohort = pd.read_csv(run / "predictions_test.csv")
    horizons = list(cfg.task.objective.horizons)
    kaplan_meier = KaplanMeierFitter().fit(cohort.target_timey, cohort.target_death)
    expected = kaplan_meier.survival_function_at_times(horizons).to_numpy()
    predicted = cohort[[f"survival_at_{h:g}" for h in horizons]].mean().to_numpy()
    margin("KM distance", float(np.abs(predicted - expected).max()), 0.15, higher=False)
    margin("IBS", metrics["cohort/death/ibs"], 0.25, higher=False)
    assert (np.diff(predicted) < 0).all() and (np.abs(predicted - expected) <= 0.15).all(), (
        expected, predicted)
    assert metrics["cohort/death/ibs"] < 0.25  # a constant 0.5 would score 0.25
