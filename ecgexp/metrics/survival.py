"""Discrimination and calibration of time-to-event predictions, vectorised with numpy.

Inputs: ``time`` ``(n,)`` follow-up in any unit (finite, >= 0; horizons and ``tau`` in the same
unit), ``event`` ``(n,)`` 0/1 or bool (1: the event at ``time``, 0: censored then), ``risk``
``(n,)`` (higher: earlier event expected) or ``survival`` ``(n, len(horizons))`` (the predicted
probability of no event by each horizon).

Definitions (scikit-survival's, which the tests check against):

- comparable pair ``(i, j)``: ``i`` has the event and ``j`` is still followed after it:
  ``time_j > time_i``, or ``time_j == time_i`` with ``j`` censored (a censoring at the time of
  an event counts as later); two events at one time are not comparable. The pair is
  concordant when ``risk_i > risk_j``; exactly equal risks count 1/2 (scikit-survival counts
  risks within 1e-8 as equal);
- Harrell's C: concordant over comparable pairs. Uno's C: each pair weighted by
  ``G(time_i)^-2``, only events with ``time_i < tau``;
- ``G``: the Kaplan–Meier estimate of the censoring distribution, the censorings being its
  events; exams with the event at a time leave before the censorings at that time (they are
  not at risk of censoring then). A right-continuous step function (``G(time_i)`` includes
  the censorings at ``time_i``), 1 before the first time and held at its last value after the
  last time;
- time-dependent (cumulative/dynamic) AUROC at ``t``: cases ``time_i <= t`` with the event,
  weighted ``1 / G(time_i)``, against controls ``time_j > t``; equal risks count 1/2;
- Brier score at ``t``: ``mean(S_i(t)^2 [case] / G(time_i) + (1 - S_i(t))^2 [control] / G(t))``
  over all exams (those censored by ``t`` contribute 0), and the integrated Brier score: its
  trapezoidal integral over the horizons divided by their span;
- Kaplan–Meier ``S(t)``: the usual product over event times ``<= t`` of
  ``1 - events / at risk``, held at its last value after the last time.

``censoring_from=(time, event)`` names the data ``G`` is estimated from (e.g. the training
split); by default the evaluated exams themselves. Where scikit-survival raises, these
functions go on, so that bootstrap resamples never fail:

- beyond the last ``censoring_from`` time ``G`` keeps its last value (scikit-survival raises
  unless that value is 0);
- an exam whose weight would need ``G = 0`` (all later exams censored) gets weight 0, i.e. is
  left out (scikit-survival does so in the Brier score and raises in Uno's C and the AUROC);
- horizons need not lie within the follow-up; a metric without cases, controls or comparable
  pairs is NaN (scikit-survival raises or warns).

Harrell's and Uno's C run in O(n log^2 n) time and O(n) memory (no pair matrix).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _checked(time, event, *predictions, ndim: int = 1) -> tuple[np.ndarray, ...]:
    """``time`` float, ``event`` bool ``(n,)`` and the ``predictions`` as float arrays of
    ``ndim`` dimensions, the first ``n``; or a one-line ``ValueError``."""
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event)
    if time.ndim != 1 or event.shape != time.shape:
        raise ValueError(f"survival metrics: time and event must be 1-D arrays of one length, "
                         f"got shapes {time.shape} and {event.shape}")
    if not np.all(np.isfinite(time)) or (time < 0).any():
        raise ValueError("survival metrics: times must be finite and non-negative")
    if not np.isin(event, (0, 1)).all():
        raise ValueError("survival metrics: events must be 0 (censored) or 1 (event)")
    arrays = [np.asarray(p, dtype=np.float64) for p in predictions]
    for array in arrays:
        if array.ndim != ndim or len(array) != len(time):
            raise ValueError(f"survival metrics: predictions of shape {array.shape} for "
                             f"{len(time)} exams")
        if np.isnan(array).any():
            raise ValueError("survival metrics: predictions contain NaN")
    return (time, event.astype(bool), *arrays)


def _checked_horizons(horizons) -> np.ndarray:
    horizons = np.asarray(horizons, dtype=np.float64)
    if horizons.ndim != 1 or not np.all(np.isfinite(horizons)):
        raise ValueError("survival metrics: horizons must be a 1-D sequence of finite times")
    return horizons


def _kaplan_meier(time: np.ndarray, event: np.ndarray,
                  of_censoring: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The Kaplan–Meier step function of the events (``of_censoring``: of the censorings,
    events leaving first) as in the module docstring."""
    times, at = np.unique(time, return_inverse=True)
    leaving = np.bincount(at, minlength=len(times))
    events = np.bincount(at, weights=event, minlength=len(times))
    at_risk = len(time) - np.cumsum(leaving) + leaving  # followed up to each time
    if of_censoring:
        drops, at_risk = leaving - events, at_risk - events
    else:
        drops = events
    factors = np.ones(len(times))
    np.divide(at_risk - drops, at_risk, out=factors, where=drops > 0)
    steps = np.r_[1.0, np.cumprod(factors)]  # before the first time, then after each

    def at_times(t) -> np.ndarray:
        return steps[np.searchsorted(times, np.asarray(t, dtype=np.float64), side="right")]

    return at_times


