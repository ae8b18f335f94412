"""Confusion counts and the rates at fixed thresholds, for one exam weighting or a chunk of
bootstrap resamples at once: every cell of every resample is one matrix product,
``counts (R, n) @ indicator (n, labels)``. A label is positive when its score is at or above
its threshold."""

from __future__ import annotations

import numpy as np

METRICS = ("precision", "recall", "specificity", "f1", "balanced_accuracy", "mcc")


class Confusion:
    """0/1 (or boolean) ``predicted`` against ``targets``, ``(n,)`` or ``(n, labels)``, as one
    float indicator matrix ``(n, 4 x labels)`` built once: the cells of any number of count
    chunks are then one matrix product each."""

    CELLS = ("tp", "fp", "tn", "fn")

    def __init__(self, predicted: np.ndarray, targets: np.ndarray):
        predicted, targets = np.asarray(predicted).astype(bool), np.asarray(targets).astype(bool)
        if predicted.shape != targets.shape:
            raise ValueError(f"bootstrap: predicted {predicted.shape} and targets "
                             f"{targets.shape} differ")
        cells = (predicted & targets, predicted & ~targets, ~predicted & ~targets,
                 ~predicted & targets)
        self.indicator = np.stack(cells, axis=1).reshape(len(predicted), -1).astype(np.float64)
        self.labels = predicted.shape[1:]

    def counts(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """``{tp, fp, tn, fn}`` of every row of ``counts (n_resamples, n)`` (or of ``(n,)``):
        float64 arrays ``(n_resamples,)`` or ``(n_resamples, labels)``."""
        counts = np.asarray(counts, dtype=np.float64)
        if counts.shape[-1] != len(self.indicator):
            raise ValueError(f"bootstrap: counts {counts.shape} and the {len(self.indicator)} "
                             f"exams of the predictions must share the exam axis")
        products = (counts @ self.indicator).reshape(counts.shape[:-1] + (4,) + self.labels)
        return {name: products[..., i, :] if self.labels else products[..., i]
                for i, name in enumerate(self.CELLS)}


def confusion_counts(predicted: np.ndarray, targets: np.ndarray,
                     counts: np.ndarray) -> dict[str, np.ndarray]:
    """``{tp, fp, tn, fn}`` of every resample, as ``counts @ indicator`` matrix products.

    ``predicted`` and ``targets`` are 0/1 (or boolean) arrays of shape ``(n,)`` or
    ``(n, labels)``; ``counts`` is ``(n_resamples, n)`` (a row of ones gives the full data).
    Each cell is a float64 array of shape ``(n_resamples,)`` or ``(n_resamples, labels)``.
    """
    return Confusion(predicted, targets).counts(counts)


def rates(tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray) -> dict:
    """``{precision, recall, specificity, f1, balanced_accuracy, mcc}`` from confusion counts of
    any (shared) shape; recall is the sensitivity. NaN where a denominator is zero (MCC: any
    margin of the 2x2 table; balanced accuracy: either rate), without warnings."""
    tp, fp, tn, fn = (np.asarray(cell, dtype=np.float64) for cell in (tp, fp, tn, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        recall, specificity = tp / (tp + fn), tn / (tn + fp)
        margins = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        return {"precision": tp / (tp + fp), "recall": recall, "specificity": specificity,
                "f1": 2 * tp / (2 * tp + fp + fn),
                "balanced_accuracy": (recall + specificity) / 2,
                "mcc": (tp * tn - fp * fn) / np.sqrt(margins)}


def threshold_confusion(scores: np.ndarray, targets: np.ndarray,
                    thresholds: float | np.ndarray) -> Confusion:
    """The :class:`Confusion` of ``scores >= thresholds`` against ``targets``: ``scores`` and
    ``targets`` ``(n,)`` or ``(n, labels)``, ``thresholds`` a scalar or ``(labels,)``; its
    ``counts`` give :func:`rates` their cells."""
    predicted = np.asarray(scores, dtype=np.float64) >= np.asarray(thresholds, dtype=np.float64)
    return Confusion(predicted, targets)
