"""Regression evaluation (electrolytes, age): errors, event detection and Gaussian calibration.

Pairs (or triples) where any value is NaN are dropped before every metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm, rankdata
from torchmetrics.functional import (
    mean_absolute_error,
    mean_squared_error,
    pearson_corrcoef,
    r2_score,
)

from ecgexp.columns import mean_of, predicted_of, std_of, target_of
from ecgexp.evaluation.binary import ranking_scores


def _finite(*arrays: np.ndarray) -> list[np.ndarray]:
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    keep = np.logical_and.reduce([~np.isnan(a) for a in arrays])
    return [a[keep] for a in arrays]


def regression_metrics(predicted: np.ndarray, target: np.ndarray) -> dict:
    """``{mae, rmse, r2, pearson, n}``; r2 and pearson are NaN below two pairs."""
    predicted, target = _finite(predicted, target)
    n = len(target)
    if n == 0:
        return {"mae": math.nan, "rmse": math.nan, "r2": math.nan, "pearson": math.nan, "n": 0.0}
    p, t = torch.from_numpy(predicted), torch.from_numpy(target)
    return {"mae": float(mean_absolute_error(p, t)),
            "rmse": float(mean_squared_error(p, t, squared=False)),
            "r2": float(r2_score(p, t)) if n >= 2 else math.nan,
            "pearson": float(pearson_corrcoef(p, t)) if n >= 2 else math.nan,
            "n": float(n)}


def _event_direction(name: str, spec: Mapping) -> tuple[str, float]:
    directions = [key for key in ("below", "above") if key in spec]
    if len(directions) != 1 or len(spec) != 1:
        raise ValueError(f"task.objective.events.{name}: give exactly one of 'below: <value>' "
                         f"or 'above: <value>', got {dict(spec)}")
    return directions[0], float(spec[directions[0]])


def event_detection(predicted: np.ndarray, target: np.ndarray,
                    events: Mapping[str, Mapping]) -> dict:
    """How well the prediction ranks clinical events: ``{name: {auroc, ap, positives}}``.

    ``events`` maps a name to ``{"below": value}`` (event: ``target < value``, score:
    ``-predicted``) or ``{"above": value}`` (event: ``target > value``, score: ``predicted``),
    e.g. hypokalaemia ``{"below": 3.5}``. AUROC and AP are NaN when one class is absent.
    """
    directions = {name: _event_direction(name, spec) for name, spec in events.items()}
    predicted, target = _finite(predicted, target)
    result = {}
    for name, (direction, value) in directions.items():
        truth = (target < value) if direction == "below" else (target > value)
        score = -predicted if direction == "below" else predicted
        # Ranks in (0, 1]: AUROC and AP depend on the order only, and torchmetrics would pass
        # scores outside [0, 1] through a sigmoid that saturates (e.g. sodium in mmol/L).
        ranked = rankdata(score) / max(len(score), 1)
        result[name] = {**ranking_scores(ranked, truth.astype(int)),
                        "positives": float(np.sum(truth))}
    return result


def _level_name(level: float) -> str:
    return f"coverage_{level * 100:g}"


def gaussian_metrics(mean: np.ndarray, std: np.ndarray, target: np.ndarray, level: float = 0.9,
                     log_target: bool = False) -> dict:
    """Negative log-likelihood and central-interval calibration of ``N(mean, std**2)``.

    ``mean`` and ``std`` are on the Gaussian's scale: the target's, or ``log(target)`` when
    ``log_target`` (then the target is log-normal). ``target`` is in original units either way.
    Returns ``{nll, coverage_<pct>, mean_interval_width}``: the mean NLL of the target in original
    units (with the constant; ``+ log(target)`` from the change of variables when
    ``log_target``), the fraction of targets inside the central ``level`` interval
    ``mean ± z * std`` (``exp`` of it when ``log_target``) and that interval's mean width in
    original units.
    """
    mean, std, target = _finite(mean, std, target)
    if np.any(std <= 0):
        raise ValueError("gaussian_metrics: standard deviations must be positive")
    if log_target and np.any(target <= 0):
        raise ValueError("gaussian_metrics: log_target needs positive targets")
    y = np.log(target) if log_target else target
    nll = 0.5 * np.log(2 * np.pi * std**2) + (y - mean) ** 2 / (2 * std**2)
    if log_target:
        nll = nll + y
    z = norm.ppf(0.5 + level / 2)
    lower, upper = mean - z * std, mean + z * std
    if log_target:
        lower, upper = np.exp(lower), np.exp(upper)
    inside = (target >= lower) & (target <= upper)
    empty = len(target) == 0
    return {"nll": math.nan if empty else float(np.mean(nll)),
            _level_name(level): math.nan if empty else float(np.mean(inside)),
            "mean_interval_width": math.nan if empty else float(np.mean(upper - lower))}


def regression_report(predictions: dict[str, pd.DataFrame], name: str,
                      events: Mapping[str, Mapping] | None = None,
                      gaussian: Mapping | None = None) -> dict:
    """``{split: {name: {mae, rmse, r2, pearson, n[, nll, coverage_<pct>,
    mean_interval_width]}, <event>: {auroc, ap, positives}}}``.

    ``predictions[split]`` has ``predicted_<name>`` and ``target_<name>`` columns in the target's
    units; with ``gaussian=dict(level=..., log_target=...)`` also ``mean_<name>`` and
    ``std_<name>`` on the Gaussian's own scale (see ``gaussian_metrics``). ``events`` as in
    ``event_detection``.
    """
    report = {}
    for split, table in predictions.items():
        predicted = table[predicted_of(name)].to_numpy()
        target = table[target_of(name)].to_numpy()
        row = regression_metrics(predicted, target)
        if gaussian is not None:
            row.update(gaussian_metrics(table[mean_of(name)].to_numpy(),
                                        table[std_of(name)].to_numpy(), target, **gaussian))
        report[split] = {name: row, **event_detection(predicted, target, events or {})}
    return report
