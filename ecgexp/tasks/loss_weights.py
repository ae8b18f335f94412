"""Loss weights computed from the training targets only (never from validation or test).

Every rule returns plain floats so the weights can be logged and stored in checkpoints.
"""

from __future__ import annotations

import numpy as np


def inverse_frequency_weights(values: np.ndarray, max_weight: float | None = None,
                              ) -> tuple[np.ndarray, np.ndarray]:
    """ECG-age ``compute_weights``: weight ``1 / count(value)`` per exam, rescaled so the mean
    over the exams is 1; with ``max_weight`` the weights are clipped and rescaled again.

    Returns the distinct values and the weight of each (a lookup table).
    """
    values = np.asarray(values, dtype=np.float64)
    distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    per_exam = 1.0 / counts[inverse]
    per_exam = len(values) * per_exam / per_exam.sum()
    if max_weight is not None:
        if max_weight < 1:
            raise ValueError(f"task.objective.max_weight: must be at least 1 (the mean weight), "
                             f"got {max_weight}")
        per_exam = np.minimum(per_exam, max_weight)
        per_exam = len(values) * per_exam / per_exam.sum()
    weights = np.zeros(len(distinct))
    weights[inverse] = per_exam
    return distinct, weights


def class_weights(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """AF-risk rule ``n_max / n_c`` for class indices ``0..n_classes-1``."""
    counts = np.bincount(np.asarray(classes, dtype=np.int64), minlength=n_classes)
    if (counts == 0).any():
        raise ValueError(f"task.objective.class_weights=auto: class index "
                         f"{int(np.argmin(counts))} has no training exam")
    return counts.max() / counts


def positive_weight(targets: np.ndarray) -> float:
    """``pos_weight=auto``: negatives / positives of the training split."""
    targets = np.asarray(targets)
    positives = int((targets == 1).sum())
    if positives == 0:
        raise ValueError("task.objective.pos_weight=auto: the training split has no positive "
                         "exam")
    return float((targets == 0).sum() / positives)


def check_weight_option(option, key: str) -> None:
    """``task.objective.<key>`` is null, ``auto``, a number or a list."""
    if isinstance(option, str) and option != "auto":
        raise ValueError(f"task.objective.{key}: '{option}' is not 'auto', a number, a list "
                         f"or null")


def class_weights_option(option, classes: np.ndarray, n_classes: int) -> list[float]:
    """Class weights from ``task.objective.class_weights``: ``auto`` (``n_max / n_c`` of the
    training ``classes``) or one weight per class."""
    if option == "auto":
        return class_weights(classes, n_classes).tolist()
    weights = np.asarray(option, dtype=float)
    if weights.shape != (n_classes,):
        raise ValueError(f"task.objective.class_weights: {n_classes} weights are needed, got "
                         f"{weights.tolist()}")
    return weights.tolist()
