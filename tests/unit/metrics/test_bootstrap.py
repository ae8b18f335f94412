"""``ecgexp.metrics.bootstrap``: the resample stream (chunks that do not change it, the
published stream), the one bootstrap of a weighted metric against the per-resample loop, and
the paired bootstrap."""

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from ecgexp.metrics.bootstrap import Resamples, bootstrap, paired_bootstrap, per_resample
from ecgexp.metrics.ranking import auroc


@pytest.mark.parametrize("published", [False, True])
def test_chunk_size_does_not_change_the_resamples(published):
    n, n_resamples = 97, 50
    whole = np.concatenate(list(Resamples(n, n_resamples, 4, published, max_elements=10**9)))
    chunks = list(Resamples(n, n_resamples, 4, published, max_elements=3 * n + 5))
    assert [len(c) for c in chunks] == [3] * 16 + [2]
    assert max(c.size for c in chunks) <= 3 * n + 5
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    np.testing.assert_array_equal(whole.sum(axis=1), np.full(n_resamples, n))
    if published:  # automatic-ecg-diagnosis: np.random.seed(seed); randint(n, size=n * R)
        drawn = np.random.RandomState(4).randint(n, size=n * n_resamples).reshape(n_resamples, n)
        expected = np.stack([np.bincount(row, minlength=n) for row in drawn])
        np.testing.assert_array_equal(whole, expected)
    # One chunk holds at least one resample, however large n is.
    assert len(next(iter(Resamples(1000, 3, max_elements=10)))) == 1


def test_bootstrap_of_a_weighted_metric_equals_the_loop_over_drawn_exams():
    rng = np.random.default_rng(8)
    targets = (rng.random(400) < 0.15).astype(int)
    scores = np.round(0.4 * targets + rng.random(400), 2)
    resamples = Resamples(400, 200, seed=3, max_elements=400 * 7)

    def torchmetrics_auroc(s, t):  # float32 results: 1e-6
        return float(binary_auroc(torch.tensor(s), torch.tensor(t))) if 0 < t.sum() < len(t) \
            else np.nan
    weighted = bootstrap(lambda counts: auroc(scores, targets, counts), resamples)
    looped = bootstrap(per_resample(torchmetrics_auroc, [scores, targets]), resamples)
    for key in ("value", "lower", "upper"):
        assert weighted[key] == pytest.approx(looped[key], abs=1e-6)
    assert weighted["lower"] < weighted["value"] < weighted["upper"]


def test_paired_bootstrap_of_a_model_against_itself_is_zero_and_p_one():
    rng = np.random.default_rng(2)
    targets = (rng.random(200) < 0.3).astype(int)
    scores = rng.random(200) + 0.3 * targets

    def statistic(counts):
        return auroc(scores, targets, counts)
    result = paired_bootstrap(statistic, statistic, Resamples(200, 100))
    assert result["difference"][0] == 0 and result["lower"][0] == result["upper"][0] == 0
    assert result["p_value"][0] == 1
