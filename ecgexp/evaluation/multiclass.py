"""Single-label multi-class evaluation (the :class:`~ecgexp.tasks.multiclass.MultiClass`
objective; AF risk is its configuration with classes 1, 2, 3 and the contrast "3 vs 1").

Predictions tables have one probability column per class (``prob_<name>``, softmax outputs in
the order of the classes) and ``target_<label>`` holding the class values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_auroc

from ecgexp.columns import probability_of, target_of
from ecgexp.errors import UserError
from ecgexp.evaluation.binary import (
    THRESHOLD_SPLIT,
    detection_metrics,
    max_f1_threshold,
    missing_class,
    nanmean,
    ranking_scores,
    require_threshold_split,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Contrast:
    """Class ``positive`` against class ``negative``, the exams of other classes left out,
    scored by ``p_positive / (p_positive + p_negative)``; its decision threshold maximises F1
    on validation. With ``event_time`` (and ``censor_time``) columns of the exam table the
    score is also related to the time to the event (Cox model, Kaplan–Meier by score bin).
    AF risk's ``class3_vs_1``: AF in a later exam against no AF (docs/studies.md §3.4)."""

    name: str
    positive: int
    negative: int
    event_time: str | None = None
    censor_time: str | None = None
    time_unit: str = ""

    @classmethod
    def from_config(cls, name: str, rule: Mapping, classes: Sequence[float]) -> Contrast:
        key = f"task.objective.contrasts.{name}"
        unknown = set(rule) - {"positive", "negative", "event_time", "censor_time", "time_unit"}
        if unknown or not {"positive", "negative"} <= set(rule):
            raise UserError(f"{key}: expects positive and negative class values (and "
                            f"optionally event_time, censor_time, time_unit), got {dict(rule)}")
        index = {}
        if rule["positive"] == rule["negative"]:
            raise UserError(f"{key}: positive and negative must be two different classes, got "
                            f"{rule['positive']} twice")
        for side in ("positive", "negative"):
            if not isinstance(rule[side], int | float) or float(rule[side]) not in classes:
                raise UserError(f"{key}.{side}: {rule[side]} is not one of the classes "
                                f"{list(classes)}")
            index[side] = classes.index(float(rule[side]))
        return cls(name, index["positive"], index["negative"], rule.get("event_time"),
                   rule.get("censor_time"), str(rule.get("time_unit", "")))

    def scores(self, probabilities: np.ndarray, classes: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(kept, score, is_positive)`` for ``(n, K)`` probabilities and ``(n,)`` class
        indices: the mask of the exams of the two classes, their score and target."""
        kept = np.isin(classes, (self.positive, self.negative))
        positive, negative = probabilities[kept, self.positive], probabilities[kept, self.negative]
        return kept, positive / (positive + negative), (classes[kept] == self.positive).astype(int)


def class_indices(table: pd.DataFrame, label: str, classes: Sequence[float]) -> np.ndarray:
    """The ``target_<label>`` class values as indices into ``classes``."""
    values = table[target_of(label)].to_numpy(dtype=np.float64)
    known = np.isin(values, classes)
    if not known.all():
        unknown = sorted(set(values[~known].tolist()))[:5]
        raise UserError(f"evaluation: target_{label} holds {unknown}, not among the classes "
                        f"{list(classes)} (task.objective.classes)")
    lookup = {value: index for index, value in enumerate(classes)}
    return np.array([lookup[v] for v in values], dtype=int)


def probabilities_of(table: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    return table[[probability_of(name) for name in names]].to_numpy(dtype=np.float64)


def multiclass_report(predictions: dict[str, pd.DataFrame], label: str,
                      classes: Sequence[float], names: Sequence[str],
                      contrasts: Sequence[Contrast] = ()) -> dict:
    """``{split: {<name>: {auroc, ap, n}, <contrast>: {auroc, ap, threshold, sensitivity, ppv,
    specificity, f1}, macro: {auroc, ap}, overall: {accuracy, weighted_ovr_auroc}}}``.

    ``<name>`` is one-vs-rest on its class's probability and ``n`` counts the exams of the
    class. A contrast's threshold maximises F1 on the ``val`` split and is applied unchanged
    to every split. ``accuracy`` is that of the argmax class; ``weighted_ovr_auroc`` weights
    the one-vs-rest AUROCs by class support (NaN with fewer than two classes present);
    ``macro`` averages the one-vs-rest AUROC and AP over the classes that have positives.
    """
    classes = list(classes)
    if contrasts:
        require_threshold_split(predictions)
        tuning = predictions[THRESHOLD_SPLIT]
        tuning_probabilities = probabilities_of(tuning, names)
        tuning_classes = class_indices(tuning, label, classes)
        thresholds = {}
        for contrast in contrasts:  # none chosen where val lacks a class (metrics undefined)
            _, scores, positive = contrast.scores(tuning_probabilities, tuning_classes)
            lacking = missing_class(positive)
            if lacking is not None:
                log.warning("%s: contrast '%s' has no %s exams, so no threshold is chosen for "
                            "it: its sensitivity, PPV, specificity and F1 are undefined on "
                            "every split", THRESHOLD_SPLIT, contrast.name, lacking)
            thresholds[contrast.name] = (math.nan if lacking is not None
                                         else max_f1_threshold(scores, positive))
    report = {}
    for split, table in predictions.items():
        probabilities, targets = probabilities_of(table, names), class_indices(table, label,
                                                                                classes)
        rows = {name: {**ranking_scores(probabilities[:, k], (targets == k).astype(int)),
                       "n": float(np.sum(targets == k))}
                for k, name in enumerate(names)}
        for contrast in contrasts:
            _, scores, positive = contrast.scores(probabilities, targets)
            detection = detection_metrics(scores, positive, thresholds[contrast.name])
            rows[contrast.name] = {**ranking_scores(scores, positive),
                                   "threshold": thresholds[contrast.name],
                                   "sensitivity": detection["sensitivity"],
                                   "ppv": detection["precision"],
                                   "specificity": detection["specificity"],
                                   "f1": detection["f1"]}
        rows["macro"] = {metric: nanmean([rows[name][metric] for name in names])
                         for metric in ("auroc", "ap")}
        preds, indices = torch.tensor(probabilities), torch.tensor(targets)
        weighted = (float(multiclass_auroc(preds, indices, len(classes), average="weighted"))
                    if len(np.unique(targets)) > 1 else math.nan)
        rows["overall"] = {"accuracy": float(multiclass_accuracy(preds, indices, len(classes),
                                                                 average="micro")),
                           "weighted_ovr_auroc": weighted}
        report[split] = rows
    return report