def censoring_survival(time, event) -> Callable[[np.ndarray], np.ndarray]:
    """``G(t)``: the Kaplan–Meier estimate of the censoring distribution of ``(time, event)``
    (see the module docstring); the returned function maps times of any shape to ``G`` of
    that shape."""
    time, event = _checked(time, event)
    return _kaplan_meier(time, event, of_censoring=True)


def kaplan_meier_at(time, event, horizons: Sequence[float]) -> np.ndarray:
    """The Kaplan–Meier survival estimate ``S(t)`` at each horizon, ``(len(horizons),)``."""
    time, event = _checked(time, event)
    return _kaplan_meier(time, event, of_censoring=False)(_checked_horizons(horizons))


def _censoring(time, event, censoring_from) -> Callable[[np.ndarray], np.ndarray]:
    if censoring_from is None:
        return _kaplan_meier(time, event, of_censoring=True)
    if len(censoring_from) != 2:
        raise ValueError("survival metrics: censoring_from must be a pair (time, event)")
    return censoring_survival(*censoring_from)


def _inverse(values: np.ndarray) -> np.ndarray:
    """``1 / values``, 0 where ``values`` is 0 (the exam is left out)."""
    out = np.zeros_like(values)
    np.divide(1.0, values, out=out, where=values > 0)
    return out


def _dense_rank(values: np.ndarray) -> np.ndarray:
    """``0 .. k-1`` for the ``k`` distinct ``values``, in their order."""
    return np.unique(values, return_inverse=True)[1].astype(np.int64)


def _count_up_to(rank: np.ndarray) -> np.ndarray:
    """For each element of ``rank`` (integers ``>= 0``): the elements ``<=`` it."""
    return np.cumsum(np.bincount(rank))[rank]


