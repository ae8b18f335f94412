"""Survival metrics against scikit-survival (the reference implementation of Uno's C, the
cumulative/dynamic AUROC and the IPCW Brier score; a test-only dependency), lifelines, and
toy cases computed by hand."""

import numpy as np
import pytest
from lifelines.utils import concordance_index
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
)
from sksurv.metrics import integrated_brier_score as sksurv_ibs
from sksurv.util import Surv

from ecgexp.evaluation import survival_metrics as sm

HORIZONS = [1.0, 2.0, 4.0]


def cohort(seed: int, n: int = 300):
    """Rounded times and risks (ties in both), about 40 % censored."""
    rng = np.random.default_rng(seed)
    time = np.round(rng.exponential(3, n), 1) + 0.1
    event = (rng.random(n) < 0.6).astype(int)
    risk = np.round(rng.normal(size=n) - 0.2 * time, 1)
    return time, event, risk, rng


@pytest.mark.parametrize("seed", range(4))
def test_concordance_indices_equal_scikit_survival_and_lifelines(seed):
    time, event, risk, _ = cohort(seed)
    y = Surv.from_arrays(event.astype(bool), time)
    assert sm.harrell_c(time, event, risk) == pytest.approx(
        concordance_index_censored(event.astype(bool), time, risk)[0], abs=1e-12)
    assert sm.uno_c(time, event, risk, tau=4) == pytest.approx(
        concordance_index_ipcw(y, y, risk, tau=4)[0], abs=1e-12)
    assert sm.uno_c(time, event, risk) == pytest.approx(
        concordance_index_ipcw(y, y, risk)[0], abs=1e-12)
    # lifelines takes predicted survival times (higher: later): the negated risk; without
    # tied times (it treats those differently) both definitions agree
    distinct = time + np.arange(len(time)) * 1e-7
    assert sm.harrell_c(distinct, event, risk) == pytest.approx(
        concordance_index(distinct, -risk, event), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_auroc_and_brier_equal_scikit_survival(seed):
    time, event, risk, rng = cohort(seed)
    survival = rng.random((len(time), len(HORIZONS)))
    y = Surv.from_arrays(event.astype(bool), time)
    np.testing.assert_allclose(sm.time_dependent_auroc(time, event, risk, HORIZONS),
                               cumulative_dynamic_auc(y, y, risk, HORIZONS)[0], atol=1e-12)
    np.testing.assert_allclose(sm.brier_scores(time, event, survival, HORIZONS),
                               brier_score(y, y, survival, HORIZONS)[1], atol=1e-12)
    assert sm.integrated_brier_score(time, event, survival, HORIZONS) == pytest.approx(
        sksurv_ibs(y, y, survival, HORIZONS), abs=1e-12)


def test_censoring_weights_from_another_split_equal_scikit_survival():
    train_time, train_event, _, _ = cohort(10, 500)
    time, event, risk, rng = cohort(11, 200)
    time = np.minimum(time, train_time.max() - 0.1)  # within the training follow-up
    survival = rng.random((len(time), len(HORIZONS)))
    train = Surv.from_arrays(train_event.astype(bool), train_time)
    test = Surv.from_arrays(event.astype(bool), time)
    source = (train_time, train_event)
    assert sm.uno_c(time, event, risk, 3.0, censoring_from=source) == pytest.approx(
        concordance_index_ipcw(train, test, risk, tau=3.0)[0], abs=1e-12)
    np.testing.assert_allclose(
        sm.time_dependent_auroc(time, event, risk, HORIZONS, censoring_from=source),
        cumulative_dynamic_auc(train, test, risk, HORIZONS)[0], atol=1e-12)
    np.testing.assert_allclose(
        sm.brier_scores(time, event, survival, HORIZONS, censoring_from=source),
        brier_score(train, test, survival, HORIZONS)[1], atol=1e-12)


def test_harrell_and_uno_by_hand():
    # times 1 (event), 2 (censored), 3 (event), 4 (event), 5 (censored); risks below.
    time, event = np.array([1, 2, 3, 4, 5.0]), np.array([1, 0, 1, 1, 0])
    risk = np.array([0.9, 0.5, 0.5, 0.7, 0.1])
    # comparable pairs (event first): (1,2) (1,3) (1,4) (1,5) (3,4) (3,5) (4,5): 7 pairs.
    # concordant: 1>.5, 1>.5, .9>.7, .9>.1 | 3: .5<.7 discordant, .5>.1 | 4: .7>.1 -> 6
    assert sm.harrell_c(time, event, risk) == pytest.approx(6 / 7)
    # censoring KM: G = 1 until 2, then 1 - 1/4 (4 at risk of censoring at 2) = 3/4; the
    # event at 5 would come later. Weights 1/G^2: exam 1 -> 1, exams 3 and 4 -> 16/9.
    w1, w3, w4 = 1.0, 16 / 9, 16 / 9
    numerator = w1 * 4 + w3 * 1 + w4 * 1
    denominator = w1 * 4 + w3 * 2 + w4 * 1
    assert sm.uno_c(time, event, risk) == pytest.approx(numerator / denominator)
    # a tie in risk counts a half: exam 3's risk equal to exam 4's
    tied = risk.copy()
    tied[2] = 0.7
    assert sm.harrell_c(time, event, tied) == pytest.approx((4 + 0.5 + 1 + 1) / 7)
    # Brier at t=2.5 with S = 0.5 everywhere: case exam 1 (1/G(1) = 1): 0.25; exam 2 is
    # censored before t: 0; controls 3, 4, 5 (1/G(2.5) = 4/3): 0.25 * 4/3 each
    brier = sm.brier_scores(time, event, np.full((5, 1), 0.5), [2.5])[0]
    assert brier == pytest.approx((0.25 + 3 * 0.25 * 4 / 3) / 5)


def test_perfect_reversed_and_undefined():
    time, event = np.array([1, 2, 3, 4.0]), np.array([1, 1, 1, 0])
    assert sm.harrell_c(time, event, -time) == 1.0
    assert sm.harrell_c(time, event, time) == 0.0
    assert sm.uno_c(time, event, -time) == 1.0
    assert np.isnan(sm.harrell_c(time, np.zeros(4), -time))  # no event: no comparable pair
    auroc = sm.time_dependent_auroc(time, event, -time, [0.5, 2.5, 10])
    assert np.isnan(auroc[0]) and auroc[1] == 1.0 and np.isnan(auroc[2])


def test_kaplan_meier_at_by_hand():
    time, event = np.array([1, 2, 2, 3, 5.0]), np.array([1, 0, 1, 1, 0])
    # S(1) = 4/5; at 2 one event of 4 at risk: 4/5 * 3/4 = 3/5; at 3 one of 2: 3/10
    np.testing.assert_allclose(sm.kaplan_meier_at(time, event, [0.5, 1, 2.5, 4]),
                               [1, 0.8, 0.6, 0.3])


@pytest.mark.parametrize("arguments, message", [
    (([1, 2], [1], [0.1, 0.2]), "time and event must be 1-D arrays of one length"),
    (([1, -2], [1, 0], [0.1, 0.2]), "times must be finite and non-negative"),
    (([1, 2], [1, 2], [0.1, 0.2]), r"events must be 0 \(censored\) or 1 \(event\)"),
    (([1, 2], [1, 0], [0.1]), "predictions for 1 exams, but 2 times"),
    (([1, 2], [1, 0], [0.1, np.nan]), "predictions contain NaN"),
])
def test_bad_inputs_are_one_line(arguments, message):
    with pytest.raises(ValueError, match=rf"^survival metrics: {message}"):
        sm.harrell_c(*arguments)


def test_large_cohorts_match_scikit_survival_without_a_pair_matrix():
    """20 000 exams (an n x n pair matrix would hold 4e8 cells)."""
    rng = np.random.default_rng(3)
    n = 20000
    time = np.round(rng.exponential(3, n), 2)
    event = rng.random(n) < 0.3
    risk = np.round(rng.normal(size=n) - 0.3 * time, 2)
    y = Surv.from_arrays(event, time)
    assert sm.harrell_c(time, event, risk) == pytest.approx(
        concordance_index_censored(event, time, risk)[0], abs=1e-12)
    assert sm.uno_c(time, event, risk, tau=5) == pytest.approx(
        concordance_index_ipcw(y, y, risk, tau=5)[0], abs=1e-12)
