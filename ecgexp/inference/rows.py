"""The one builder of predictions-table rows from what the inference loop yields
(:mod:`ecgexp.inference.loop`), and of the ``label_*`` columns from thresholds.

Every predictions table (a run's ``predictions_<split>.csv``, its external test sets,
``ecgexp-predict``, the Python API) has its columns in this order: the exam's identifiers
(``exam_id``, ``record`` for raw records), the objective's prediction columns in its units
(for an ensemble the members' mean, then ``<column>_sd``), ``label_<name>`` for each
threshold, ``target_<name>`` per target when the targets are known, the objective's derived
columns (e.g. ``age_gap``); then what the path adds (``amplitude_mv``, ``flags``,
``problem``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecgexp.columns import label_of, score_of, target_of
from ecgexp.evaluation.binary import undefined_threshold


def prediction_rows(objective, predictions: np.ndarray, identifiers: dict | None = None,
                    thresholds: dict[str, float] | None = None,
                    targets: np.ndarray | None = None) -> pd.DataFrame:
    """The rows of one batch.

    ``predictions``: ``(members, exams, len(objective.prediction_columns))``;
    ``identifiers``: ``{column: (exams,) values}`` put first; ``thresholds``: ``{label:
    threshold}``; ``targets``: ``(exams, len(objective.target_columns))`` in the target's
    units, or None when the exams have none (then no derived columns either)."""
    predictions = np.asarray(predictions)
    table = pd.DataFrame({name: np.asarray(values)
                          for name, values in (identifiers or {}).items()})
    columns = objective.prediction_columns
    mean = predictions.mean(axis=0) if len(predictions) > 1 else predictions[0]
    table[columns] = mean.reshape(predictions.shape[1], len(columns))
    if len(predictions) > 1:
        table[[f"{c}_sd" for c in columns]] = predictions.std(axis=0, ddof=1)
    add_threshold_labels(table, thresholds or {})
    if targets is not None:
        targets = np.asarray(targets).reshape(len(table), len(objective.target_columns))
        target_columns = pd.DataFrame(targets, index=table.index, columns=[
            target_of(name) for name in objective.target_columns])
        table = objective.add_derived_columns(pd.concat([table, target_columns], axis=1))
    return table


def add_threshold_labels(table: pd.DataFrame, thresholds: dict[str, float]) -> None:
    """Adds to ``table``, for each ``label: threshold`` whose ``score_<label>`` it holds, the
    column ``label_<label>`` = ``score >= threshold`` (0/1, nullable): empty where the score
    is missing or the threshold undefined (a validation split without positives)."""
    for label, threshold in thresholds.items():
        if score_of(label) in table:
            scores = table[score_of(label)]
            defined = scores.notna() & bool(not undefined_threshold(threshold))
            table[label_of(label)] = (scores >= threshold).astype("Int64").where(defined)