def _count_smaller_before(values: np.ndarray) -> np.ndarray:
    """For each position ``p``: ``#{q < p : values[q] < values[p]}``, for integer ``values``
    in ``[0, n)``, by bottom-up merge sort: when two sorted runs merge, an element of the
    right run moves forward by the number of elements of the left run smaller than it."""
    n = len(values)
    order = np.arange(n)  # the positions, sorted by value within each run of `width`
    counts = np.zeros(n, dtype=np.int64)  # so far, in the order of `order`
    index = np.arange(n)
    width = 1
    while width < n:
        right = (order & width) != 0
        # sorted by merged run, then value; a right element before equal left ones
        keys = ((order // (2 * width)) * (n + 1) + values[order]) * 2 + ~right
        merged = np.argsort(keys, kind="stable")  # timsort: linear merges of sorted runs
        counts = counts[merged] + np.where(right[merged], index - merged + width, 0)
        order = order[merged]
        width *= 2
    out = np.empty(n, dtype=np.int64)
    out[order] = counts
    return out


def _pair_counts(time, event, risk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per exam ``i`` (meaningful for events): the exams comparable with it (still followed
    after it, see the module docstring), those of them with a lower risk, and those with an
    equal risk; each ``(n,)``."""
    key = 2 * _dense_rank(time) + (~event)  # a censoring at t comes after the events at t
    risk_rank = _dense_rank(risk)
    comparable = len(time) - _count_up_to(key)
    # lower risk among the later exams: sort by key descending, ties by risk descending, so
    # that exams sharing the key never count each other
    order = np.lexsort((-risk_rank, -key))
    lower = np.empty(len(time), dtype=np.int64)
    lower[order] = _count_smaller_before(risk_rank[order])
    # equal risk among the later exams: those up to the end of risk_i, less those up to
    # (risk_i, key_i) in (risk, key) order
    joint = _dense_rank(risk_rank * (key.max(initial=0) + 1) + key)
    tied = _count_up_to(risk_rank) - _count_up_to(joint)
    return comparable, lower, tied


def _concordance(time, event, risk, weights) -> float:
    """Concordant over comparable pairs, pair ``(i, j)`` weighted ``weights[i]``."""
    comparable, lower, tied = _pair_counts(time, event, risk)
    weights = np.where(event, weights, 0.0)
    denominator = float(np.sum(weights * comparable))
    if denominator == 0:
        return np.nan
    return float(np.sum(weights * (lower + 0.5 * tied)) / denominator)


def harrell_c(time, event, risk) -> float:
    """Harrell's concordance index of ``risk`` ``(n,)``; NaN without a comparable pair."""
    time, event, risk = _checked(time, event, risk)
    return _concordance(time, event, risk, np.ones(len(time)))


def uno_c(time, event, risk, tau: float | None = None,
          censoring_from: tuple | None = None) -> float:
    """Uno's IPCW concordance index of ``risk`` ``(n,)`` over the events before ``tau`` (all
    when None), ``G`` from ``censoring_from``; NaN without a comparable pair."""
    time, event, risk = _checked(time, event, risk)
    weights = _inverse(_censoring(time, event, censoring_from)(time)) ** 2
    if tau is not None:
        weights = np.where(time < tau, weights, 0.0)
    return _concordance(time, event, risk, weights)


def time_dependent_auroc(time, event, risk, horizons: Sequence[float],
                         censoring_from: tuple | None = None) -> np.ndarray:
    """The cumulative/dynamic AUROC of ``risk`` ``(n,)`` at each horizon,
    ``(len(horizons),)``; NaN at a horizon without cases or controls."""
    time, event, risk = _checked(time, event, risk)
    weights = _inverse(_censoring(time, event, censoring_from)(time))
    scores = []
    for horizon in _checked_horizons(horizons):
        cases = event & (time <= horizon)
        controls = np.sort(risk[time > horizon])
        total = weights[cases].sum() * len(controls)
        if total == 0:
            scores.append(np.nan)
            continue
        below = np.searchsorted(controls, risk[cases], side="left")
        tied = np.searchsorted(controls, risk[cases], side="right") - below
        scores.append(float(np.sum(weights[cases] * (below + 0.5 * tied)) / total))
    return np.asarray(scores)


def brier_scores(time, event, survival, horizons: Sequence[float],
                 censoring_from: tuple | None = None) -> np.ndarray:
    """The IPCW Brier score at each horizon, ``(len(horizons),)``, of ``survival``
    ``(n, len(horizons))``, the predicted probabilities of no event by each horizon."""
    time, event, survival = _checked(time, event, survival, ndim=2)
    horizons = _checked_horizons(horizons)
    if survival.shape != (len(time), len(horizons)):
        raise ValueError(f"survival metrics: survival must have shape (exams, horizons) = "
                         f"{(len(time), len(horizons))}, got {survival.shape}")
    G = _censoring(time, event, censoring_from)
    cases = (event[:, None] & (time[:, None] <= horizons)) * _inverse(G(time))[:, None]
    controls = (time[:, None] > horizons) * _inverse(G(horizons))
    return np.mean(survival ** 2 * cases + (1 - survival) ** 2 * controls, axis=0)


def integrated_brier_score(time, event, survival, horizons: Sequence[float],
                           censoring_from: tuple | None = None) -> float:
    """The Brier scores of ``survival`` ``(n, len(horizons))`` integrated over the increasing
    ``horizons`` (trapezoids) and divided by their span."""
    horizons = _checked_horizons(horizons)
    if len(horizons) < 2 or np.any(np.diff(horizons) <= 0):
        raise ValueError("survival metrics: the integrated Brier score needs two or more "
                         "increasing horizons")
    scores = brier_scores(time, event, survival, horizons, censoring_from)
    area = np.sum((scores[1:] + scores[:-1]) / 2 * np.diff(horizons))
    return float(area / (horizons[-1] - horizons[0]))
