"""Decision curves (Vickers & Elkin 2006, "Decision curve analysis: a novel method for
evaluating prediction models", Med. Decis. Making 26:565-574).

At a threshold probability ``pt`` the exams with ``p >= pt`` are treated; the net benefit
weighs the true positives against the false positives by the odds of ``pt`` (the harm of an
unneeded treatment relative to the benefit of a needed one that ``pt`` implies):

    net_benefit(pt) = TP / n - FP / n * pt / (1 - pt)

The references: treating every exam (``prevalence - (1 - prevalence) * pt / (1 - pt)``) and
treating none (0).
"""

from __future__ import annotations

import numpy as np


def checked_thresholds(thresholds) -> np.ndarray:
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or not np.all((thresholds > 0) & (thresholds < 1)):
        raise ValueError("decision curve: thresholds must be a 1-D array of probabilities "
                         "in (0, 1)")
    return thresholds


def _checked_targets(targets) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim != 1 or not len(targets) or not np.isin(targets, (0, 1)).all():
        raise ValueError("decision curve: targets must be a non-empty 1-D array of 0/1")
    return targets.astype(bool)


def net_benefit(probabilities, targets, thresholds) -> np.ndarray:
    """The net benefit ``(len(thresholds),)`` of treating the exams with ``probabilities >=
    pt``, for each threshold ``pt`` in (0, 1); ``targets`` 0/1, one per exam."""
    targets, thresholds = _checked_targets(targets), checked_thresholds(thresholds)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != targets.shape or np.isnan(probabilities).any():
        raise ValueError(f"decision curve: expected one probability (no NaN) per target; got "
                         f"shapes {probabilities.shape} and {targets.shape}")
    treated = probabilities[None, :] >= thresholds[:, None]  # (thresholds, exams)
    true_positives = (treated & targets).sum(axis=1)
    false_positives = (treated & ~targets).sum(axis=1)
    return (true_positives - false_positives * thresholds / (1 - thresholds)) / len(targets)


def treat_all(targets, thresholds) -> np.ndarray:
    """The net benefit ``(len(thresholds),)`` of treating every exam."""
    targets, thresholds = _checked_targets(targets), checked_thresholds(thresholds)
    prevalence = targets.mean()
    return prevalence - (1 - prevalence) * thresholds / (1 - thresholds)
