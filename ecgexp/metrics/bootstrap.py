"""The one bootstrap of ecgexp: intervals of any metric, and paired differences of two models'.

A bootstrap resample of ``n`` exams is stored as a row of **counts**: how often each exam was
drawn. A metric that takes exam weights (:mod:`ecgexp.metrics`) computes a whole chunk of
resamples in one pass -- every confusion cell is one matrix product
``counts (R, n) @ indicator (n, labels)``, AUROC one sort and a running sum -- instead of a
Python loop over resamples. :class:`Resamples` hands the counts out in chunks of at most
``max_elements`` (rows x exams), so memory stays bounded per chunk and linear in ``n``
however many resamples are drawn: 1000 resamples of a million exams are 8 GB of counts at
once, 32 MiB a chunk. The chunks are drawn one after the other from one seeded stream, so
the resamples do not depend on the chunk size. A metric without a weighted form is wrapped by
:func:`per_resample`, which calls it on the drawn exams of each resample (slow, but
bounded in memory the same way).

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

The default stream draws with ``np.random.default_rng(seed)``; ``published=True``
reproduces the published one (``np.random.seed(123)``, ``np.random.randint``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ecgexp.metrics.confusion import METRICS, rates, threshold_confusion

# Rows x exams of one chunk of counts: 8 MiB of float64.
MAX_ELEMENTS = 1 << 20


def _check_size(n: int, n_resamples: int) -> None:
    if n < 1 or n_resamples < 1:
        raise ValueError(f"bootstrap: need n >= 1 exams and n_resamples >= 1; got n={n}, "
                         f"n_resamples={n_resamples}")


class Resamples:
    """``n_resamples`` bootstrap resamples of ``n`` exams, iterated as float64 count chunks
    ``(rows, n)``, every row summing to ``n`` and ``rows * n <= max_elements`` (at least one
    row).

    Each row counts ``n`` uniform draws with replacement from ``np.random.default_rng(seed)``
    (a ``multinomial(n, [1 / n] * n)`` vector, drawn this way because it is ~6x faster than
    ``Generator.multinomial`` for n = 827), or, with ``published``, from
    ``np.random.RandomState(seed).randint`` as automatic-ecg-diagnosis drew them (its
    ``randint(n, size=n * n_resamples)``, row ``r`` being resample ``r``), without touching
    NumPy's global state. Rows are drawn in order from one stream, so every chunk size gives
    the same resamples."""

    def __init__(self, n: int, n_resamples: int = 1000, seed: int = 0, published: bool = False,
                 max_elements: int = MAX_ELEMENTS):
        _check_size(n, n_resamples)
        self.n, self.n_resamples, self.seed, self.published = n, n_resamples, seed, published
        self.rows = max(1, min(n_resamples, max_elements // n))

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.published:
            state = np.random.RandomState(self.seed)

            def draw(rows):
                return state.randint(self.n, size=rows * self.n).reshape(rows, self.n)
        else:
            generator = np.random.default_rng(self.seed)

            def draw(rows):
                return generator.integers(self.n, size=(rows, self.n))
        for start in range(0, self.n_resamples, self.rows):
            yield _counts(draw(min(self.rows, self.n_resamples - start))).astype(np.float64)


def _counts(indices: np.ndarray) -> np.ndarray:
    """Draws ``(n_resamples, n)`` of exam indices in ``[0, n)`` -> counts ``(n_resamples, n)``."""
    n_resamples, n = indices.shape
    offsets = (np.arange(n_resamples) * n)[:, np.newaxis]
    return np.bincount((indices + offsets).ravel(), minlength=n_resamples * n).reshape(
        n_resamples, n)


def resample_counts(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """All counts of ``Resamples(n, n_resamples, seed)`` at once: int ``(n_resamples, n)``
    (for small ``n``; the reports iterate the chunks)."""
    return np.concatenate(list(Resamples(n, n_resamples, seed))).astype(np.int64)


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


def resampled(statistic: Callable[[np.ndarray], np.ndarray], resamples: Resamples
              ) -> np.ndarray:
    """``statistic(counts)`` of every chunk, stacked: ``(n_resamples, ...)``. ``statistic``
    maps counts ``(rows, n)`` to ``(rows, ...)`` (a weighted metric of :mod:`ecgexp.metrics`,
    or :func:`per_resample`)."""
    return np.concatenate([np.asarray(statistic(counts), dtype=np.float64)
                           for counts in resamples])


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], resamples: Resamples,
              level: float = 0.95, interval: str = "percentile") -> dict:
    """``{"value", "lower", "upper"}`` of a weighted ``statistic`` (counts ``(rows, n)`` to
    ``(rows, ...)``): ``value`` on the full data (one row of ones), the bounds the
    ``interval`` rule over the resamples, NaN resamples skipped element by element. Entries
    have the statistic's shape without the row axis."""
    bounds = _interval(interval)
    value = np.asarray(statistic(np.ones((1, resamples.n))), dtype=np.float64)[0]
    lower, upper = bounds(resampled(statistic, resamples), level)
    return {"value": value, "lower": lower, "upper": upper}


