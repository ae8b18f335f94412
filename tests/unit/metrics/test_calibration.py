"""``calibration_slope``: logistic recalibration checked against data simulated from a known
recalibration, a perfectly calibrated sample, scikit-learn's unpenalised logistic regression
on ``logit(p)`` (the slope) and a one-dimensional numerical optimum of the likelihood with
``logit(p)`` as an offset (the intercept, calibration-in-the-large)."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit, logit

from ecgexp.metrics.calibration import calibration_slope


def _sample(n: int, intercept: float, slope: float, seed: int = 0):
    """Predicted probabilities ``q`` and outcomes drawn from ``sigmoid(a0 + b0 logit(q))``."""
    rng = np.random.default_rng(seed)
    q = expit(rng.normal(-0.5, 1.5, n))
    return q, (rng.random(n) < expit(intercept + slope * logit(q))).astype(int)


def test_a_known_recalibration_is_recovered():
    q, y = _sample(200_000, 0.3, 0.6)
    assert calibration_slope(q, y)["slope"] == pytest.approx(0.6, abs=0.015)
    q, y = _sample(200_000, -0.4, 1.0, seed=1)  # slope 1: the intercept is a0 itself
    fit = calibration_slope(q, y)
    assert fit["slope"] == pytest.approx(1.0, abs=0.015)
    assert fit["intercept"] == pytest.approx(-0.4, abs=0.015)


def test_a_perfectly_calibrated_sample_has_slope_one_and_intercept_zero():
    q, y = _sample(200_000, 0.0, 1.0, seed=2)
    fit = calibration_slope(q, y)
    assert fit["slope"] == pytest.approx(1.0, abs=0.015)
    assert fit["intercept"] == pytest.approx(0.0, abs=0.015)


def test_agrees_with_scikit_learn_and_a_numerical_optimum():
    from sklearn.linear_model import LogisticRegression

    q, y = _sample(3000, 0.5, 1.4, seed=3)
    fit = calibration_slope(q, y)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000)
    reference.fit(logit(q)[:, None], y)
    assert fit["slope"] == pytest.approx(reference.coef_[0, 0], abs=1e-6)

    def minus_log_likelihood(a):
        eta = a + logit(q)
        return -np.sum(y * log_expit(eta) + (1 - y) * log_expit(-eta))

    optimum = minimize_scalar(minus_log_likelihood, bounds=(-5, 5), method="bounded",
                              options={"xatol": 1e-10})
    assert fit["intercept"] == pytest.approx(optimum.x, abs=1e-6)
    # the score equation of calibration-in-the-large: as many positives expected as observed
    assert expit(fit["intercept"] + logit(q)).sum() == pytest.approx(y.sum(), rel=1e-9)


def test_probabilities_of_zero_and_one_are_clipped():
    q = np.array([0.0, 0.2, 0.5, 0.7, 1.0, 0.4, 0.9, 0.1])
    y = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    fit = calibration_slope(q, y)
    assert np.isfinite(fit["slope"]) and np.isfinite(fit["intercept"])
    clipped = calibration_slope(np.clip(q, 1e-12, 1 - 1e-12), y)
    assert fit == pytest.approx(clipped)


@pytest.mark.parametrize(("q", "y", "message"), [
    ([0.2, 0.4, 0.6], [0, 0, 0], "^calibration_slope: targets must hold both classes"),
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], "^calibration_slope: the logistic fit has no finite"),
    ([0.2, 1.5], [0, 1], r"^calibration: probabilities must lie in \[0, 1\]"),
    ([0.2, 0.5], [0, 2], "^calibration: targets must be 0/1"),
    ([0.2, 0.5], [0, 1, 1], r"^calibration: expected probabilities and targets of shape \(n,\)"),
])
def test_bad_inputs_are_one_line(q, y, message):
    with pytest.raises(ValueError, match=message):
        calibration_slope(np.array(q), np.array(y))
