"""Paired statistics for comparing two models on the same exams: DeLong's test of two
correlated AUROCs and Holm's step-down correction across labels (the paired bootstrap of
any metric's difference is :func:`ecgexp.metrics.bootstrap.paired_bootstrap`).

DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated
receiver operating characteristic curves: a nonparametric approach", Biometrics 44:837-845;
computed with the midrank algorithm of Sun & Xu (2014), IEEE Signal Processing Letters
21:1389-1393 (O(n log n), ties counted one half).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import norm, rankdata


def _structural_components(scores: np.ndarray, positive: np.ndarray
                           ) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC and DeLong's placement values: ``v10`` per positive (the fraction of negatives
    it outscores), ``v01`` per negative (the fraction of positives that outscore it)."""
    pos, neg = scores[positive], scores[~positive]
    m, n = len(pos), len(neg)
    all_ranks = rankdata(np.concatenate([pos, neg]))  # midranks: ties count one half
    v10 = (all_ranks[:m] - rankdata(pos)) / n
    v01 = 1.0 - (all_ranks[m:] - rankdata(neg)) / m
    return float(v10.mean()), v10, v01


def delong_test(scores_a: np.ndarray, scores_b: np.ndarray, targets: np.ndarray) -> dict:
    """DeLong's test of ``AUROC(a) - AUROC(b)`` on the same exams (0/1 ``targets``):
    ``{auroc_a, auroc_b, difference, se, z, p_value}`` (two-sided); ``var_a``, ``var_b`` and
    ``covariance`` are DeLong's variance estimates. ``p_value`` is 1 when the two scores
    rank the exams alike (zero variance of the difference)."""
    scores_a, scores_b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    positive = np.asarray(targets).astype(int) == 1
    if scores_a.shape != scores_b.shape or scores_a.shape != positive.shape:
        raise ValueError(f"delong_test: scores {scores_a.shape}, {scores_b.shape} and targets "
                         f"{positive.shape} must have one value per exam")
    if positive.all() or not positive.any():
        raise ValueError("delong_test: needs positive and negative exams")
    auc_a, v10_a, v01_a = _structural_components(scores_a, positive)
    auc_b, v10_b, v01_b = _structural_components(scores_b, positive)
    s10 = np.cov(np.vstack([v10_a, v10_b]))  # 2x2, ddof 1
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    covariance = s10 / len(v10_a) + s01 / len(v01_a)
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = auc_a - auc_b
    se = float(np.sqrt(max(variance, 0.0)))
    if se == 0:
        z, p_value = 0.0, 1.0
    else:
        z = difference / se
        p_value = float(2 * norm.sf(abs(z)))
    return {"auroc_a": auc_a, "auroc_b": auc_b, "difference": difference, "se": se,
            "z": float(z), "p_value": p_value, "var_a": float(covariance[0, 0]),
            "var_b": float(covariance[1, 1]), "covariance": float(covariance[0, 1])}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest of m is
    multiplied by m - k + 1, made non-decreasing along that order and capped at 1; NaN
    stays NaN and does not count among the m."""
    p = np.asarray(p_values, float)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m, running = len(order), 0.0
    for k, index in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[index]))
        adjusted[index] = running
    return adjusted