def per_resample(statistic: Callable[..., float | np.ndarray], arrays: Sequence[np.ndarray]
                 ) -> Callable[[np.ndarray], np.ndarray]:
    """A weighted statistic from one of plain arrays (C-index, Kaplan-Meier, a task's whole
    report): each row of counts calls ``statistic(*[a[drawn] for a in arrays])`` on the
    exams it drew, repeated as often as drawn. ``arrays`` share their first axis; the
    statistic returns a float or a fixed-shape array."""
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"bootstrap: arrays differ in length: {[len(a) for a in arrays]}")
    exams = np.arange(n)

    def weighted(counts: np.ndarray) -> np.ndarray:
        rows = []
        for row in counts:
            drawn = exams if np.all(row == 1) else np.repeat(exams, row.astype(np.int64))
            rows.append(np.asarray(statistic(*[a[drawn] for a in arrays]), dtype=np.float64))
        return np.stack(rows)
    return weighted


def paired_bootstrap(statistic_a: Callable[[np.ndarray], np.ndarray],
                     statistic_b: Callable[[np.ndarray], np.ndarray], resamples: Resamples,
                     level: float = 0.95) -> dict[str, np.ndarray]:
    """The difference ``statistic_a - statistic_b`` of two models on the same exams, each a
    weighted statistic of ``k`` metrics (counts ``(rows, n)`` to ``(rows, k)`` or ``(rows,)``):
    ``{difference, lower, upper, p_value}``, each ``(k,)``. The difference is the one on the
    full data; the interval the percentiles of the differences over the same resamples for
    both models; the two-sided p-value twice the smaller share of resampled differences on
    either side of 0 (at least ``1 / resamples``). NaN where a metric is undefined on the
    exams or in every resample; other resamples where it is undefined are skipped."""
    def difference(counts: np.ndarray) -> np.ndarray:
        a, b = (np.asarray(f(counts), dtype=np.float64) for f in (statistic_a, statistic_b))
        return (a - b).reshape(len(counts), -1)

    observed = difference(np.ones((1, resamples.n)))[0]
    differences = resampled(difference, resamples)
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


def bootstrap_threshold_metrics(scores: np.ndarray, targets: np.ndarray,
                                thresholds: float | Sequence[float] | np.ndarray,
                                n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                                interval: str = "percentile",
                                resamples: Resamples | None = None) -> dict:
    """``{metric: {"value", "lower", "upper"}}`` for every metric of ``rates`` at fixed
    thresholds.

    ``scores`` and ``targets`` (0/1) are ``(n,)`` or ``(n, labels)``; ``thresholds`` is a scalar
    or ``(labels,)``, chosen beforehand on validation and not re-tuned per resample
    (``score >= threshold`` is positive). ``value`` is the metric on the full data; ``lower``
    and ``upper`` the ``interval`` rule over ``Resamples(n, n_resamples, seed)``, or over the
    given ``resamples`` (e.g. the published stream). Each entry has shape ``(labels,)``, or
    ``()`` for 1-D input.
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.shape != targets.shape:
        raise ValueError(f"bootstrap: scores {scores.shape} and targets {targets.shape} differ")
    if np.isnan(scores).any():
        raise ValueError("bootstrap: scores contain NaN, which no threshold would count")
    resamples = resamples or Resamples(len(scores), n_resamples, seed)
    interval = bootstrap(threshold_statistic(scores, targets, thresholds), resamples, level,
                         interval)
    return {metric: {key: value[i] for key, value in interval.items()}
            for i, metric in enumerate(METRICS)}


def threshold_statistic(scores: np.ndarray, targets: np.ndarray, thresholds: float | np.ndarray
                        ) -> Callable[[np.ndarray], np.ndarray]:
    """The weighted statistic of the :data:`~ecgexp.metrics.confusion.METRICS` at fixed
    thresholds: counts ``(rows, n)`` to ``(rows, metrics)`` or ``(rows, metrics, labels)``."""
    confusion = threshold_confusion(scores, targets, thresholds)

    def statistic(counts: np.ndarray) -> np.ndarray:
        at = rates(**confusion.counts(counts))
        return np.stack([at[metric] for metric in METRICS], axis=1)
    return statistic
