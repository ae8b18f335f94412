"""Binary-label evaluation: thresholds, the metrics at them, and the Chagas challenge score.

A label is predicted positive when its score is **at or above** the threshold. Thresholds are
chosen on the ``val`` split (``THRESHOLD_SPLIT``) and applied unchanged to every split. Scores
used for thresholds are probabilities in [0, 1] (torchmetrics would otherwise apply a sigmoid
and return thresholds on that scale).
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
    binary_matthews_corrcoef,
    binary_precision_recall_curve,
    binary_roc,
    binary_stat_scores,
)

THRESHOLD_SPLIT = "val"
THRESHOLD_RULES = ("max_f1", "youden", "specificity_<pct>")


def _scores(scores: np.ndarray) -> torch.Tensor:
    # float64: a float32 threshold can round above the score it came from and drop that record.
    return torch.tensor(np.asarray(scores), dtype=torch.float64)


def _labels(targets: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(targets), dtype=torch.long)


def _probabilities(scores: np.ndarray) -> torch.Tensor:
    tensor = _scores(scores)
    if len(tensor) and (tensor.min() < 0 or tensor.max() > 1):
        raise ValueError("evaluation: thresholds are chosen on probabilities in [0, 1]; got "
                         f"scores in [{float(tensor.min())}, {float(tensor.max())}]")
    return tensor


def require_threshold_split(predictions: dict[str, pd.DataFrame]) -> None:
    """Raises a ValueError when the ``val`` predictions, where thresholds are chosen, are absent."""
    if THRESHOLD_SPLIT not in predictions:
        raise ValueError("evaluation: thresholds are chosen on the 'val' predictions, "
                         "which are missing")


def max_f1_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The score threshold (``score >= t`` is positive) that maximises F1."""
    precision, recall, thresholds = binary_precision_recall_curve(_probabilities(scores),
                                                                  _labels(targets))
    precision, recall = precision[:-1], recall[:-1]
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(thresholds[int(torch.argmax(f1))])


def _roc(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr, thresholds)``, thresholds decreasing; the first point (nothing
    positive) gets threshold ``inf`` instead of torchmetrics' 1.0, which a score of 1.0 meets."""
    fpr, tpr, thresholds = binary_roc(_probabilities(scores), _labels(targets))
    thresholds = thresholds.numpy().copy()
    thresholds[0] = math.inf
    return fpr.numpy(), tpr.numpy(), thresholds


def youden_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The ROC threshold (``score >= t`` is positive) maximising Youden's J = tpr - fpr.

    Ties go to the highest threshold. ``inf`` (nothing positive) when no point beats J = 0.
    """
    fpr, tpr, thresholds = _roc(scores, targets)
    return float(thresholds[int(np.argmax(tpr - fpr))])


def specificity_threshold(scores: np.ndarray, targets: np.ndarray,
                          specificity: float = 0.9) -> float:
    """The ROC threshold whose false-positive rate is nearest ``1 - specificity``.

    The published Chagas rule, argmin |fpr - (1 - specificity)|, over every ROC point (one per
    distinct score; sklearn's default curve drops collinear points). Ties go to the highest
    threshold; ``score >= t`` is positive.
    """
    fpr, _, thresholds = _roc(scores, targets)
    return float(thresholds[int(np.argmin(np.abs(fpr - (1 - specificity))))])


def _threshold_rule_error(rule: str) -> ValueError:
    return ValueError(f"task.threshold_rules: unknown rule '{rule}'; valid forms are "
                      f"{', '.join(THRESHOLD_RULES)} (e.g. specificity_90)")


def choose_threshold(rule: str, scores: np.ndarray, targets: np.ndarray) -> float:
    """The threshold of ``rule``: ``max_f1``, ``youden`` or ``specificity_<pct>`` (percent)."""
    if rule == "max_f1":
        return max_f1_threshold(scores, targets)
    if rule == "youden":
        return youden_threshold(scores, targets)
    prefix, _, pct = rule.partition("_")
    if prefix != "specificity":
        raise _threshold_rule_error(rule)
    try:
        specificity = float(pct) / 100
    except ValueError:
        raise _threshold_rule_error(rule) from None
    if not 0 <= specificity <= 1:
        raise _threshold_rule_error(rule)
    return specificity_threshold(scores, targets, specificity)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def scores_at_threshold(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict:
    """Precision, recall (sensitivity), specificity and F1 of ``score >= threshold``."""
    predicted = torch.as_tensor(scores >= threshold, dtype=torch.long)
    tp, fp, tn, fn, _ = binary_stat_scores(predicted, _labels(targets)).tolist()
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def detection_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict:
    """``{sensitivity, specificity, precision, f1, balanced_accuracy, mcc}`` of
    ``score >= threshold``; NaN where a denominator is zero (MCC: any margin of the 2x2 table)."""
    predicted = torch.as_tensor(np.asarray(scores) >= threshold, dtype=torch.long)
    labels = _labels(targets)
    tp, fp, tn, fn, _ = binary_stat_scores(predicted, labels).tolist()
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    margins = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    return {"sensitivity": sensitivity, "specificity": specificity,
            "precision": _ratio(tp, tp + fp), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "balanced_accuracy": (sensitivity + specificity) / 2,
            "mcc": float(binary_matthews_corrcoef(predicted, labels)) if margins else math.nan}


def challenge_score(scores: np.ndarray, targets: np.ndarray, fraction: float = 0.05) -> float:
    """PhysioNet/CinC Challenge 2025 score: the fraction of all positives ranked in the top
    ``int(fraction * N)`` records by score (N records; NaN without positives).

    Ties: the official ``compute_challenge_score`` averages the true positives over random
    permutations of the records before a stable sort. This computes that average exactly: the
    records scored above the cut-off score (the score of the last record inside the capacity)
    all count, and the ``k`` remaining places are shared by the ``m`` records tied at the cut-off,
    which contribute ``k / m`` times their number of positives.
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets).astype(int)
    positives = int(np.sum(targets == 1))
    if positives == 0:
        return math.nan
    capacity = int(fraction * len(scores))
    if capacity == 0:
        return 0.0
    cutoff = np.sort(scores)[::-1][capacity - 1]
    above, tied = scores > cutoff, scores == cutoff
    places = capacity - int(np.sum(above))
    expected_tp = np.sum(targets[above] == 1) + places * np.sum(targets[tied] == 1) / np.sum(tied)
    return float(expected_tp / positives)


def nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def ranking_scores(scores: np.ndarray, targets: np.ndarray) -> dict:
    """AUROC and average precision; NaN when the targets hold a single class."""
    if len(np.unique(targets)) < 2:
        return {"auroc": math.nan, "ap": math.nan}
    return {"auroc": float(binary_auroc(_scores(scores), _labels(targets))),
            "ap": float(binary_average_precision(_scores(scores), _labels(targets)))}


def binary_report(predictions: dict[str, pd.DataFrame], labels: Sequence[str],
                  thresholds: dict[str, float] | None = None) -> dict:
    """``{split: {label | "macro": {auroc, ap, threshold, precision, recall, specificity, f1}}}``.

    ``predictions[split]`` has ``score_<label>`` and ``target_<label>`` columns. Unless fixed
    ``thresholds`` are given, they are chosen on the ``val`` split to maximise F1; either way
    they are applied unchanged to every split.
    """
    if thresholds is None:
        require_threshold_split(predictions)
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
        per_label["macro"] = {m: nanmean([per_label[label][m] for label in labels])
                              for m in metric_names}
        report[split] = per_label
    return report


def single_label_report(predictions: dict[str, pd.DataFrame], label: str,
                        threshold_rules: Sequence[str] = ("max_f1", "youden", "specificity_90"),
                        challenge_fraction: float = 0.05) -> dict:
    """One binary label (Chagas) on every split.

    ``predictions[split]`` has ``score_<label>`` (probability) and ``target_<label>`` (0/1)
    columns. Returns ``{split: {label: {auroc, ap, challenge_score, n, positives},
    <rule>: {threshold, sensitivity, specificity, precision, f1, balanced_accuracy, mcc}}}``
    with a row per threshold rule (see ``choose_threshold``), each threshold chosen on the
    ``val`` split and applied unchanged to every split.
    """
    require_threshold_split(predictions)
    score, target = f"score_{label}", f"target_{label}"
    tuning = predictions[THRESHOLD_SPLIT]
    thresholds = {rule: choose_threshold(rule, tuning[score].to_numpy(),
                                         tuning[target].to_numpy().astype(int))
                  for rule in threshold_rules}
    report = {}
    for split, table in predictions.items():
        scores, targets = table[score].to_numpy(), table[target].to_numpy().astype(int)
        rows = {label: {**ranking_scores(scores, targets),
                        "challenge_score": challenge_score(scores, targets, challenge_fraction),
                        "n": float(len(targets)), "positives": float(np.sum(targets == 1))}}
        for rule, threshold in thresholds.items():
            rows[rule] = {"threshold": threshold,
                          **detection_metrics(scores, targets, threshold)}
        report[split] = rows
    return report
