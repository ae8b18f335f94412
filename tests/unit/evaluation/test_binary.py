"""Thresholds and per-label metrics, against brute force and the published CODE-test table."""

import numpy as np
import pandas as pd
import pytest
from helpers.records import FIXTURES

from ecgexp.evaluation.binary import (
    binary_report,
    max_f1_threshold,
    ranking_scores,
    scores_at_threshold,
)
from ecgexp.evaluation.report import flatten_report

CODE_TEST = FIXTURES / "code_test"
LABELS = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
# docs/studies.md §3.1: thresholds chosen on validation, applied to other_seeds/model_1.
PUBLISHED_THRESHOLDS = [0.124, 0.07, 0.05, 0.278, 0.390, 0.174]


def brute_force_f1(scores, targets, threshold):
    predicted = scores >= threshold
    tp = np.sum(predicted & (targets == 1))
    fp = np.sum(predicted & (targets == 0))
    fn = np.sum(~predicted & (targets == 1))
    return 2 * tp / (2 * tp + fp + fn)


def test_max_f1_threshold_matches_brute_force_search():
    rng = np.random.default_rng(0)
    targets = (rng.random(400) < 0.2).astype(int)
    scores = np.clip(0.35 * targets + rng.normal(0.3, 0.2, 400), 0, 1)
    threshold = max_f1_threshold(scores, targets)
    best = max(brute_force_f1(scores, targets, t) for t in np.unique(scores))
    assert brute_force_f1(scores, targets, threshold) == pytest.approx(best)


def test_scores_at_threshold_by_hand():
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.2, 0.1])
    targets = np.array([1, 0, 1, 0, 0, 1])
    result = scores_at_threshold(scores, targets, 0.4)  # predicts 1,1,1,0,0,0
    assert result == pytest.approx({"precision": 2 / 3, "recall": 2 / 3,
                                    "specificity": 2 / 3, "f1": 2 / 3})


def test_single_class_gives_nan_ranking_scores():
    result = ranking_scores(np.array([0.1, 0.2]), np.array([0, 0]))
    assert np.isnan(result["auroc"]) and np.isnan(result["ap"])


@pytest.fixture(scope="module")
def code_test():
    gold = pd.read_csv(CODE_TEST / "annotations" / "gold_standard.csv")
    model_1 = np.load(CODE_TEST / "dnn_predicts" / "other_seeds" / "model_1.npy")
    published = pd.read_csv(CODE_TEST / "published_tables" / "scores.csv", header=[0, 1],
                            index_col=0)
    return gold, model_1, published


def test_published_thresholds_reproduce_dnn_annotations(code_test):
    gold, model_1, _ = code_test
    dnn = pd.read_csv(CODE_TEST / "annotations" / "dnn.csv", index_col=0)
    for i, label in enumerate(LABELS):
        predicted = (model_1[:, i] >= PUBLISHED_THRESHOLDS[i]).astype(int)
        assert np.array_equal(predicted, dnn[label].to_numpy()), label


def test_metrics_at_published_thresholds_reproduce_table_2(code_test):
    """Ribeiro et al. 2020, Table 2 (DNN row) from the published scores and thresholds."""
    gold, model_1, published = code_test
    for i, label in enumerate(LABELS):
        result = scores_at_threshold(model_1[:, i], gold[label].to_numpy(), PUBLISHED_THRESHOLDS[i])
        for ours, theirs in [("precision", "Precision"), ("recall", "Recall"),
                             ("specificity", "Specificity"), ("f1", "F1 score")]:
            expected = published.loc[label, (theirs, "DNN")]
            assert round(result[ours], 3) == pytest.approx(expected), (label, ours)


def test_report_tunes_thresholds_on_val_and_applies_them_to_test(code_test):
    gold, model_1, _ = code_test
    table = pd.DataFrame({"exam_id": np.arange(len(gold))})
    for i, label in enumerate(LABELS):
        table[f"score_{label}"] = model_1[:, i]
        table[f"target_{label}"] = gold[label]
    val, test = table.iloc[::2], table.iloc[1::2]
    report = binary_report({"val": val, "test": test}, LABELS)
    for label in LABELS:
        score, target = f"score_{label}", f"target_{label}"
        expected = max_f1_threshold(val[score].to_numpy(), val[target].to_numpy())
        assert report["test"][label]["threshold"] == expected
        assert report["test"][label]["f1"] == pytest.approx(
            brute_force_f1(test[score].to_numpy(), test[target].to_numpy(), expected))
    assert report["test"]["macro"]["auroc"] == pytest.approx(
        np.mean([report["test"][label]["auroc"] for label in LABELS]))
    assert report["test"]["macro"]["auroc"] > 0.95  # the published network is that good
    flat = flatten_report(report)
    assert flat["test/AF/f1"] == report["test"]["AF"]["f1"]


def test_report_needs_validation_predictions():
    with pytest.raises(ValueError, match="'val'"):
        binary_report({"test": pd.DataFrame()}, LABELS)
