"""The exam weights every weighted metric accepts (see :mod:`ecgexp.metrics`)."""

from __future__ import annotations

import numpy as np


def as_weights(weights: np.ndarray | None, n: int) -> tuple[np.ndarray, bool]:
    """``(weights (R, n) float64, single)``: ``None`` is one row of ones, ``(n,)`` one row;
    ``single`` says the caller gave no resample axis (its result drops it)."""
    if weights is None:
        return np.ones((1, n)), True
    weights = np.asarray(weights, dtype=np.float64)
    single = weights.ndim == 1
    weights = np.atleast_2d(weights)
    if weights.ndim != 2 or weights.shape[1] != n:
        raise ValueError(f"weights {weights.shape} do not match {n} exams")
    return weights, single


def result(values: np.ndarray, single: bool) -> np.ndarray | float:
    """``values (R,)`` as given back: a float for unweighted or ``(n,)`` weights."""
    return float(values[0]) if single else values
