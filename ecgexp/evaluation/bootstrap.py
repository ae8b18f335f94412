"""Vectorised bootstrap confidence intervals for metrics at fixed thresholds.

A bootstrap resample of ``n`` exams is stored as a row of **counts**: how often each exam was
drawn. Every confusion-matrix cell of every resample is then one matrix product,
``counts (R, n) @ indicator (n, labels)``, instead of a Python loop over ``R`` resamples.

Thresholds are **fixed**: they are chosen once, on the validation split, and applied unchanged
to every resample; they are not re-tuned per resample, so the intervals describe the sampling
variability of the test set at that operating point, not of the threshold choice. As in
``binary.py``, a label is positive when its score is at or above the threshold.

Two interval rules (``interval=``):

* ``"percentile"``: ``np.nanpercentile`` at ``(1 - level) / 2`` and ``(1 + level) / 2``
  (linear interpolation), ignoring resamples where the metric is undefined (NaN).
* ``"published"``: the rule of automatic-ecg-diagnosis (docs/studies.md §3.1): sort the ``R`` values
  and read indices ``int(q * R)`` for ``q = (1 - level) / 2`` and ``(1 + level) / 2``, i.e. 25
  and 975 for ``R = 1000`` (see ``published_indices``).

``resample_counts`` draws with ``np.random.default_rng``; ``published_resample_counts``
reproduces the published stream (``np.random.seed(123)``, ``np.random.randint``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

METRICS = ("precision", "recall", "specificity", "f1", "balanced_accuracy", "mcc")


def _check_size(n: int, n_resamples: int) -> None:
    if n < 1 or n_resamples < 1:
        raise ValueError(f"bootstrap: need n >= 1 exams and n_resamples >= 1; got n={n}, "
                         f"n_resamples={n_resamples}")


def _counts(indices: np.ndarray) -> np.ndarray:
    """Draws ``(n_resamples, n)`` of exam indices in ``[0, n)`` -> counts ``(n_resamples, n)``."""
    n_resamples, n = indices.shape
    offsets = (np.arange(n_resamples) * n)[:, np.newaxis]
    return np.bincount((indices + offsets).ravel(), minlength=n_resamples * n).reshape(
        n_resamples, n)


def resample_counts(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """How often each of ``n`` exams is drawn in each resample: int array ``(n_resamples, n)``,
    every row summing to ``n``.

    Each row counts ``n`` uniform draws with replacement from ``np.random.default_rng(seed)``,
    i.e. a ``multinomial(n, [1 / n] * n)`` vector (drawn this way because it is ~6x faster than
    ``Generator.multinomial`` for n = 827).
    """
    _check_size(n, n_resamples)
    return _counts(np.random.default_rng(seed).integers(n, size=(n_resamples, n)))


def published_resample_counts(n: int, n_resamples: int = 1000, seed: int = 123) -> np.ndarray:
    """The resamples of automatic-ecg-diagnosis as counts ``(n_resamples, n)``.

    The published code seeds NumPy's legacy global generator and draws
    ``randint(n, size=n * n_resamples)``, row ``r`` being resample ``r``; this draws the same
    stream from ``np.random.RandomState(seed)`` without touching the global state.
    """
    _check_size(n, n_resamples)
    indices = np.random.RandomState(seed).randint(n, size=n * n_resamples)
    return _counts(indices.reshape(n_resamples, n))


def confusion_counts(predicted: np.ndarray, targets: np.ndarray,
                     counts: np.ndarray) -> dict[str, np.ndarray]:
    """``{tp, fp, tn, fn}`` of every resample, as ``counts @ indicator`` matrix products.

    ``predicted`` and ``targets`` are 0/1 (or boolean) arrays of shape ``(n,)`` or
    ``(n, labels)``; ``counts`` is ``(n_resamples, n)`` (a row of ones gives the full data).
    Each cell is a float64 array of shape ``(n_resamples,)`` or ``(n_resamples, labels)``.
    """
    predicted, targets = np.asarray(predicted).astype(bool), np.asarray(targets).astype(bool)
    counts = np.asarray(counts, dtype=np.float64)
    if predicted.shape != targets.shape or counts.shape[-1] != predicted.shape[0]:
        raise ValueError(f"bootstrap: predicted {predicted.shape}, targets {targets.shape} and "
                         f"counts {counts.shape} must share the exam axis")
    cells = {"tp": predicted & targets, "fp": predicted & ~targets,
             "tn": ~predicted & ~targets, "fn": ~predicted & targets}
    stacked = np.stack(list(cells.values()), axis=1).reshape(len(predicted), -1)
    products = (counts @ stacked).reshape(counts.shape[:-1] + (4,) + predicted.shape[1:])
    return {name: products[..., i, :] if predicted.ndim == 2 else products[..., i]
            for i, name in enumerate(cells)}


def rates(tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray) -> dict:
    """``{precision, recall, specificity, f1, balanced_accuracy, mcc}`` from confusion counts of
    any (shared) shape; recall is the sensitivity. NaN where a denominator is zero (MCC: any
    margin of the 2x2 table; balanced accuracy: either rate), without warnings."""
    tp, fp, tn, fn = (np.asarray(cell, dtype=np.float64) for cell in (tp, fp, tn, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        recall, specificity = tp / (tp + fn), tn / (tn + fp)
        margins = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        return {"precision": tp / (tp + fp), "recall": recall, "specificity": specificity,
                "f1": 2 * tp / (2 * tp + fp + fn),
                "balanced_accuracy": (recall + specificity) / 2,
                "mcc": (tp * tn - fp * fn) / np.sqrt(margins)}


def percentile_interval(values: np.ndarray, level: float = 0.95,
                        axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` percentiles ``100 (1 -/+ level) / 2`` along ``axis`` (linear
    interpolation), ignoring NaN; NaN where every value is NaN. Shapes: ``values`` without
    ``axis``."""
    _check_level(level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        lower, upper = np.nanpercentile(np.asarray(values, dtype=np.float64),
                                        [50 * (1 - level), 50 * (1 + level)], axis=axis)
    return lower, upper


def published_indices(n_values: int | np.ndarray,
                      level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Sorted-value indices ``(lower, upper)`` of the published rule: ``int(q * n_values)`` for
    ``q = (1 - level) / 2`` and ``(1 + level) / 2``, capped at ``n_values - 1`` (and at 0).

    For 1000 values and level 0.95 these are 25 and 975 (the published ``int(2.5 / 100 * 1000)``
    and ``int(97.5 / 100 * 1000)``); ``ceil(q * n) - 1`` would give 974 for the upper one. The
    products are rounded to 9 decimals first so that e.g. ``0.05 * 1000 = 49.999...`` reads 50.
    ``n_values`` may be an int array; the indices then have its shape.
    """
    _check_level(level)
    n_values = np.asarray(n_values)
    last = np.maximum(n_values - 1, 0)
    lower, upper = (np.minimum(np.floor(np.round(q * n_values, 9)).astype(int), last)
                    for q in ((1 - level) / 2, (1 + level) / 2))
    return lower, upper


def published_interval(values: np.ndarray, level: float = 0.95,
                       axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)``: the values at ``published_indices`` after sorting along ``axis``.

    NaN values are dropped first (the indices use the number of defined values); NaN where
    every value is NaN. Shapes: ``values`` without ``axis``.
    """
    ordered = np.moveaxis(np.sort(np.asarray(values, dtype=np.float64), axis=axis), axis, 0)
    valid = np.sum(~np.isnan(ordered), axis=0)  # np.sort puts NaN last
    bounds = (np.take_along_axis(ordered, index[np.newaxis], axis=0)[0]
              for index in published_indices(valid, level))
    return tuple(np.where(valid > 0, bound, np.nan) for bound in bounds)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"bootstrap: level must be in (0, 1); got {level}")


def _interval(interval: str) -> Callable:
    rules = {"percentile": percentile_interval, "published": published_interval}
    if interval not in rules:
        raise ValueError(f"bootstrap: unknown interval '{interval}'; valid: {', '.join(rules)}")
    return rules[interval]


def bootstrap_threshold_metrics(scores: np.ndarray, targets: np.ndarray,
                                thresholds: float | Sequence[float] | np.ndarray,
                                n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                                interval: str = "percentile",
                                counts: np.ndarray | None = None) -> dict:
    """``{metric: {"value", "lower", "upper"}}`` for every metric of ``rates`` at fixed
    thresholds.

    ``scores`` and ``targets`` (0/1) are ``(n,)`` or ``(n, labels)``; ``thresholds`` is a scalar
    or ``(labels,)``, chosen beforehand on validation and not re-tuned per resample
    (``score >= threshold`` is positive). ``value`` is the metric on the full data; ``lower``
    and ``upper`` the ``interval`` rule over ``n_resamples`` resamples drawn by
    ``resample_counts(n, n_resamples, seed)``, or over the given ``counts (R, n)`` (e.g.
    ``published_resample_counts``). Each entry has shape ``(labels,)``, or ``()`` for 1-D input.
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.shape != targets.shape:
        raise ValueError(f"bootstrap: scores {scores.shape} and targets {targets.shape} differ")
    if np.isnan(scores).any():
        raise ValueError("bootstrap: scores contain NaN, which no threshold would count")
    bounds = _interval(interval)
    predicted = scores >= np.asarray(thresholds, dtype=np.float64)
    if counts is None:
        counts = resample_counts(len(scores), n_resamples, seed)
    full = rates(**confusion_counts(predicted, targets, np.ones(len(scores))))
    resampled = rates(**confusion_counts(predicted, targets, counts))
    result = {}
    for metric in METRICS:
        lower, upper = bounds(resampled[metric], level)
        result[metric] = {"value": full[metric], "lower": lower, "upper": upper}
    return result


def bootstrap_statistic(statistic: Callable[..., float | np.ndarray],
                        arrays: Sequence[np.ndarray], n_resamples: int = 1000, seed: int = 0,
                        level: float = 0.95, interval: str = "percentile") -> dict:
    """``{"value", "lower", "upper"}`` of any ``statistic(*arrays)`` (AUROC, MAE, ...).

    The generic fallback: loops over resamples, calling ``statistic(*[a[idx] for a in arrays])``
    with the indices of ``resample_counts(n, n_resamples, seed)`` (the same resamples as
    ``bootstrap_threshold_metrics`` with that seed). ``arrays`` share their first axis ``n``.
    The statistic returns a float or a fixed-shape array; resamples where it is NaN (e.g. a
    single class for AUROC) are skipped, element by element. ``value`` is the statistic on the
    full data; entries have the statistic's shape.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"bootstrap: arrays differ in length: {[len(a) for a in arrays]}")
    bounds = _interval(interval)
    exams = np.arange(n)
    values = np.array([statistic(*[a[idx] for a in arrays])
                       for idx in (np.repeat(exams, row)
                                   for row in resample_counts(n, n_resamples, seed))],
                      dtype=np.float64)
    lower, upper = bounds(values, level)
    return {"value": np.asarray(statistic(*arrays), dtype=np.float64),
            "lower": lower, "upper": upper}
