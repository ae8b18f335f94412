"""Survival metrics against independent references: scikit-survival (a test-only dependency),
lifelines, toy cases computed by hand, and an exact 2-D histogram count on 50 000 exams."""

import tracemalloc

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
)
from sksurv.metrics import integrated_brier_score as sksurv_ibs
from sksurv.nonparametric import CensoringDistributionEstimator, SurvivalFunctionEstimator
from sksurv.util import Surv

from ecgexp.metrics import survival as sm

HORIZONS = [1.0, 2.0, 4.0]
SEEDS = range(4)


def cohort(seed: int, n: int = 300):
    """Times and risks rounded to 0.1 (many ties in both), 30-50 % censored."""
    rng = np.random.default_rng(seed)
    time = np.round(rng.exponential(3, n), 1) + 0.1
    event = (rng.random(n) < rng.uniform(0.5, 0.7)).astype(int)
    risk = np.round(rng.normal(size=n) - 0.2 * time, 1)
    return time, event, risk, rng


def surv(time, event):
    return Surv.from_arrays(np.asarray(event, dtype=bool), time)


# --- against scikit-survival and lifelines --------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_censoring_survival_equals_scikit_survival(seed):
    time, event, _, _ = cohort(seed)
    reference = CensoringDistributionEstimator().fit(surv(time, event))
    # at every observed time (ties between events and censorings) and between them
    at = np.r_[np.unique(time), np.linspace(0, time.max(), 57)]
    np.testing.assert_allclose(sm.censoring_survival(time, event)(at),
                               reference.predict_proba(at), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_kaplan_meier_equals_lifelines_and_scikit_survival(seed):
    time, event, _, _ = cohort(seed)
    at = np.r_[0.05, np.unique(time)[::7], 3.33]
    ours = sm.kaplan_meier_at(time, event, at)
    lifelines = KaplanMeierFitter().fit(time, event).survival_function_at_times(at)
    np.testing.assert_allclose(ours, lifelines.to_numpy(), rtol=0, atol=1e-12)
    sksurv = SurvivalFunctionEstimator().fit(surv(time, event)).predict_proba(at)
    np.testing.assert_allclose(ours, sksurv, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_harrell_c_equals_scikit_survival_and_lifelines(seed):
    time, event, risk, _ = cohort(seed)
    expected = concordance_index_censored(event.astype(bool), time, risk)[0]
    assert sm.harrell_c(time, event, risk) == pytest.approx(expected, abs=1e-12)
    assert sm.harrell_c(time, event.astype(bool), risk) == pytest.approx(expected, abs=1e-12)
    # lifelines takes predicted survival times (higher: later), i.e. the negated risk; it
    # treats tied times as scikit-survival does
    assert sm.harrell_c(time, event, risk) == pytest.approx(
        concordance_index(time, -risk, event), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_uno_c_equals_scikit_survival(seed):
    time, event, risk, _ = cohort(seed)
    y = surv(time, event)
    for tau in (None, 1.0, 4.0):
        assert sm.uno_c(time, event, risk, tau=tau) == pytest.approx(
            concordance_index_ipcw(y, y, risk, tau=tau)[0], abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_auroc_brier_and_integrated_brier_equal_scikit_survival(seed):
    time, event, risk, rng = cohort(seed)
    survival = rng.random((len(time), len(HORIZONS)))
    y = surv(time, event)
    np.testing.assert_allclose(sm.time_dependent_auroc(time, event, risk, HORIZONS),
                               cumulative_dynamic_auc(y, y, risk, HORIZONS)[0], atol=1e-12)
    np.testing.assert_allclose(sm.brier_scores(time, event, survival, HORIZONS),
                               brier_score(y, y, survival, HORIZONS)[1], atol=1e-12)
    assert sm.integrated_brier_score(time, event, survival, HORIZONS) == pytest.approx(
        sksurv_ibs(y, y, survival, HORIZONS), abs=1e-12)


def test_censoring_from_another_split_equals_scikit_survival():
    train_time, train_event, _, _ = cohort(10, 500)
    time, event, risk, rng = cohort(11, 2000)
    time = np.minimum(time, train_time.max() - 0.05)  # scikit-survival: within the follow-up
    survival = rng.random((len(time), len(HORIZONS)))
    train, test, source = surv(train_time, train_event), surv(time, event), (train_time,
                                                                             train_event)
    assert sm.uno_c(time, event, risk, 3.0, censoring_from=source) == pytest.approx(
        concordance_index_ipcw(train, test, risk, tau=3.0)[0], abs=1e-12)
    np.testing.assert_allclose(
        sm.time_dependent_auroc(time, event, risk, HORIZONS, censoring_from=source),
        cumulative_dynamic_auc(train, test, risk, HORIZONS)[0], atol=1e-12)
    np.testing.assert_allclose(
        sm.brier_scores(time, event, survival, HORIZONS, censoring_from=source),
        brier_score(train, test, survival, HORIZONS)[1], atol=1e-12)
    assert sm.integrated_brier_score(
        time, event, survival, HORIZONS, censoring_from=source) == pytest.approx(
        sksurv_ibs(train, test, survival, HORIZONS), abs=1e-12)


# --- by hand ---------------------------------------------------------------------------------

TOY_TIME, TOY_EVENT = np.array([1, 2, 3, 4, 5.0]), np.array([1, 0, 1, 1, 0])
TOY_RISK = np.array([0.9, 0.5, 0.5, 0.7, 0.1])


def test_censoring_survival_by_hand():
    # censoring at 2: 4 exams followed, 1 censored -> G = 3/4; at 5: 1 followed, 1 censored
    # -> G = 0 (and 0 after it)
    G = sm.censoring_survival(TOY_TIME, TOY_EVENT)
    np.testing.assert_allclose(G([0, 1, 1.99, 2, 4.5, 5, 9]), [1, 1, 1, 0.75, 0.75, 0, 0])
    # an event and a censoring at 2: the event leaves first, 1 of 3 at risk of censoring
    # is censored -> G(2) = 2/3; after the last time (a censoring) G stays at its last value
    G = sm.censoring_survival([1, 2, 2, 3, 4], [0, 1, 0, 1, 1])
    np.testing.assert_allclose(G([0.5, 1, 2, 3, 4, 10]), [1, 0.8, 0.8 * 2 / 3, 0.8 * 2 / 3,
                                                         0.8 * 2 / 3, 0.8 * 2 / 3])


def test_kaplan_meier_at_by_hand():
    time, event = np.array([1, 2, 2, 3, 5.0]), np.array([1, 0, 1, 1, 0])
    # S(1) = 4/5; at 2 one event of 4 followed: 4/5 * 3/4 = 3/5; at 3 one of 2: 3/10; the
    # censoring at 5 leaves S at 3/10 after it
    np.testing.assert_allclose(sm.kaplan_meier_at(time, event, [0.5, 1, 2.5, 4, 7]),
                               [1, 0.8, 0.6, 0.3, 0.3])


def test_harrell_c_by_hand():
    # comparable pairs (event first): (1,2) (1,3) (1,4) (1,5) (3,4) (3,5) (4,5): 7 pairs.
    # concordant: .9 > .5, .5, .7, .1 (4) | exam 3: .5 < .7 no, .5 > .1 yes | .7 > .1 -> 6
    assert sm.harrell_c(TOY_TIME, TOY_EVENT, TOY_RISK) == pytest.approx(6 / 7)
    # exam 3's risk equal to exam 4's: that pair counts 1/2
    tied = np.array([0.9, 0.5, 0.7, 0.7, 0.1])
    assert sm.harrell_c(TOY_TIME, TOY_EVENT, tied) == pytest.approx((4 + 0.5 + 1 + 1) / 7)
    # tied times: two events at 2 are not comparable, an event and a censoring at 2 are:
    # pairs (1,3) .8>.5 yes, (1,4) .8>.1 yes, (2,3) .3<.5 no, (2,4) .3>.1 yes -> 3 of 4
    assert sm.harrell_c([2, 2, 2, 3], [1, 1, 0, 1], [0.8, 0.3, 0.5, 0.1]) == pytest.approx(3 / 4)


def test_uno_c_by_hand():
    # G (test_censoring_survival_by_hand): G(1) = 1, G(3) = G(4) = 3/4, so weights 1/G^2:
    # exam 1 -> 1, exams 3 and 4 -> 16/9; pairs as in test_harrell_c_by_hand
    w1, w3, w4 = 1.0, 16 / 9, 16 / 9
    numerator = w1 * 4 + w3 * 1 + w4 * 1
    denominator = w1 * 4 + w3 * 2 + w4 * 1
    assert sm.uno_c(TOY_TIME, TOY_EVENT, TOY_RISK) == pytest.approx(numerator / denominator)
    # tau = 3.5: exam 4's pairs are left out -> (4 + 16/9) / (4 + 2 * 16/9)
    assert sm.uno_c(TOY_TIME, TOY_EVENT, TOY_RISK, tau=3.5) == pytest.approx(
        (4 + 16 / 9) / (4 + 2 * 16 / 9))


def test_uno_c_leaves_out_events_where_censoring_survival_is_zero():
    time, event, risk = [1, 2, 3, 3], [1, 0, 1, 0], [0.9, 0.1, 0.2, 0.5]
    # G(3) = 0 (at 3 the event leaves first, then the 1 exam left is censored): exam 3's
    # pair (3, 4) (discordant) gets weight 0; exam 1's 3 pairs are concordant -> 3/3
    assert sm.uno_c(time, event, risk) == 1.0
    assert sm.harrell_c(time, event, risk) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="censoring survival function is zero"):
        y = surv(np.array(time, dtype=float), event)
        concordance_index_ipcw(y, y, np.array(risk))  # scikit-survival raises instead


def test_brier_score_by_hand():
    survival = np.array([[0.2], [0.9], [0.6], [0.7], [0.95]])
    # at t = 2.5: case exam 1 (1/G(1) = 1): 0.2^2 = 0.04; exam 2 censored before t: 0;
    # controls 3, 4, 5 (1/G(2.5) = 4/3): (0.4^2 + 0.3^2 + 0.05^2) * 4/3 = 0.2525 * 4/3
    expected = (0.04 + 0.2525 * 4 / 3) / 5
    assert sm.brier_scores(TOY_TIME, TOY_EVENT, survival, [2.5])[0] == pytest.approx(expected)
    # integrated over [0.5, 2.5]: at 0.5 all 5 are controls with 1/G = 1:
    # (0.8^2 + 0.1^2 + 0.4^2 + 0.3^2 + 0.05^2) / 5 = 0.9025 / 5; trapezoid / span = mean
    both = np.hstack([survival, survival])
    assert sm.integrated_brier_score(TOY_TIME, TOY_EVENT, both, [0.5, 2.5]) == pytest.approx(
        (0.9025 / 5 + expected) / 2)


def test_time_dependent_auroc_by_hand():
    # t = 3.5: cases exams 1 (1/G = 1) and 3 (1/G(3) = 4/3); controls exams 4 and 5 (risks
    # .7, .1). Exam 1 (.9) beats both: 2; exam 3 (.5) beats exam 5 only: 1
    expected = (1 * 2 + 4 / 3 * 1) / ((1 + 4 / 3) * 2)
    auroc = sm.time_dependent_auroc(TOY_TIME, TOY_EVENT, TOY_RISK, [3.5])
    np.testing.assert_allclose(auroc, [expected])


def test_perfect_reversed_and_undefined():
    time, event = np.array([1, 2, 3, 4.0]), np.array([1, 1, 1, 0])
    assert sm.harrell_c(time, event, -time) == 1.0
    assert sm.harrell_c(time, event, time) == 0.0
    assert sm.uno_c(time, event, -time) == 1.0
    assert sm.uno_c(time, event, time) == 0.0
    assert sm.harrell_c(time, event, np.zeros(4)) == 0.5
    assert np.isnan(sm.harrell_c(time, np.zeros(4), -time))  # no event
    assert np.isnan(sm.harrell_c([1, 2, 3], [0, 0, 1], [1, 2, 3]))  # event last
    assert np.isnan(sm.harrell_c([2, 2], [1, 1], [1, 2]))  # tied events only
    assert np.isnan(sm.uno_c(time, event, -time, tau=0.5))  # no event before tau
    assert np.isnan(sm.harrell_c([], [], []))
    np.testing.assert_array_equal(sm.kaplan_meier_at([], [], [1, 2]), [1, 1])
    # no case by 0.5, no control after 10
    auroc = sm.time_dependent_auroc(time, event, -time, [0.5, 2.5, 10])
    assert np.isnan(auroc[0]) and auroc[1] == 1.0 and np.isnan(auroc[2])


# --- input errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("arguments, message", [
    (([1, 2], [1], [0.1, 0.2]), "time and event must be 1-D arrays of one length"),
    (([1, -2], [1, 0], [0.1, 0.2]), "times must be finite and non-negative"),
    (([1, np.nan], [1, 0], [0.1, 0.2]), "times must be finite and non-negative"),
    (([1, 2], [1, 2], [0.1, 0.2]), r"events must be 0 \(censored\) or 1 \(event\)"),
    (([1, 2], [1, 0], [0.1]), r"predictions of shape \(1,\) for 2 exams"),
    (([1, 2], [1, 0], [[0.1], [0.2]]), r"predictions of shape \(2, 1\) for 2 exams"),
    (([1, 2], [1, 0], [0.1, np.nan]), "predictions contain NaN"),
])
@pytest.mark.parametrize("metric", [sm.harrell_c, sm.uno_c])
def test_bad_inputs_raise_one_line(metric, arguments, message):
    with pytest.raises(ValueError, match=rf"^survival metrics: {message}[^\n]*$"):
        metric(*arguments)


@pytest.mark.parametrize("call, message", [
    (lambda: sm.brier_scores([1, 2], [1, 0], [[0.5], [0.5]], [1, 2]),
     r"survival must have shape \(exams, horizons\) = \(2, 2\), got \(2, 1\)"),
    (lambda: sm.brier_scores([1, 2], [1, 0], [[np.nan], [0.5]], [1]), "predictions contain NaN"),
    (lambda: sm.time_dependent_auroc([1, 2], [1, 0], [1, 2], [np.nan]),
     "horizons must be a 1-D sequence of finite times"),
    (lambda: sm.integrated_brier_score([1, 2], [1, 0], [[0.5], [0.5]], [1]),
     "the integrated Brier score needs two or more increasing horizons"),
    (lambda: sm.integrated_brier_score([1, 2], [1, 0], [[0.5] * 2] * 2, [2, 1]),
     "the integrated Brier score needs two or more increasing horizons"),
    (lambda: sm.uno_c([1, 2], [1, 0], [1, 2], censoring_from=([1, 2],)),
     r"censoring_from must be a pair \(time, event\)"),
    (lambda: sm.uno_c([1, 2], [1, 0], [1, 2], censoring_from=([1, 2], [1, 3])),
     "events must be 0"),
    (lambda: sm.kaplan_meier_at([1, 2], [1, 0], [[1]]),
     "horizons must be a 1-D sequence of finite times"),
])
def test_bad_inputs_of_the_other_metrics_raise_one_line(call, message):
    with pytest.raises(ValueError, match=rf"^survival metrics: {message}[^\n]*$"):
        call()


# --- 50 000 exams ----------------------------------------------------------------------------

def histogram_concordance(time, event, risk, weights):
    """Reference C from a (time, risk) table of counts: for an event at (t, r), the comparable
    exams with a lower risk are those at a later time with risk < r plus those censored at t
    with risk < r (the same with risk == r for the ties). Exact for coarse times and risks."""
    times, t = np.unique(time, return_inverse=True)
    risks, r = np.unique(risk, return_inverse=True)
    exams = np.zeros((len(times), len(risks)))
    np.add.at(exams, (t, r), 1)
    censored = np.zeros_like(exams)
    np.add.at(censored, (t[~event], r[~event]), 1)
    later = exams[::-1].cumsum(axis=0)[::-1] - exams  # rows: exams at a later time
    comparable = later + censored
    below = np.cumsum(comparable, axis=1) - comparable  # risk strictly lower
    i = event
    total = comparable.sum(axis=1)[t[i]]
    numerator = below[t[i], r[i]] + 0.5 * comparable[t[i], r[i]]
    return np.sum(weights[i] * numerator) / np.sum(weights[i] * total)


def test_50000_exams_match_an_exact_count_without_a_pair_matrix():
    """An n x n pair matrix of 50 000 exams would take 2.5 GB as booleans."""
    rng = np.random.default_rng(3)
    n = 50_000
    time = np.round(rng.exponential(3, n), 1)
    event = rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n) - 0.3 * time, 2)
    tracemalloc.start()
    harrell = sm.harrell_c(time, event, risk)
    uno = sm.uno_c(time, event, risk, tau=5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50e6
    assert harrell == pytest.approx(histogram_concordance(time, event, risk, np.ones(n)),
                                    abs=1e-12)
    y = surv(time, event)
    before = time < 5
    ipcw = np.zeros(n)
    ipcw[before] = CensoringDistributionEstimator().fit(y).predict_ipcw(y[before])
    assert uno == pytest.approx(histogram_concordance(time, event, risk, ipcw ** 2), abs=1e-12)
