"""Bootstrap intervals, kappa / McNemar and calibration: hand computations, brute-force loops,
a coverage simulation and the published CODE-test tables."""

import itertools
import warnings
from io import StringIO

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.records import FIXTURES
from scipy.stats import chi2
from torchmetrics.functional.classification import (
    binary_calibration_error,
    binary_cohen_kappa,
)

from ecgexp.evaluation.agreement import cohen_kappa, mcnemar
from ecgexp.evaluation.binary import detection_metrics
from ecgexp.metrics.bootstrap import (
    Resamples,
    bootstrap,
    bootstrap_threshold_metrics,
    per_resample,
    percentile_interval,
    published_indices,
    published_interval,
    resample_counts,
)
from ecgexp.metrics.calibration import expected_calibration_error, reliability_table
from ecgexp.metrics.confusion import confusion_counts, rates

ANNOTATIONS = FIXTURES / "code_test" / "annotations"
LABELS = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]


def test_resample_counts_rows_sum_to_n_and_repeat_per_seed():
    counts = resample_counts(50, n_resamples=200, seed=7)
    assert counts.shape == (200, 50)
    assert np.issubdtype(counts.dtype, np.integer)
    assert np.all(counts.sum(axis=1) == 50)
    np.testing.assert_array_equal(counts, resample_counts(50, n_resamples=200, seed=7))
    assert not np.array_equal(counts, resample_counts(50, n_resamples=200, seed=8))
    with pytest.raises(ValueError, match="n >= 1"):
        resample_counts(0)


def test_confusion_counts_match_a_loop_over_repeated_indices():
    rng = np.random.default_rng(3)
    predicted = rng.integers(0, 2, size=(30, 3))
    targets = rng.integers(0, 2, size=(30, 3))
    counts = resample_counts(30, n_resamples=40, seed=1)
    cells = confusion_counts(predicted, targets, counts)
    for r, row in enumerate(counts):
        idx = np.repeat(np.arange(30), row)
        p, t = predicted[idx], targets[idx]
        np.testing.assert_array_equal(cells["tp"][r], np.sum((p == 1) & (t == 1), axis=0))
        np.testing.assert_array_equal(cells["fp"][r], np.sum((p == 1) & (t == 0), axis=0))
        np.testing.assert_array_equal(cells["tn"][r], np.sum((p == 0) & (t == 0), axis=0))
        np.testing.assert_array_equal(cells["fn"][r], np.sum((p == 0) & (t == 1), axis=0))
    one_label = confusion_counts(predicted[:, 0], targets[:, 0], counts)
    assert one_label["tp"].shape == (40,)
    np.testing.assert_array_equal(one_label["tp"], cells["tp"][:, 0])


