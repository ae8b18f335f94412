"""``ecgexp.metrics.decision_curve``: net benefit (Vickers & Elkin 2006) counted here exam by
exam, and the treat-all reference."""

import numpy as np
import pytest

from ecgexp.metrics.decision_curve import net_benefit, treat_all

PROBABILITIES = np.array([0.05, 0.15, 0.3, 0.3, 0.55, 0.7, 0.8, 0.95])
TARGETS = np.array([0, 0, 1, 0, 0, 1, 1, 1])


def by_hand(threshold: float) -> float:
    """TP / n - FP / n * pt / (1 - pt), counting the treated exams (p >= pt) one by one."""
    tp = fp = 0
    for p, t in zip(PROBABILITIES, TARGETS):
        if p >= threshold:
            tp, fp = tp + (t == 1), fp + (t == 0)
    return tp / 8 - fp / 8 * threshold / (1 - threshold)


def test_net_benefit_counts_the_treated_exams():
    thresholds = np.array([0.1, 0.3, 0.5, 0.9])
    # At 0.3 the two exams at exactly 0.3 are treated: TP 4, FP 2 -> 4/8 - 2/8 * 3/7.
    assert by_hand(0.3) == pytest.approx(0.5 - 0.25 * 3 / 7)
    np.testing.assert_allclose(net_benefit(PROBABILITIES, TARGETS, thresholds),
                               [by_hand(t) for t in thresholds], rtol=0, atol=1e-15)


def test_treating_every_exam_is_the_treat_all_reference():
    thresholds = np.array([0.01, 0.04])  # below every probability: every exam is treated
    prevalence = 4 / 8
    expected = prevalence - (1 - prevalence) * thresholds / (1 - thresholds)
    np.testing.assert_allclose(treat_all(TARGETS, thresholds), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(net_benefit(PROBABILITIES, TARGETS, thresholds), expected,
                               rtol=0, atol=1e-15)
    assert net_benefit(PROBABILITIES, TARGETS, [0.99])[0] == 0  # nobody treated: treat none


@pytest.mark.parametrize("probabilities, targets, thresholds, message", [
    (PROBABILITIES, TARGETS, [0.0, 0.5], "thresholds must be a 1-D array of probabilities"),
    (PROBABILITIES, TARGETS, [[0.5]], "thresholds must be a 1-D array of probabilities"),
    (PROBABILITIES, TARGETS, [1.0], "thresholds must be a 1-D array of probabilities"),
    (PROBABILITIES, TARGETS * 2, [0.5], "targets must be a non-empty 1-D array of 0/1"),
    ([], [], [0.5], "targets must be a non-empty 1-D array of 0/1"),
    (PROBABILITIES[:-1], TARGETS, [0.5], r"one probability \(no NaN\) per target; got shapes "
                                         r"\(7,\) and \(8,\)"),
    (np.where(TARGETS, np.nan, 0.5), TARGETS, [0.5], r"one probability \(no NaN\)")])
def test_bad_inputs_are_named(probabilities, targets, thresholds, message):
    with pytest.raises(ValueError, match=rf"^decision curve: .*{message}"):
        net_benefit(probabilities, targets, thresholds)
