"""The weighted metrics of ``ecgexp.metrics`` against SciPy, torchmetrics and NumPy on the exams
each resample drew, repeated as often as drawn (the definition of a bootstrap resample's
metric). torchmetrics returns its ranking metrics in float32, hence 1e-6 against it."""

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu
from torchmetrics.functional import (
    mean_absolute_error,
    mean_squared_error,
    pearson_corrcoef,
    r2_score,
)
from torchmetrics.functional.classification import binary_average_precision

from ecgexp.metrics.errors import regression_errors
from ecgexp.metrics.ranking import auroc, average_precision

N = 300


def _drawn(seed: int, resamples: int = 8) -> np.ndarray:
    """Counts ``(resamples, N)``: how often each exam was drawn (independent of ecgexp)."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(N, size=N), minlength=N)
                     for _ in range(resamples)]).astype(float)


def _exams():
    rng = np.random.default_rng(3)
    targets = (rng.random(N) < 0.2).astype(int)
    # Scores on a 0.05 grid: many ties within and across the classes.
    scores = np.round(np.clip(0.3 * targets + rng.random(N) * 0.7, 0, 1) / 0.05) * 0.05
    return scores, targets


def _mann_whitney(scores, targets):
    """AUROC as Mann-Whitney's U over the pairs (SciPy, float64; ties count one half)."""
    positive, negative = scores[targets == 1], scores[targets == 0]
    return mannwhitneyu(positive, negative).statistic / (len(positive) * len(negative))


def _torchmetrics_ap(scores, targets):
    return float(binary_average_precision(torch.tensor(scores), torch.tensor(targets)))


@pytest.mark.parametrize("metric, reference, tolerance",
                         [(auroc, _mann_whitney, 1e-12),
                          (average_precision, _torchmetrics_ap, 1e-6)])
def test_ranking_metric_of_each_resample_is_that_of_the_drawn_exams(metric, reference,
                                                                     tolerance):
    scores, targets = _exams()
    counts = _drawn(0)
    expected = [reference(np.repeat(scores, row.astype(int)), np.repeat(targets, row.astype(int)))
                for row in counts]
    np.testing.assert_allclose(metric(scores, targets, counts), expected, rtol=0,
                               atol=tolerance)
    assert metric(scores, targets) == pytest.approx(reference(scores, targets), abs=tolerance)
    assert np.isnan(metric(scores, np.zeros(N, int)))
    # A resample that drew only negative exams has no value.
    only_negatives = np.where(targets == 0, 1.0, 0.0)[np.newaxis]
    assert np.isnan(metric(scores, targets, only_negatives)).all()


def test_auroc_counts_ties_one_half():
    # Positives 0.5, 0.8; negatives 0.5, 0.2: pairs (0.5, 0.5) = 1/2, the other three 1.
    assert auroc([0.5, 0.8, 0.5, 0.2], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)
    # Weight 2 on the tied positive: 4 of the 6 pairs count 1 and 2 tied pairs 1/2, i.e. 5/6.
    assert auroc([0.5, 0.8, 0.5, 0.2], [1, 1, 0, 0], np.array([2.0, 1, 1, 1])) == \
        pytest.approx(5 / 6)


def test_regression_errors_of_each_resample_are_those_of_the_drawn_pairs():
    rng = np.random.default_rng(5)
    target = rng.normal(55, 15, N)
    predicted = target + rng.normal(2, 8, N)
    predicted[[4, 17]] = np.nan  # pairs with NaN count in no resample
    counts = _drawn(1)
    keep = ~np.isnan(predicted)
    result = regression_errors(predicted, target, counts)
    for r, row in enumerate(counts):
        drawn = np.repeat(np.arange(N)[keep], row[keep].astype(int))
        p, t = torch.tensor(predicted[drawn]), torch.tensor(target[drawn])
        expected = {"mae": mean_absolute_error(p, t), "rmse": mean_squared_error(p, t).sqrt(),
                    "r2": r2_score(p, t), "pearson": pearson_corrcoef(p, t)}
        for name, value in expected.items():
            assert result[name][r] == pytest.approx(float(value), rel=1e-9), name
    single = regression_errors(predicted, target)
    assert single["mae"] == pytest.approx(np.nanmean(np.abs(predicted - target)), rel=1e-12)
    one_pair = regression_errors(np.array([1.0, 2.0]), np.array([1.5, 3.0]),
                                 np.array([[3.0, 0.0]]))
    assert one_pair["mae"][0] == pytest.approx(0.5)
    assert np.isnan(one_pair["r2"][0]) and np.isnan(one_pair["pearson"][0])  # no spread
