"""The report of a time-to-event objective: per split, the number of exams and events,
Harrell's C, Uno's C (truncated at the last horizon), the time-dependent AUROC at each
horizon and, for models that predict survival curves, the Brier score at each horizon and
the integrated Brier score over the horizons.

Censoring weights (Uno's C, AUROC, Brier) use the Kaplan–Meier censoring distribution of the
split itself, which is consistent when censoring is independent of the ECG. The risk of the
time-dependent AUROC at horizon ``h`` is ``risk_score``, or ``1 - S(h)`` for models that
predict ``survival_at_<h>``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ecgexp.columns import RISK, target_of
from ecgexp.metrics.survival import (
    brier_scores,
    harrell_c,
    integrated_brier_score,
    time_dependent_auroc,
    uno_c,
)

log = logging.getLogger(__name__)


def survival_arrays(table: pd.DataFrame, time_column: str, event_column: str,
                    survival_columns: Sequence[str]) -> tuple[np.ndarray, ...]:
    """``time``, ``event``, ``risk`` ``(n,)`` and ``survival`` ``(n, len(survival_columns))``
    from a predictions table."""
    return (table[target_of(time_column)].to_numpy(np.float64),
            table[target_of(event_column)].to_numpy(np.float64),
            table[RISK].to_numpy(np.float64),
            table[list(survival_columns)].to_numpy(np.float64))


def survival_metrics(time: np.ndarray, event: np.ndarray, risk: np.ndarray,
                     survival: np.ndarray, horizons: Sequence[float]) -> dict[str, float]:
    """The report's metrics of one split (see the module docstring); NaN where undefined
    (no event, no exam past a horizon)."""
    horizons = list(horizons)
    metrics = {"n": len(time), "events": int(event.sum())}
    names = ["harrell_c", "uno_c", *(f"auroc_at_{h:g}" for h in horizons)]
    if survival.shape[1]:
        names += [f"brier_at_{h:g}" for h in horizons] + (["ibs"] if len(horizons) > 1 else [])
    if not event.any():
        return {**metrics, **dict.fromkeys(names, math.nan)}
    metrics["harrell_c"] = harrell_c(time, event, risk)
    metrics["uno_c"] = uno_c(time, event, risk, tau=horizons[-1])
    for i, h in enumerate(horizons):
        at_h = risk if survival.shape[1] == 0 else 1 - survival[:, i]
        metrics[f"auroc_at_{h:g}"] = float(time_dependent_auroc(time, event, at_h, [h])[0])
    if survival.shape[1]:
        brier = brier_scores(time, event, survival, horizons)
        metrics.update({f"brier_at_{h:g}": float(b) for h, b in zip(horizons, brier)})
        if len(horizons) > 1:
            metrics["ibs"] = integrated_brier_score(time, event, survival, horizons)
    return metrics


def survival_report(predictions: dict[str, pd.DataFrame], time_column: str, event_column: str,
                    horizons: Sequence[float], survival_columns: Sequence[str] = ()
                    ) -> dict[str, dict[str, dict]]:
    """``{split: {event_column: metrics}}`` of predictions tables with ``risk_score``,
    ``target_<time_column>``, ``target_<event_column>`` and the ``survival_columns``."""
    report = {}
    for split, table in predictions.items():
        arrays = survival_arrays(table, time_column, event_column, survival_columns)
        if not arrays[1].any():
            log.warning("%s split: no %s event among its %d exams; its survival metrics are "
                        "undefined (NaN)", split, event_column, len(table))
        report[split] = {event_column: survival_metrics(*arrays, horizons)}
    return report
