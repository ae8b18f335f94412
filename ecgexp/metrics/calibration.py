"""Calibration of binary probabilities: expected calibration error, the reliability table and
the calibration slope and intercept.

Both describe the reliability of the **positive-class** probability ``p``: within each bin, the
mean predicted probability is compared with the observed rate of positives, as on a reliability
diagram. This is the definition of torchmetrics' ``binary_calibration_error(norm="l1")``; the
top-label definition, with confidence ``max(p, 1 - p)`` against accuracy, is what its
*multiclass* version computes and is not used here.

Bins are ``n_bins`` equal-width intervals ``[k / n_bins, (k + 1) / n_bins)``, the last one
closed at 1. (torchmetrics gives ``p == 1`` a bin of its own, so the two can differ when a
probability is exactly 1.)

The calibration slope and intercept are those of logistic recalibration (Cox 1958; Van Calster
et al. 2016, J. Clin. Epidemiol. 74:167-176): the slope ``b`` of the maximum-likelihood fit
``logit P(y = 1) = a + b * logit(p)`` (1: the spread of the probabilities is right, < 1: too
extreme), and the intercept as calibration-in-the-large, ``a`` fitted with ``b`` fixed at 1
(``logit(p)`` an offset; 0: as many positives predicted as observed, > 0: too few).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit, logit

# Probabilities are clipped to [CLIP, 1 - CLIP] before their logit (0 and 1 stay finite).
CLIP = 1e-12
MAX_ITERATIONS = 100
TOLERANCE = 1e-10


def _checked(probabilities: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if probabilities.ndim != 1 or probabilities.shape != targets.shape:
        raise ValueError(f"calibration: expected probabilities and targets of shape (n,); got "
                         f"{probabilities.shape} and {targets.shape}")
    if not np.all((probabilities >= 0) & (probabilities <= 1)):
        raise ValueError("calibration: probabilities must lie in [0, 1] (no NaN)")
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("calibration: targets must be 0/1")
    return probabilities, targets


def _binned(probabilities: np.ndarray, targets: np.ndarray, n_bins: int) -> pd.DataFrame:
    probabilities, targets = _checked(probabilities, targets)
    if n_bins < 1:
        raise ValueError(f"calibration: n_bins must be >= 1; got {n_bins}")
    # k / n_bins is the correctly rounded edge, so a probability written as 0.57 lands in
    # [0.57, 0.58) (floor(0.57 * 100) would give 56).
    interior = np.arange(1, n_bins) / n_bins
    bins = np.searchsorted(interior, probabilities, side="right")
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_probability = np.bincount(bins, probabilities, minlength=n_bins) / count
        observed_rate = np.bincount(bins, targets, minlength=n_bins) / count
    return pd.DataFrame({"bin_lower": np.arange(n_bins) / n_bins,
                         "bin_upper": np.arange(1, n_bins + 1) / n_bins,
                         "count": count, "mean_probability": mean_probability,
                         "observed_rate": observed_rate})


def reliability_table(probabilities: np.ndarray, targets: np.ndarray,
                      n_bins: int = 10) -> pd.DataFrame:
    """One row per bin: ``bin_lower``, ``bin_upper``, ``count``, ``mean_probability`` (mean
    ``p`` in the bin) and ``observed_rate`` (fraction of positives); NaN means for empty bins.

    ``probabilities`` ``(n,)`` in [0, 1] are positive-class probabilities, ``targets`` ``(n,)``
    0/1.
    """
    return _binned(probabilities, targets, n_bins)


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray,
                               n_bins: int = 10) -> float:
    """``sum_b |B| / n * |mean p in B - positive rate in B|`` over the equal-width bins of
    ``reliability_table`` (empty bins contribute nothing); NaN without exams.

    ``probabilities`` ``(n,)`` in [0, 1] are positive-class probabilities, ``targets`` ``(n,)``
    0/1.
    """
    table = _binned(probabilities, targets, n_bins)
    filled = table[table["count"] > 0]
    if filled.empty:
        return float("nan")
    gaps = (filled["mean_probability"] - filled["observed_rate"]).abs()
    return float(np.sum(filled["count"] * gaps) / filled["count"].sum())


def calibration_slope(probabilities: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """``{slope, intercept}`` of logistic recalibration (see the module docstring), fitted by
    Newton's method on ``logit(p)``, ``p`` clipped to ``[1e-12, 1 - 1e-12]``.

    ``probabilities`` ``(n,)`` in [0, 1] are positive-class probabilities, ``targets`` ``(n,)``
    0/1 with both classes. A ``ValueError`` when no finite fit exists (one class, or logits
    that separate the classes perfectly).
    """
    probabilities, targets = _checked(probabilities, targets)
    if len(np.unique(targets)) < 2:
        raise ValueError("calibration_slope: targets must hold both classes (0 and 1)")
    logits = logit(np.clip(probabilities, CLIP, 1 - CLIP))
    ones = np.ones_like(logits)
    _, slope = _logistic_fit(np.column_stack([ones, logits]), targets, np.zeros_like(logits))
    (intercept,) = _logistic_fit(ones[:, None], targets, logits)
    return {"slope": float(slope), "intercept": float(intercept)}


def _log_likelihood(eta: np.ndarray, targets: np.ndarray) -> float:
    return float(np.sum(targets * log_expit(eta) + (1 - targets) * log_expit(-eta)))


def _logistic_fit(design: np.ndarray, targets: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The maximum-likelihood coefficients of ``logit P(y = 1) = offset + design @ beta``:
    Newton steps, each halved until the likelihood does not fall."""
    beta = np.zeros(design.shape[1])
    likelihood = _log_likelihood(offset, targets)
    for _ in range(MAX_ITERATIONS):
        mean = expit(offset + design @ beta)
        weights = mean * (1 - mean)
        try:
            step = np.linalg.solve(design.T @ (weights[:, None] * design),
                                   design.T @ (targets - mean))
        except np.linalg.LinAlgError:
            break
        for _ in range(30):
            candidate = _log_likelihood(offset + design @ (beta + step), targets)
            if candidate >= likelihood - 1e-12:
                break
            step /= 2
        beta, likelihood = beta + step, candidate
        if np.max(np.abs(step)) < TOLERANCE:
            return beta
    raise ValueError("calibration_slope: the logistic fit has no finite maximum (do the "
                     "probabilities separate the classes perfectly?)")
