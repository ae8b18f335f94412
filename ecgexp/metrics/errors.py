"""The errors of a regression with exam weights (``None``, ``(n,)`` or ``(R, n)``): MAE, RMSE,
R² (one minus the residual over the total sum of squares about the target's mean) and
Pearson's r, each over the pairs where neither value is NaN. R² and r are NaN with fewer than
two pairs or without spread; every metric is NaN without pairs."""

from __future__ import annotations

import numpy as np

from ecgexp.metrics.weights import as_weights, result

METRICS = ("mae", "rmse", "r2", "pearson")


def regression_errors(predicted: np.ndarray, target: np.ndarray,
                      weights: np.ndarray | None = None) -> dict[str, np.ndarray | float]:
    """``{mae, rmse, r2, pearson}`` of ``predicted (n,)`` against ``target (n,)``: floats, or
    ``(R,)`` arrays for weights ``(R, n)``."""
    predicted = np.asarray(predicted, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if predicted.shape != target.shape or predicted.ndim != 1:
        raise ValueError(f"predicted {predicted.shape} and target {target.shape} must be one "
                         f"column of the same exams")
    weights, single = as_weights(weights, len(target))
    keep = ~(np.isnan(predicted) | np.isnan(target))
    p, t, w = predicted[keep], target[keep], weights[:, keep]
    error = p - t
    with np.errstate(divide="ignore", invalid="ignore"):
        total = w.sum(axis=1)
        mean_p, mean_t = (w @ p) / total, (w @ t) / total
        squared = w @ error ** 2
        spread_t = w @ t ** 2 - total * mean_t ** 2
        spread_p = w @ p ** 2 - total * mean_p ** 2
        covariance = w @ (p * t) - total * mean_p * mean_t
        values = {"mae": (w @ np.abs(error)) / total, "rmse": np.sqrt(squared / total),
                  "r2": 1 - squared / spread_t,
                  "pearson": covariance / np.sqrt(spread_p * spread_t)}
    # A spread that is rounding error of the sums (every pair the same value) is no spread.
    spread = (spread_t > 1e-12 * (w @ t ** 2)) & (total >= 2)
    values["r2"] = np.where(spread, values["r2"], np.nan)
    values["pearson"] = np.where(spread & (spread_p > 1e-12 * (w @ p ** 2)), values["pearson"],
                                 np.nan)
    for name in ("mae", "rmse"):
        values[name] = np.where(total > 0, values[name], np.nan)
    return {name: result(value, single) for name, value in values.items()}
