"""Binary-label evaluation: max-F1 thresholds and the metrics of each label at them.

A label is predicted positive when its score is **at or above** the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
    binary_stat_scores,
)

THRESHOLD_SPLIT = "val"


def _scores(scores: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(scores), dtype=torch.float32)


def _labels(targets: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(targets), dtype=torch.long)


def max_f1_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The score threshold (``score >= t`` is positive) that maximises F1."""
    precision, recall, thresholds = binary_precision_recall_curve(_scores(scores),
                                                                  _labels(targets))
    precision, recall = precision[:-1], recall[:-1]
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(thresholds[int(torch.argmax(f1))])


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def scores_at_threshold(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict:
    """Precision, recall (sensitivity), specificity and F1 of ``score >= threshold``."""
    predicted = torch.as_tensor(scores >= threshold, dtype=torch.long)
    tp, fp, tn, fn, _ = binary_stat_scores(predicted, _labels(targets)).tolist()
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def ranking_scores(scores: np.ndarray, targets: np.ndarray) -> dict:
    """AUROC and average precision; NaN when the targets hold a single class."""
    if len(np.unique(targets)) < 2:
        return {"auroc": math.nan, "ap": math.nan}
    return {"auroc": float(binary_auroc(_scores(scores), _labels(targets))),
            "ap": float(binary_average_precision(_scores(scores), _labels(targets)))}


def binary_report(predictions: dict[str, pd.DataFrame], labels: Sequence[str]) -> dict:
    """``{split: {label | "macro": {auroc, ap, threshold, precision, recall, specificity, f1}}}``.

    ``predictions[split]`` has ``score_<label>`` and ``target_<label>`` columns. Thresholds are
    chosen on the ``val`` split to maximise F1 and applied unchanged to every split.
    """
    if THRESHOLD_SPLIT not in predictions:
        raise ValueError("evaluation: thresholds are chosen on the 'val' predictions, "
                         "which are missing")
    tuning = predictions[THRESHOLD_SPLIT]
    thresholds = {label: max_f1_threshold(tuning[f"score_{label}"].to_numpy(),
                                          tuning[f"target_{label}"].to_numpy())
                  for label in labels}
    report = {}
    for split, table in predictions.items():
        per_label = {}
        for label in labels:
            scores = table[f"score_{label}"].to_numpy()
            targets = table[f"target_{label}"].to_numpy().astype(int)
            per_label[label] = {**ranking_scores(scores, targets), "threshold": thresholds[label],
                                **scores_at_threshold(scores, targets, thresholds[label])}
        metric_names = [m for m in next(iter(per_label.values())) if m != "threshold"]
        per_label["macro"] = {m: _nanmean([per_label[label][m] for label in labels])
                              for m in metric_names}
        report[split] = per_label
    return report
