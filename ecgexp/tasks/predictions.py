"""The one place that turns model outputs into a predictions table, and thresholds into its
``label_*`` columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ecgexp.columns import label_of, score_of, target_of
from ecgexp.evaluation.binary import undefined_threshold


def predictions_table(batches: list[dict | None], objective,
                      names: np.ndarray | None = None) -> pd.DataFrame:
    """``exam_id``, the objective's prediction columns, one ``target_*`` column per target and
    the objective's derived columns (e.g. ``age_gap``).

    ``batches`` are ``predict_step`` outputs (``exam_id``, ``score``, ``target`` tensors);
    ``names``: the exam ids of their ``exam_id`` keys when those are positions (the dataset's
    ``names``, for exams identified by record names).
    """
    batches = [b for b in batches if b is not None]
    columns = ["exam_id", *objective.prediction_columns,
               *(target_of(name) for name in objective.target_columns)]
    if not batches:
        return pd.DataFrame(columns=columns)
    exam_ids = torch.cat([b["exam_id"] for b in batches]).numpy()
    if names is not None:
        exam_ids = names[exam_ids]
    scores = torch.cat([b["score"] for b in batches]).float().numpy()
    targets = torch.cat([b["target"] for b in batches]).float().numpy()
    table = pd.DataFrame(scores.reshape(len(exam_ids), -1), columns=objective.prediction_columns)
    table.insert(0, "exam_id", exam_ids)
    for i, name in enumerate(objective.target_columns):
        table[target_of(name)] = targets.reshape(len(exam_ids), -1)[:, i]
    return objective.add_derived_columns(table[columns].copy())


def add_threshold_labels(table: pd.DataFrame, thresholds: dict[str, float]) -> None:
    """Adds to ``table``, for each ``label: threshold`` whose ``score_<label>`` it holds, the
    column ``label_<label>`` = ``score >= threshold`` (0/1, nullable): empty where the score
    is missing or the threshold undefined (a validation split without positives)."""
    for label, threshold in thresholds.items():
        if score_of(label) in table:
            scores = table[score_of(label)]
            defined = scores.notna() & bool(not undefined_threshold(threshold))
            table[label_of(label)] = (scores >= threshold).astype("Int64").where(defined)
