"""Paired statistics for comparing two models on the same exams: DeLong's test of two
correlated AUROCs, the paired bootstrap of any metric's difference, and Holm's step-down
correction across labels.

DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated
receiver operating characteristic curves: a nonparametric approach", Biometrics 44:837-845;
computed with the midrank algorithm of Sun & Xu (2014), IEEE Signal Processing Letters
21:1389-1393 (O(n log n), ties counted one half).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import norm, rankdata

from ecgexp.evaluation.bootstrap import resample_counts


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


def paired_bootstrap(metric: Callable[..., float], arrays_a: Sequence[np.ndarray],
                     arrays_b: Sequence[np.ndarray], n_resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """``metric(*arrays_a) - metric(*arrays_b)`` with a percentile interval and a two-sided
    p-value from the same resamples of the exams for both models (``arrays_*`` share their
    first axis: the exams, e.g. ``[scores, targets]``). The p-value is twice the smaller
    share of resampled differences on either side of 0 (at least ``1 / n_resamples``);
    resamples where the metric is undefined are skipped."""
    arrays_a = [np.asarray(a) for a in arrays_a]
    arrays_b = [np.asarray(b) for b in arrays_b]
    n = len(arrays_a[0])
    if any(len(x) != n for x in (*arrays_a, *arrays_b)):
        raise ValueError("paired_bootstrap: the two models' arrays must cover the same exams")
    result = paired_resamples(lambda idx: metric(*[a[idx] for a in arrays_a]),
                              lambda idx: metric(*[b[idx] for b in arrays_b]),
                              n, n_resamples, seed, level)
    return {key: float(value[0]) for key, value in result.items()}


def paired_resamples(statistic_a: Callable[[np.ndarray], float | np.ndarray],
                     statistic_b: Callable[[np.ndarray], float | np.ndarray], n: int,
                     n_resamples: int = 1000, seed: int = 0, level: float = 0.95
                     ) -> dict[str, np.ndarray]:
    """The paired bootstrap of :func:`paired_bootstrap` for statistics of ``n`` exams given
    by their row indices (``statistic_*(indices)``, a number or a vector of ``k`` metrics):
    ``{difference, lower, upper, p_value}``, each ``(k,)``, a metric at a time; NaN where a
    metric is undefined on the exams or in every resample."""
    exams = np.arange(n)
    observed = np.atleast_1d(np.asarray(statistic_a(exams), float)
                             - np.asarray(statistic_b(exams), float))
    differences = []
    for row in resample_counts(n, n_resamples, seed):
        idx = np.repeat(exams, row)
        differences.append(np.asarray(statistic_a(idx), float)
                           - np.asarray(statistic_b(idx), float))
    differences = np.asarray(differences, float).reshape(n_resamples, -1)
    alpha = (1 - level) / 2
    result = {key: np.full(observed.shape, np.nan) for key in ("lower", "upper", "p_value")}
    for k in range(len(observed)):
        values = differences[:, k][np.isfinite(differences[:, k])]
        if not len(values) or not np.isfinite(observed[k]):
            continue
        result["lower"][k], result["upper"][k] = np.quantile(values, [alpha, 1 - alpha])
        share = min(np.mean(values <= 0), np.mean(values >= 0))
        result["p_value"][k] = min(1.0, max(2 * share, 1 / len(values)))
    return {"difference": observed, **result}


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
