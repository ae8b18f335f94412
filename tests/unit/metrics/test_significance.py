"""Paired comparison statistics (``ecgexp.metrics.significance``) against computations made
here and a published example: DeLong's placements and variances by their definition (every
positive-negative pair) and pROC's worked aSAH example (variances, covariances, Z and p of
``roc.test``), p-values that are uniform when two models are equally good, a paired
bootstrap interval that covers a known difference, and Holm's correction by hand."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ecgexp.metrics.bootstrap import Resamples, paired_bootstrap
from ecgexp.metrics.significance import delong_test, holm


def _delong_by_pairs(a, b, targets):
    """DeLong et al. (1988) by definition: psi over every (positive, negative) pair, 1 for a
    higher positive score and 1/2 for a tie; V10, V01 placements; S10/m + S01/n."""
    positive = targets == 1

    def placements(scores):
        pos, neg = scores[positive], scores[~positive]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = placements(a), placements(b)
    m, n = len(v10_a), len(v01_a)

    def cov(x, y):
        return ((x - x.mean()) * (y - y.mean())).sum() / (len(x) - 1)

    var_a = cov(v10_a, v10_a) / m + cov(v01_a, v01_a) / n
    var_b = cov(v10_b, v10_b) / m + cov(v01_b, v01_b) / n
    covariance = cov(v10_a, v10_b) / m + cov(v01_a, v01_b) / n
    return auc_a, auc_b, var_a, var_b, covariance


def test_delong_equals_its_definition_with_ties():
    rng = np.random.default_rng(3)
    targets = (rng.random(90) < 0.4).astype(int)
    a = np.round(targets * 0.8 + rng.normal(0, 1, 90), 1)  # rounded: many ties
    b = np.round(targets * 0.3 + 0.5 * a + rng.normal(0, 1, 90), 1)
    result = delong_test(a, b, targets)
    auc_a, auc_b, var_a, var_b, covariance = _delong_by_pairs(a, b, targets)
    assert result["auroc_a"] == pytest.approx(auc_a) and result["auroc_b"] == pytest.approx(auc_b)
    assert result["var_a"] == pytest.approx(var_a)
    assert result["var_b"] == pytest.approx(var_b)
    assert result["covariance"] == pytest.approx(covariance)
    se = math.sqrt(var_a + var_b - 2 * covariance)
    z = (auc_a - auc_b) / se
    assert result["z"] == pytest.approx(z)
    assert result["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))


ASAH = json.loads((Path(__file__).parents[2] / "reference" / "proc_asah_delong.json").read_text())


def _asah_scores(marker):
    """Scores of the 41 Poor then 72 Good aSAH patients that give pROC's published
    placements: a Poor patient's score is its doubled placement (monotone in the marker); a
    Good patient is put at the case level (a tie) or in the gap between levels that gives
    its own doubled placement, 2 * #(cases above) + #(cases tied)."""
    cases = np.array(ASAH["markers"][marker]["cases_placement_x144"], float)
    controls = ASAH["markers"][marker]["controls_placement_x82"]
    levels = np.unique(cases)
    candidates = np.concatenate([levels, levels + 0.5, [levels[0] - 0.5]])
    doubled = {float(2 * (cases > t).sum() + (cases == t).sum()): t for t in candidates}
    control_scores = np.array([doubled[c] for c in controls])
    # the reconstruction gives back the cases' placements too
    below = 2 * (control_scores[None, :] < cases[:, None]).sum(1)
    tied = (control_scores[None, :] == cases[:, None]).sum(1)
    np.testing.assert_array_equal(below + tied, cases)
    return np.concatenate([cases, control_scores])


