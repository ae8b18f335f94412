"""AF-risk evaluation: three classes, 1 no AF, 2 AF in the exam, 3 AF in a later exam.

Predictions tables have softmax columns ``prob_class1``, ``prob_class2``, ``prob_class3`` and a
``target_<label>`` column holding 1, 2 or 3.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_auroc

from ecgexp.evaluation.binary import (
    THRESHOLD_SPLIT,
    detection_metrics,
    max_f1_threshold,
    ranking_scores,
    require_threshold_split,
)

CLASSES = (1, 2, 3)


def _probabilities_and_targets(table: pd.DataFrame, label: str) -> tuple[np.ndarray, np.ndarray]:
    probabilities = table[[f"prob_class{k}" for k in CLASSES]].to_numpy(dtype=np.float64)
    targets = table[f"target_{label}"].to_numpy()
    if not np.isin(targets, CLASSES).all():
        raise ValueError(f"af_risk_report: target_{label} must hold the classes 1, 2 and 3")
    return probabilities, targets.astype(int)


def _later_af(probabilities: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class 3 vs class 1 with class-2 exams removed: score p3 / (p1 + p3), target class 3."""
    keep = targets != 2
    p1, p3 = probabilities[keep, 0], probabilities[keep, 2]
    return p3 / (p1 + p3), (targets[keep] == 3).astype(int)


def af_risk_report(predictions: dict[str, pd.DataFrame], label: str = "exam_class") -> dict:
    """``{split: {class1 | class2 | class3: {auroc, ap, n}, class3_vs_1: {auroc, ap, threshold,
    sensitivity, ppv, specificity, f1}, overall: {accuracy, weighted_ovr_auroc}}}``.

    ``classK`` is one-vs-rest on ``prob_classK`` and ``n`` counts the exams of class K.
    ``class3_vs_1`` drops the class-2 exams and scores ``p3 / (p1 + p3)``; its threshold
    maximises F1 on the ``val`` split and is applied unchanged to every split. ``accuracy`` is
    that of the argmax class; ``weighted_ovr_auroc`` weights the one-vs-rest AUROCs by class
    support (NaN with fewer than two classes present).
    """
    require_threshold_split(predictions)
    threshold = max_f1_threshold(*_later_af(*_probabilities_and_targets(
        predictions[THRESHOLD_SPLIT], label)))
    report = {}
    for split, table in predictions.items():
        probabilities, targets = _probabilities_and_targets(table, label)
        rows = {f"class{k}": {**ranking_scores(probabilities[:, k - 1], (targets == k).astype(int)),
                              "n": float(np.sum(targets == k))}
                for k in CLASSES}
        scores, later = _later_af(probabilities, targets)
        detection = detection_metrics(scores, later, threshold)
        rows["class3_vs_1"] = {**ranking_scores(scores, later), "threshold": threshold,
                               "sensitivity": detection["sensitivity"],
                               "ppv": detection["precision"],
                               "specificity": detection["specificity"], "f1": detection["f1"]}
        preds, classes = torch.tensor(probabilities), torch.tensor(targets - 1)
        weighted = (float(multiclass_auroc(preds, classes, len(CLASSES), average="weighted"))
                    if len(np.unique(targets)) > 1 else math.nan)
        rows["overall"] = {"accuracy": float(multiclass_accuracy(preds, classes, len(CLASSES),
                                                                 average="micro")),
                           "weighted_ovr_auroc": weighted}
        report[split] = rows
    return report
