"""AUROC and average precision with exam weights (``None``, ``(n,)`` or ``(R, n)``).

:class:`Ranking` reads a column once: the distinct scores of the positive exams
``u_0 < ... < u_{m-1}`` cut the score axis into bins, and each exam gets the code of its bin
-- a negative below ``u_k`` (and above ``u_{k-1}``), a negative tied with ``u_k``, or a
positive at ``u_k``. The weighted metrics of a resample then need only the weight in each bin,
one ``np.bincount`` over the exams in their stored order (a sequential pass, ``O(n)``, into
``3m + 1`` bins), however the scores are ordered; the metrics of a resample are those of its
exams repeated as often as drawn:

- AUROC (Mann-Whitney): the weighted share of positive-negative pairs ordered correctly,
  a tie counting one half (the trapezoidal area under the ROC curve, as torchmetrics);
- average precision: over the distinct positive scores, the recall gained there times the
  precision at that threshold (every exam scored at or above it predicted positive), as
  ``torchmetrics`` ``binary_average_precision``.

Undefined (NaN) where the weighted exams hold a single class.
"""

from __future__ import annotations

import numpy as np

from ecgexp.metrics.weights import as_weights, result


class Ranking:
    """One column of ``scores (n,)`` with its 0/1 ``targets (n,)``, binned once: the
    weighted AUROC and average precision of any number of count chunks then cost one
    ``np.bincount`` per resample."""

    def __init__(self, scores: np.ndarray, targets: np.ndarray):
        scores = np.asarray(scores, dtype=np.float64)
        positive = np.asarray(targets).astype(bool)
        if scores.shape != positive.shape or scores.ndim != 1:
            raise ValueError(f"scores {scores.shape} and targets {positive.shape} must be one "
                             f"column of the same exams")
        distinct = np.unique(scores[positive])
        m = len(distinct)
        place = np.searchsorted(distinct, scores, side="left")  # positive scores below
        tied = (place < m) & (distinct[np.minimum(place, max(m - 1, 0))] == scores) if m else \
            np.zeros(len(scores), bool)
        # Negatives: 2k below u_k (2m above every positive), 2k + 1 tied with u_k;
        # positives: 2m + 1 + k at u_k.
        self.codes = np.where(positive, 2 * m + 1 + place, 2 * place + tied)
        self.m, self.n = m, len(scores)

    def _binned(self, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(negative (R, 2m + 1), positive (R, m), single)``: the weight in each bin."""
        weights, single = as_weights(weights, self.n)
        bins = 3 * self.m + 1
        sums = np.stack([np.bincount(self.codes, weights=row, minlength=bins)
                         for row in weights])
        return sums[:, :2 * self.m + 1], sums[:, 2 * self.m + 1:], single

    def _below(self, negative: np.ndarray) -> np.ndarray:
        """``(R, m)``: the negatives' weight strictly below each distinct positive score."""
        return np.cumsum(negative, axis=1)[:, 0:2 * self.m:2]

    def auroc(self, weights: np.ndarray | None = None) -> np.ndarray | float:
        """See :func:`auroc`."""
        negative, positive, single = self._binned(weights)
        ordered = self._below(negative) + 0.5 * negative[:, 1::2]
        pairs = positive.sum(axis=1) * negative.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            area = np.sum(positive * ordered, axis=1) / pairs
        return result(np.where(pairs > 0, area, np.nan), single)

    def average_precision(self, weights: np.ndarray | None = None) -> np.ndarray | float:
        """See :func:`average_precision`."""
        negative, positive, single = self._binned(weights)
        total, negatives = positive.sum(axis=1), negative.sum(axis=1)
        # At threshold u_k: the positives and the negatives scored at or above it.
        true_positives = np.cumsum(positive[:, ::-1], axis=1)[:, ::-1]
        false_positives = negatives[:, np.newaxis] - self._below(negative)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = true_positives / (true_positives + false_positives)
            value = np.sum(np.where(positive > 0, positive * precision, 0.0), axis=1) / total
        defined = (total > 0) & (negatives > 0)
        return result(np.where(defined, value, np.nan), single)


def auroc(scores: np.ndarray, targets: np.ndarray,
          weights: np.ndarray | None = None) -> np.ndarray | float:
    """Area under the ROC curve of ``scores (n,)`` for 0/1 ``targets (n,)``: a float, or
    ``(R,)`` for weights ``(R, n)``; NaN where a class is absent."""
    return Ranking(scores, targets).auroc(weights)


def average_precision(scores: np.ndarray, targets: np.ndarray,
                      weights: np.ndarray | None = None) -> np.ndarray | float:
    """Average precision of ``scores (n,)`` for 0/1 ``targets (n,)``: a float, or ``(R,)``
    for weights ``(R, n)``; NaN where a class is absent."""
    return Ranking(scores, targets).average_precision(weights)