@pytest.mark.parametrize("published", ASAH["roc_test"], ids=lambda r: f"{r['a']}-{r['b']}")
def test_delong_reproduces_proc_worked_example(published):
    """pROC's ``roc.test`` on the aSAH data (113 patients, 41 Poor outcomes): AUROCs, DeLong
    variances and covariance, Z, two-sided p and the 95 % interval of the difference."""
    targets = np.r_[np.ones(41), np.zeros(72)]
    a, b = published["a"], published["b"]
    result = delong_test(_asah_scores(a), _asah_scores(b), targets)
    assert result["auroc_a"] == pytest.approx(ASAH["auc"][a], abs=1e-12)
    assert result["auroc_b"] == pytest.approx(ASAH["auc"][b], abs=1e-12)
    assert result["var_a"] == pytest.approx(ASAH["var"][a], rel=1e-10)
    assert result["var_b"] == pytest.approx(ASAH["var"][b], rel=1e-10)
    covariance = next(c for x, y, c in ASAH["cov"] if {x, y} == {a, b})
    assert result["covariance"] == pytest.approx(covariance, rel=1e-10)
    assert result["z"] == pytest.approx(published["z"], rel=1e-10)
    assert result["p_value"] == pytest.approx(published["p_value"], rel=1e-9)
    half_width = 1.959963984540054 * result["se"]
    assert [result["difference"] - half_width, result["difference"] + half_width] == \
        pytest.approx(published["conf_int"], rel=1e-9)


def test_delong_p_values_are_uniform_for_equally_good_models():
    """Two models of the same quality (independent noise): P(p < 0.05) near 0.05 over 400
    simulated test sets; a better model is detected almost always."""
    rng = np.random.default_rng(0)
    null_p, better_p = [], []
    for _ in range(400):
        targets = (rng.random(150) < 0.3).astype(int)
        signal = targets * 1.0
        a = signal + rng.normal(0, 1, 150)
        b = signal + rng.normal(0, 1, 150)
        c = 2.5 * signal + rng.normal(0, 1, 150)
        null_p.append(delong_test(a, b, targets)["p_value"])
        better_p.append(delong_test(c, b, targets)["p_value"])
    assert 0.025 <= np.mean(np.array(null_p) < 0.05) <= 0.085
    assert np.mean(np.array(better_p) < 0.05) > 0.95


def test_identical_scores_have_no_difference():
    targets = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.9, 0.4, 0.35, 0.8, 0.2])
    result = delong_test(scores, scores, targets)
    assert (result["difference"], result["p_value"]) == (0.0, 1.0)
    with pytest.raises(ValueError, match="positive and negative"):
        delong_test(scores, scores, np.ones(6))


def _mae(errors):
    """The MAE of each resample, counts ``(rows, n)`` -> ``(rows,)``: the drawn exams' mean."""
    return lambda counts: counts @ np.abs(errors) / counts.sum(axis=1)


def test_paired_bootstrap_interval_covers_the_true_difference():
    """Errors of two models on the same exams, correlated (a shared part); the true MAE
    difference is known: E|N(0, s)| = s sqrt(2 / pi). 95 % intervals cover it in about 95 %
    of 120 simulated test sets."""
    rng = np.random.default_rng(1)
    sd_a, sd_b = math.sqrt(0.5 + 0.5), math.sqrt(0.5 + 1.0)
    truth = (sd_a - sd_b) * math.sqrt(2 / math.pi)
    covered = 0
    for seed in range(120):
        shared = rng.normal(0, math.sqrt(0.5), 300)
        a = shared + rng.normal(0, math.sqrt(0.5), 300)
        b = shared + rng.normal(0, 1.0, 300)
        result = {key: float(value[0]) for key, value in paired_bootstrap(
            _mae(a), _mae(b), Resamples(300, n_resamples=300, seed=seed)).items()}
        assert result["difference"] == pytest.approx(_mae(a)(np.ones((1, 300)))[0]
                                                     - np.mean(np.abs(b)))
        assert result["lower"] <= result["difference"] <= result["upper"]
        covered += result["lower"] <= truth <= result["upper"]
    assert 0.88 <= covered / 120 <= 0.99


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1: 0.02, 0.03, 0.06, max(0.06, 0.04)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.2, math.nan, 0.6])  # m = 2: 0.4, 0.6
    np.testing.assert_allclose(adjusted[[0, 2]], [0.4, 0.6])
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # 0.5 x 2 capped at 1
