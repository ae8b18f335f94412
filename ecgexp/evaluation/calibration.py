"""Calibration of binary probabilities: expected calibration error and the reliability table.

Both describe the reliability of the **positive-class** probability ``p``: within each bin, the
mean predicted probability is compared with the observed rate of positives, as on a reliability
diagram. This is the definition of torchmetrics' ``binary_calibration_error(norm="l1")``; the
top-label definition, with confidence ``max(p, 1 - p)`` against accuracy, is what its
*multiclass* version computes and is not used here.

Bins are ``n_bins`` equal-width intervals ``[k / n_bins, (k + 1) / n_bins)``, the last one
closed at 1. (torchmetrics gives ``p == 1`` a bin of its own, so the two can differ when a
probability is exactly 1.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _binned(probabilities: np.ndarray, targets: np.ndarray, n_bins: int) -> pd.DataFrame:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if probabilities.ndim != 1 or probabilities.shape != targets.shape:
        raise ValueError(f"calibration: expected probabilities and targets of shape (n,); got "
                         f"{probabilities.shape} and {targets.shape}")
    if not np.all((probabilities >= 0) & (probabilities <= 1)):
        raise ValueError("calibration: probabilities must lie in [0, 1] (no NaN)")
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("calibration: targets must be 0/1")
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
