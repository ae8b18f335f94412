"""Binary-label evaluation: thresholds, the metrics at them, and the Chagas challenge score.

A label is predicted positive when its score is **at or above** the threshold. Thresholds are
chosen on the ``val`` split (``THRESHOLD_SPLIT``) and applied unchanged to every split. Scores
used for thresholds are probabilities in [0, 1] (torchmetrics would otherwise apply a sigmoid
and return thresholds on that scale).

Undefined values are NaN. A split without positive (or without negative) exams of a label
leaves that label's metrics undefined on the split; a validation split without both classes
gives the label no threshold (NaN), so its thresholded metrics are undefined on every split.
Such labels are left out of every macro average of the split, with one warning naming them.
"""

from __future__ import annotations

import logging
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

from ecgexp.columns import score_of, target_of

log = logging.getLogger(__name__)

THRESHOLD_SPLIT = "val"
THRESHOLD_RULES = ("max_f1", "youden", "specificity_<pct>")
THRESHOLD_REMEDY = ("give ecgexp-evaluate fixed thresholds=[...] (one per label), or a validation "
                    "split (dataset.split.val_fraction) with positive and negative exams")


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


def missing_class(targets: np.ndarray) -> str | None:
    """``"positive"`` or ``"negative"``: the class of 0/1 ``targets`` without any exam (an
    empty split has no positives); ``None`` when both classes are present."""
    targets = np.asarray(targets)
    if not np.any(targets == 1):
        return "positive"
    if not np.any(targets == 0):
        return "negative"
    return None


def undefined_threshold(threshold) -> bool:
    """Whether ``threshold`` is undefined (``None`` or NaN, a label without one)."""
    return threshold is None or math.isnan(threshold)


def _undefined_labels(missing: dict[str, str]) -> tuple[str, bool]:
    """``{label: missing class}`` -> ``"label 'a' has no positive exams and labels 'b', 'c'
    have no negative exams"`` and whether it names one label."""
    parts = []
    for kind in ("positive", "negative"):
        names = [label for label, lacking in missing.items() if lacking == kind]
        if names:
            quoted = ", ".join(f"'{name}'" for name in names)
            parts.append(f"label {quoted} has no {kind} exams" if len(names) == 1
                         else f"labels {quoted} have no {kind} exams")
    return " and ".join(parts), len(missing) == 1


def warn_undefined_labels(split: str, missing: dict[str, str]) -> None:
    """The one warning of a split whose labels ``{label: missing class}`` are undefined."""
    if missing:
        labels, one = _undefined_labels(missing)
        log.warning("%s: %s; %s metrics are undefined and %s left out of the macro averages",
                    split, labels, "its" if one else "their", "it is" if one else "they are")


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