def test_rates_by_hand_and_nan_without_warnings():
    # tp=3, fp=1, tn=4, fn=2
    values = rates(3, 1, 4, 2)
    assert values["precision"] == pytest.approx(3 / 4)
    assert values["recall"] == pytest.approx(3 / 5)
    assert values["specificity"] == pytest.approx(4 / 5)
    assert values["f1"] == pytest.approx(6 / 9)
    assert values["balanced_accuracy"] == pytest.approx(0.7)
    assert values["mcc"] == pytest.approx((3 * 4 - 1 * 2) / np.sqrt(4 * 5 * 5 * 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = rates(np.array([0.0, 2.0]), np.array([0.0, 0.0]), np.array([5.0, 0.0]),
                      np.array([1.0, 0.0]))
    assert np.isnan(empty["precision"][0]) and empty["recall"][0] == 0
    assert np.isnan(empty["mcc"]).all()
    assert np.isnan(empty["specificity"][1]) and np.isnan(empty["balanced_accuracy"][1])


def test_published_rule_reads_sorted_indices_25_and_975():
    assert tuple(published_indices(1000)) == (25, 975)
    assert tuple(published_indices(1000, level=0.9)) == (50, 950)  # 0.05 * 1000 = 49.99...
    values = np.random.default_rng(0).permutation(1000).astype(float)
    lower, upper = published_interval(values)
    assert (lower, upper) == (25, 975)
    # NaN resamples are dropped before the indices are taken.
    lower, upper = published_interval(np.concatenate([values, np.full(7, np.nan)]))
    assert (lower, upper) == (25, 975)
    # np.percentile interpolates: position 0.025 * 999 = 24.975.
    lower, upper = percentile_interval(values)
    assert (lower, upper) == (pytest.approx(24.975), pytest.approx(974.025))
    columns = published_interval(np.stack([values, np.full(1000, np.nan)], axis=1))
    np.testing.assert_array_equal(columns[0], [25, np.nan])


def test_published_bootstrap_reproduces_the_published_lower_bounds():
    # automatic-ecg-diagnosis outputs/figures/boxplot_data.txt, predictor DNN, sorted rank 25.
    published = {
        "precision": [0.72, 0.7878787878787878, 1.0, 0.6470588235294118, 1.0, 0.8571428571428571],
        "recall": [0.8235294117647058, 1.0, 1.0, 0.7857142857142857, 0.5, 0.9142857142857143],
        "specificity": [0.9887640449438202, 0.9898734177215189, 1.0, 0.9913473423980222, 1.0,
                        0.9935897435897436],
        "f1": [0.7931034482758621, 0.8813559322033898, 1.0, 0.7499999999999999,
               0.6666666666666666, 0.9041095890410958]}
    gold = pd.read_csv(ANNOTATIONS / "gold_standard.csv")[LABELS].to_numpy()
    dnn = pd.read_csv(ANNOTATIONS / "dnn.csv", index_col=0)[LABELS].to_numpy()
    result = bootstrap_threshold_metrics(dnn, gold, 0.5, interval="published",
                                         resamples=Resamples(len(gold), 1000, 123,
                                                             published=True))
    for metric, lower in published.items():
        np.testing.assert_allclose(result[metric]["lower"], lower, rtol=0, atol=1e-12)


def test_percentile_interval_of_sensitivity_covers_the_truth():
    # 300 independent datasets of 200 exams: prevalence 0.3, P(predicted | positive) = 0.8.
    # One shared set of resample counts is fine: each dataset is drawn independently of it.
    rng = np.random.default_rng(2024)
    n, datasets, true_sensitivity = 200, 300, 0.8
    targets = rng.random((n, datasets)) < 0.3
    predicted = np.where(targets, rng.random((n, datasets)) < true_sensitivity,
                         rng.random((n, datasets)) < 0.1)
    counts = resample_counts(n, n_resamples=300, seed=5)
    recall = rates(**confusion_counts(predicted, targets, counts))["recall"]
    lower, upper = percentile_interval(recall)
    coverage = np.mean((lower <= true_sensitivity) & (true_sensitivity <= upper))
    assert 0.90 <= coverage <= 0.99


def test_bootstrap_threshold_metrics_value_is_the_full_data_metric():
    rng = np.random.default_rng(11)
    targets = (rng.random((400, 2)) < 0.3).astype(int)
    scores = np.clip(0.4 * targets + rng.normal(0.3, 0.2, (400, 2)), 0, 1)
    thresholds = np.array([0.45, 0.5])
    result = bootstrap_threshold_metrics(scores, targets, thresholds, n_resamples=500, seed=2)
    names = {"recall": "sensitivity"}
    for k, threshold in enumerate(thresholds):
        full = detection_metrics(scores[:, k], targets[:, k], threshold)
        for metric, interval in result.items():
            assert interval["value"][k] == pytest.approx(full[names.get(metric, metric)])
            assert interval["lower"][k] <= interval["value"][k] <= interval["upper"][k]
    single = bootstrap_threshold_metrics(scores[:, 0], targets[:, 0], 0.45, n_resamples=500,
                                         seed=2)
    assert single["f1"]["value"].shape == ()
    assert single["f1"]["lower"] == pytest.approx(result["f1"]["lower"][0])
    with pytest.raises(ValueError, match="unknown interval"):
        bootstrap_threshold_metrics(scores, targets, thresholds, interval="bca")
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_threshold_metrics(np.where(scores > 0.9, np.nan, scores), targets, thresholds)


def test_bootstrap_statistic_loops_over_the_same_resamples_and_skips_nan():
    rng = np.random.default_rng(4)
    targets = (rng.random(150) < 0.2).astype(int)
    scores = rng.random(150)
    vectorised = bootstrap_threshold_metrics(scores, targets, 0.6, n_resamples=200, seed=9)

    def recall(s, t):
        return np.sum((s >= 0.6) & (t == 1)) / np.sum(t == 1)

    looped = bootstrap(per_resample(recall, [scores, targets]), Resamples(150, 200, seed=9))
    for key in ("value", "lower", "upper"):
        assert looped[key] == pytest.approx(vectorised["recall"][key])

    # A statistic undefined on every other resample: the interval uses the defined ones only.
    # (Call 0 is the full data, so resamples 1, 3, 5, ... are defined.)
    calls = iter(range(10_000))

    def sometimes_nan(t):
        return np.nan if next(calls) % 2 else float(np.mean(t))

    partial = bootstrap(per_resample(sometimes_nan, [targets]), Resamples(150, 200, seed=9))
    counts = resample_counts(150, n_resamples=200, seed=9)
    means = (counts @ targets / 150)[1::2]
    assert (partial["lower"], partial["upper"]) == (
        pytest.approx(np.percentile(means, 2.5)), pytest.approx(np.percentile(means, 97.5)))


def test_cohen_kappa_by_hand():
    # 2x2 table: both positive 20, a only 5, b only 10, both negative 15 (n = 50).
    a = np.array([1] * 20 + [1] * 5 + [0] * 10 + [0] * 15)
    b = np.array([1] * 20 + [0] * 5 + [1] * 10 + [0] * 15)
    p_o = (20 + 15) / 50  # 0.7
    p_e = (25 / 50) * (30 / 50) + (25 / 50) * (20 / 50)  # 0.3 + 0.2 = 0.5
    assert cohen_kappa(a, b) == pytest.approx((p_o - p_e) / (1 - p_e))
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, b) == pytest.approx(float(binary_cohen_kappa(torch.tensor(a),
                                                                       torch.tensor(b))))
    # Three classes: p_o = 3/4, p_e = 1/16 + 1/8 + 1/8 = 5/16, kappa = (7/16) / (11/16).
    assert cohen_kappa([0, 1, 2, 2], [0, 1, 2, 1]) == pytest.approx(7 / 11)
    assert np.isnan(cohen_kappa(np.zeros(5), np.zeros(5)))  # p_e == 1


def test_mcnemar_by_hand():
    # b = 10 exams with a = 1, b = 0; c = 4 with a = 0, b = 1; 30 concordant.
    a = np.array([1] * 10 + [0] * 4 + [1] * 12 + [0] * 18)
    b = np.array([0] * 10 + [1] * 4 + [1] * 12 + [0] * 18)
    result = mcnemar(a, b)
    assert (result["b"], result["c"]) == (10, 4)
    assert result["statistic"] == pytest.approx(36 / 14)  # (10 - 4)^2 / (10 + 4), no correction
    assert result["p_value"] == pytest.approx(chi2.sf(36 / 14, 1))
    assert result["p_value"] == pytest.approx(0.1088, abs=5e-5)
    # With a reference: only the exams where exactly one predictor is right count.
    truth = np.array([1] * 3 + [0] * 7 + [1] * 4 + [1] * 12 + [0] * 18)
    with_truth = mcnemar(a, b, truth)
    assert (with_truth["b"], with_truth["c"]) == (3, 11)  # a right: 3; b right: 7 + 4
    assert with_truth["statistic"] == pytest.approx(64 / 14)
    assert mcnemar(a[10:], b[10:])["statistic"] == pytest.approx(16 / 4)  # b = 0, c = 4
    assert mcnemar(a[14:], b[14:]) == {"statistic": 0.0, "p_value": 1.0, "b": 0, "c": 0}
    with pytest.raises(ValueError, match="binary"):
        mcnemar(np.array([0, 2]), np.array([0, 1]))


# automatic-ecg-diagnosis outputs/tables/kappa.csv and mcnemar.csv (3 decimals).
PUBLISHED_KAPPA = """pair,1dAVb,RBBB,LBBB,SB,AF,ST
DNN vs cardio.,0.656,0.917,0.945,0.830,0.780,0.864
DNN vs emerg.,0.684,0.792,0.909,0.796,0.595,0.930
DNN vs stud.,0.642,0.928,0.912,0.760,0.574,0.855
cardio. vs emerg.,0.656,0.824,0.923,0.912,0.515,0.847
cardio. vs stud.,0.612,0.871,0.889,0.880,0.700,0.792
emerg. vs stud.,0.615,0.799,0.852,0.907,0.508,0.897
"""
PUBLISHED_MCNEMAR = """pair,1dAVb,RBBB,LBBB,SB,AF,ST
DNN vs cardio.,0.225,0.414,0.083,1.000,0.180,0.096
DNN vs emerg.,0.007,0.166,0.025,0.705,0.157,0.655
DNN vs stud.,0.009,0.655,0.025,0.157,0.052,0.058
cardio. vs emerg.,0.108,0.366,0.317,0.564,0.763,0.206
cardio. vs stud.,0.102,0.739,0.414,0.046,0.206,0.782
emerg. vs stud.,0.853,0.248,1.000,0.083,0.439,0.059
"""


def test_kappa_and_mcnemar_reproduce_the_published_tables():
    """Every pair of the four readers of CODE-test and every label: kappa between the two
    readers' labels, McNemar between their correctness against the gold standard."""
    readers = {"DNN": pd.read_csv(ANNOTATIONS / "dnn.csv", index_col=0),
               "cardio.": pd.read_csv(ANNOTATIONS / "cardiology_residents.csv"),
               "emerg.": pd.read_csv(ANNOTATIONS / "emergency_residents.csv"),
               "stud.": pd.read_csv(ANNOTATIONS / "medical_students.csv")}
    truth = pd.read_csv(ANNOTATIONS / "gold_standard.csv")
    assert all(len(reader) == len(truth) for reader in readers.values())
    kappa, mcnemar_p = {}, {}
    for first, second in itertools.combinations(readers, 2):
        pair = f"{first} vs {second}"
        kappa[pair], mcnemar_p[pair] = {}, {}
        for label in LABELS:
            a, b = readers[first][label].to_numpy(), readers[second][label].to_numpy()
            kappa[pair][label] = cohen_kappa(a, b)
            mcnemar_p[pair][label] = mcnemar(a, b, truth[label].to_numpy())["p_value"]
    for got, published in ((kappa, PUBLISHED_KAPPA), (mcnemar_p, PUBLISHED_MCNEMAR)):
        expected = pd.read_csv(StringIO(published), index_col="pair")
        assert sorted(got) == sorted(expected.index) and list(expected.columns) == LABELS
        table = pd.DataFrame(got).T.loc[expected.index, LABELS]
        np.testing.assert_allclose(table.to_numpy(), expected.to_numpy(), atol=5e-4 + 1e-12)


def test_expected_calibration_error_by_hand():
    p = np.array([0.05, 0.15, 0.25, 0.5, 0.6, 0.7, 0.9, 1.0])
    y = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    # Bins [0, 1/3), [1/3, 2/3), [2/3, 1]:
    #   mean p 0.15 vs rate 1/3 (3 exams); 0.55 vs 0.5 (2); 2.6/3 vs 1 (3).
    expected = (3 * abs(0.15 - 1 / 3) + 2 * abs(0.55 - 0.5) + 3 * abs(2.6 / 3 - 1)) / 8
    assert expected == pytest.approx(1.05 / 8)
    assert expected_calibration_error(p, y, n_bins=3) == pytest.approx(expected)
    table = reliability_table(p, y, n_bins=3)
    assert table["count"].tolist() == [3, 2, 3]
    np.testing.assert_allclose(table["mean_probability"], [0.15, 0.55, 2.6 / 3])
    np.testing.assert_allclose(table["observed_rate"], [1 / 3, 0.5, 1])
    np.testing.assert_allclose(table["bin_upper"], [1 / 3, 2 / 3, 1])
    assert reliability_table(np.array([0.57]), np.array([1]), n_bins=100)["count"][57] == 1
    assert np.isnan(reliability_table(p, y, n_bins=10)["mean_probability"][3])  # [0.3, 0.4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(p + 0.1, y)


def test_expected_calibration_error_matches_torchmetrics_binary_definition():
    rng = np.random.default_rng(8)
    p = rng.random(1000) * 0.999  # below 1: torchmetrics bins p == 1 on its own
    y = (rng.random(1000) < p ** 1.5).astype(int)
    reference = binary_calibration_error(torch.tensor(p), torch.tensor(y), n_bins=15, norm="l1")
    assert expected_calibration_error(p, y, n_bins=15) == pytest.approx(float(reference))
