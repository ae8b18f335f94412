"""The survival tasks learn on synthetic data whose hazard is known: the C-index of a trained
model against that of the generator's true log-hazard on a larger synthetic cohort, and the
discrete-time model's survival curves against Kaplan–Meier (lifelines). Apart from
test_learning.py so that the two files run on both workers."""

import numpy as np
import pandas as pd
import pytest
from conftest import built_once
from test_learning import learning_data, train_task

from ecgexp.data.synthetic import write_code15


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return learning_data(tmp_path_factory)


@pytest.fixture(scope="module")
def survival_test(tmp_path_factory):
    """The overrides adding a larger synthetic cohort, generated once, as the external set
    ``cohort`` (about 1280 first exams and 400 deaths: a C-index ratio that is not the noise
    of the ~200 exams of the test split)."""
    cohort = built_once(tmp_path_factory, "survival_cohort", lambda folder: write_code15(
        folder, n_exams=2000, n_parts=2, seed=7) and folder)
    return ["+dataset@test_datasets.cohort=synthetic", "test_datasets.cohort.n_exams=2000",
            "test_datasets.cohort.synthesis_seed=7", f"test_datasets.cohort.directory={cohort}"]


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
        compose_train, synthetic_dir, survival_test, tmp_path):
    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "survival",
                                   "trainer.max_epochs=6", *survival_test)
    cohort, model_c, true_c = survival_check(cfg, run)
    assert model_c >= 0.9 * true_c, (model_c, true_c)
    assert metrics["cohort/death/harrell_c"] == pytest.approx(model_c, abs=0.01)  # time ties


@pytest.mark.slow
def test_discrete_time_survival_learns_and_its_curves_are_calibrated(
        compose_train, synthetic_dir, survival_test, tmp_path):
    """C-index as the Cox model's; and on the held-out test split (the population the model
    was trained on: another synthetic sample differs from it by chance, by about 0.04 in
    5-year survival at these sizes) the mean predicted survival at each horizon lies in the 95 %
    bootstrap interval of the Kaplan–Meier estimate (lifelines) of the same exams."""
    from lifelines import KaplanMeierFitter

    cfg, metrics, run = train_task(compose_train, synthetic_dir, tmp_path, "survival_discrete",
                                   "trainer.max_epochs=6", *survival_test)
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