def validation_thresholds(tuning: pd.DataFrame, labels: Sequence[str],
                          rules: Sequence[str]) -> tuple[dict[str, dict[str, float]],
                                                         dict[str, str]]:
    """``({label: {rule: threshold}}, {label: missing class})`` on the ``val`` table ``tuning``
    (``score_<label>``, ``target_<label>``): no threshold is chosen (NaN) for a label whose
    validation exams are all positive or all negative; the second dict names those labels."""
    thresholds, missing = {}, {}
    for label in labels:
        scores = tuning[score_of(label)].to_numpy()
        targets = tuning[target_of(label)].to_numpy().astype(int)
        lacking = missing_class(targets)
        if lacking is not None:
            missing[label] = lacking
            thresholds[label] = dict.fromkeys(rules, math.nan)
        else:
            thresholds[label] = {rule: choose_threshold(rule, scores, targets) for rule in rules}
    return thresholds, missing


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def scores_at_threshold(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict:
    """Precision, recall (sensitivity), specificity and F1 of ``score >= threshold``; all NaN
    when the threshold is undefined (``None`` or NaN)."""
    if undefined_threshold(threshold):
        return dict.fromkeys(("precision", "recall", "specificity", "f1"), math.nan)
    predicted = torch.as_tensor(scores >= threshold, dtype=torch.long)
    tp, fp, tn, fn, _ = binary_stat_scores(predicted, _labels(targets)).tolist()
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def detection_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict:
    """``{sensitivity, specificity, precision, f1, balanced_accuracy, mcc}`` of
    ``score >= threshold``; NaN where a denominator is zero (MCC: any margin of the 2x2 table),
    all NaN when the threshold is undefined (``None`` or NaN)."""
    if undefined_threshold(threshold):
        return dict.fromkeys(("sensitivity", "specificity", "precision", "f1",
                              "balanced_accuracy", "mcc"), math.nan)
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


def auroc(scores: np.ndarray, targets: np.ndarray) -> float:
    """AUROC; NaN when the targets hold a single class (the statistic the bootstrap
    resamples, so without the average precision of ``ranking_scores``)."""
    if len(np.unique(targets)) < 2:
        return math.nan
    return float(binary_auroc(_scores(scores), _labels(targets)))


def ranking_scores(scores: np.ndarray, targets: np.ndarray) -> dict:
    """AUROC and average precision; NaN when the targets hold a single class."""
    value = auroc(scores, targets)
    if math.isnan(value):
        return {"auroc": math.nan, "ap": math.nan}
    return {"auroc": value,
            "ap": float(binary_average_precision(_scores(scores), _labels(targets)))}


def _report_thresholds(predictions: dict[str, pd.DataFrame], labels: Sequence[str],
                       thresholds: dict[str, float] | None) -> tuple[dict[str, float], dict]:
    """``binary_report``'s thresholds (NaN where undefined), warned about once, and
    ``{split: labels}`` the warning already named as undefined on that split."""
    if thresholds is None:
        require_threshold_split(predictions)
        chosen, missing = validation_thresholds(predictions[THRESHOLD_SPLIT], labels, ["max_f1"])
        if missing:
            names, one = _undefined_labels(missing)
            log.warning("%s: %s, so no threshold is chosen for %s: %s precision, recall, "
                        "specificity and F1 are undefined on every split and %s left out of "
                        "the macro averages; %s", THRESHOLD_SPLIT, names, "it" if one else "them",
                        "its" if one else "their", "it is" if one else "they are",
                        THRESHOLD_REMEDY)
        return ({label: chosen[label]["max_f1"] for label in labels},
                {THRESHOLD_SPLIT: set(missing)})
    fixed = {label: math.nan if undefined_threshold(thresholds[label]) else thresholds[label]
             for label in labels}
    unset = [label for label in labels if math.isnan(fixed[label])]
    if unset:
        one = len(unset) == 1
        log.warning("thresholds: %s %s %s no threshold, so %s precision, recall, specificity "
                    "and F1 are undefined on every split and %s left out of the macro averages; "
                    "give a threshold for every label", "label" if one else "labels",
                    ", ".join(f"'{name}'" for name in unset), "has" if one else "have",
                    "its" if one else "their", "it is" if one else "they are")
    return fixed, {}


def binary_report(predictions: dict[str, pd.DataFrame], labels: Sequence[str],
                  thresholds: dict[str, float] | None = None) -> dict:
    """``{split: {label | "macro": {auroc, ap, threshold, precision, recall, specificity, f1}}}``.

    ``predictions[split]`` has ``score_<label>`` and ``target_<label>`` columns. Unless fixed
    ``thresholds`` are given, they are chosen on the ``val`` split to maximise F1; either way
    they are applied unchanged to every split.

    Undefined entries are NaN: every metric of a label on a split without positive (or without
    negative) exams of it, and the thresholded metrics of a label without a threshold (a
    validation split without both classes, or ``None``/NaN in ``thresholds``). A macro value
    is the mean over the split's defined labels (both classes present and a threshold), the
    same labels for every metric; one warning per split names the labels left out. Within
    them a value that is itself undefined (precision when the threshold flags no exam) is
    skipped.
    """
    thresholds, announced = _report_thresholds(predictions, labels, thresholds)
    without_threshold = {label for label in labels if undefined_threshold(thresholds[label])}
    report = {}
    for split, table in predictions.items():
        per_label, missing = {}, {}
        for label in labels:
            scores = table[score_of(label)].to_numpy()
            targets = table[target_of(label)].to_numpy().astype(int)
            lacking = missing_class(targets)
            if lacking is not None:  # every metric of the label is undefined on this split
                missing[label] = lacking
                per_label[label] = {"auroc": math.nan, "ap": math.nan,
                                    "threshold": thresholds[label],
                                    **scores_at_threshold(scores, targets, math.nan)}
            else:
                per_label[label] = {**ranking_scores(scores, targets),
                                    "threshold": thresholds[label],
                                    **scores_at_threshold(scores, targets, thresholds[label])}
        warn_undefined_labels(split, {label: lacking for label, lacking in missing.items()
                                      if label not in announced.get(split, set())})
        defined = [label for label in labels
                   if label not in missing and label not in without_threshold]
        metric_names = [m for m in next(iter(per_label.values())) if m != "threshold"]
        per_label["macro"] = {m: nanmean([per_label[label][m] for label in defined])
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
    ``val`` split and applied unchanged to every split; NaN thresholds and detection metrics,
    with a warning, when the validation exams are all positive or all negative.
    """
    require_threshold_split(predictions)
    score, target = score_of(label), target_of(label)
    chosen, missing = validation_thresholds(predictions[THRESHOLD_SPLIT], [label],
                                            threshold_rules)
    thresholds = chosen[label]
    if missing and threshold_rules:
        log.warning("%s: %s, so no threshold (%s) is chosen for it: its sensitivity, "
                    "specificity, precision, F1, balanced accuracy and MCC are undefined on "
                    "every split; %s", THRESHOLD_SPLIT, _undefined_labels(missing)[0],
                    ", ".join(threshold_rules), THRESHOLD_REMEDY)
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
