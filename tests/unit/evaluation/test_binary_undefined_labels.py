"""Labels without positives (or negatives) in a split: undefined metrics, left out of the macro
averages, and no threshold chosen from a validation split without positives.

Expected values are computed here with plain numpy (Mann-Whitney AUROC, AP as the mean
precision at each positive's rank, a brute-force max-F1 search), independently of
``ecgexp.evaluation.binary``.
"""

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest

from ecgexp.evaluation.binary import (
    binary_report,
    detection_metrics,
    scores_at_threshold,
    single_label_report,
)
from ecgexp.evaluation.report import flatten_report, report_json
from ecgexp.tasks.objectives import MultiLabel

# A and B are ordinary labels; V has no positive exam in val, T none in test.
LABELS = ["A", "B", "V", "T"]
THRESHOLDED = ["precision", "recall", "specificity", "f1"]
METRICS = ["auroc", "ap", *THRESHOLDED]
LOGGER = "ecgexp.evaluation.binary"
VAL_WARNING = ("val: label 'V' has no positive exams, so no threshold is chosen for it: its "
               "precision, recall, specificity and F1 are undefined on every split and it is "
               "left out of the macro averages; give ecgexp-evaluate fixed thresholds=[...] "
               "(one per label), or a validation split (dataset.split.val_fraction) with "
               "positive and negative exams")
TEST_WARNING = ("test: label 'T' has no positive exams; its metrics are undefined and it is "
                "left out of the macro averages")


# --- independent reference -------------------------------------------------------------------

def auroc(scores, targets):
    positives, negatives = scores[targets == 1], scores[targets == 0]
    wins = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return (wins + 0.5 * ties) / (len(positives) * len(negatives))


def average_precision(scores, targets):
    """Mean precision at each positive's rank (scores are distinct)."""
    ranked = targets[np.argsort(-scores)]
    hits = np.cumsum(ranked)
    return float(np.mean((hits / np.arange(1, len(ranked) + 1))[ranked == 1]))


def at_threshold(scores, targets, threshold):
    predicted = scores >= threshold
    tp = np.sum(predicted & (targets == 1))
    fp = np.sum(predicted & (targets == 0))
    tn = np.sum(~predicted & (targets == 0))
    fn = np.sum(~predicted & (targets == 1))
    return {"precision": tp / (tp + fp), "recall": tp / (tp + fn),
            "specificity": tn / (tn + fp), "f1": 2 * tp / (2 * tp + fp + fn)}


def best_f1_threshold(scores, targets):
    """The unique score threshold of maximum F1 (the fixture's data make it unique)."""
    f1 = {t: at_threshold(scores, targets, t)["f1"] for t in np.unique(scores)}
    best = max(f1.values())
    winners = [t for t, value in f1.items() if value == best]
    assert len(winners) == 1, "fixture: the max-F1 threshold must be unique"
    return winners[0]


def expected_row(table, label, threshold):
    scores = table[f"score_{label}"].to_numpy()
    targets = table[f"target_{label}"].to_numpy()
    row = {"auroc": auroc(scores, targets), "ap": average_precision(scores, targets)}
    row.update(dict.fromkeys(THRESHOLDED, math.nan) if math.isnan(threshold)
               else at_threshold(scores, targets, threshold))
    return row


# --- data ------------------------------------------------------------------------------------

def split_table(rng, n, without_positives=()):
    table = pd.DataFrame({"exam_id": np.arange(n)})
    for label in LABELS:
        targets = (rng.random(n) < 0.35).astype(int)
        targets[:3], targets[3:6] = 1, 0  # both classes, unless emptied below
        if label in without_positives:
            targets[:] = 0
        table[f"score_{label}"] = np.clip(0.35 * targets + rng.uniform(0.05, 0.6, n), 0, 1)
        table[f"target_{label}"] = targets
    return table


@pytest.fixture()
def predictions():
    rng = np.random.default_rng(7)
    return {"val": split_table(rng, 60, without_positives={"V"}),
            "test": split_table(rng, 80, without_positives={"T"})}


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


# --- tests -----------------------------------------------------------------------------------

def test_undefined_labels_are_nan_and_left_out_of_every_macro(predictions, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        report = binary_report(predictions, LABELS)
    val = predictions["val"]
    thresholds = {label: best_f1_threshold(val[f"score_{label}"].to_numpy(),
                                           val[f"target_{label}"].to_numpy())
                  for label in ("A", "B", "T")}
    thresholds["V"] = math.nan
    for label in LABELS:
        for split in ("val", "test"):
            threshold = report[split][label]["threshold"]
            assert (math.isnan(threshold) if label == "V"
                    else threshold == pytest.approx(thresholds[label]))

    # Defined labels: every metric as computed here.
    for split, label in [("val", "A"), ("val", "B"), ("val", "T"), ("test", "A"), ("test", "B")]:
        expected = expected_row(predictions[split], label, thresholds[label])
        assert {m: report[split][label][m] for m in METRICS} == pytest.approx(expected), (
            split, label)

    # No positives in the split: every metric undefined (not specificity 1, precision 0).
    assert all(math.isnan(report["val"]["V"][m]) for m in METRICS)
    assert all(math.isnan(report["test"]["T"][m]) for m in METRICS)
    # No threshold (val without positives): ranking defined on test, thresholded undefined,
    # not specificity 0 from flagging every exam.
    test_v = expected_row(predictions["test"], "V", math.nan)
    assert report["test"]["V"]["auroc"] == pytest.approx(test_v["auroc"])
    assert report["test"]["V"]["ap"] == pytest.approx(test_v["ap"])
    assert all(math.isnan(report["test"]["V"][m]) for m in THRESHOLDED)

    # Macro: the mean over the same defined labels for every metric of a split.
    for split, defined in [("val", ["A", "B", "T"]), ("test", ["A", "B"])]:
        for metric in METRICS:
            expected = np.mean([expected_row(predictions[split], label,
                                             thresholds[label])[metric] for label in defined])
            assert report[split]["macro"][metric] == pytest.approx(expected), (split, metric)

    # One warning for the threshold and one for the test split, none repeating val's label.
    assert warnings_of(caplog) == [VAL_WARNING, TEST_WARNING]


def test_objective_threshold_of_a_label_without_validation_positives_is_undefined(predictions):
    objective = MultiLabel(LABELS)
    thresholds = objective.thresholds(objective.evaluate(predictions))
    assert set(thresholds) == set(LABELS)
    assert math.isnan(thresholds["V"])
    assert all(0 <= thresholds[label] <= 1 for label in ("A", "B", "T"))


def test_fixed_thresholds_undefined_for_a_label_and_no_negatives_wording(predictions, caplog):
    predictions["test"]["target_B"] = 1  # B: no negative exam in test
    fixed = {"A": 0.5, "B": 0.5, "V": None, "T": float("nan")}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        report = binary_report({"test": predictions["test"]}, LABELS, fixed)
    test = report["test"]
    assert all(math.isnan(test[label][m]) for label in ("V", "T") for m in THRESHOLDED)
    assert all(math.isnan(test["B"][m]) for m in METRICS)
    expected = expected_row(predictions["test"], "A", 0.5)
    assert {m: test["macro"][m] for m in METRICS} == pytest.approx(expected)  # only A
    assert warnings_of(caplog) == [
        "thresholds: labels 'V', 'T' have no threshold, so their precision, recall, "
        "specificity and F1 are undefined on every split and they are left out of the macro "
        "averages; give a threshold for every label",
        "test: label 'T' has no positive exams and label 'B' has no negative exams; their "
        "metrics are undefined and they are left out of the macro averages"]


def test_macro_is_undefined_when_no_label_is_defined():
    table = pd.DataFrame({"score_A": [0.2, 0.7], "target_A": [0, 0]})
    report = binary_report({"val": table, "test": table}, ["A"])
    assert all(math.isnan(report[split]["macro"][m]) for split in report for m in METRICS)


def test_undefined_threshold_gives_undefined_thresholded_metrics():
    scores, targets = np.array([0.9, 0.2, 0.6]), np.array([1, 0, 0])
    for threshold in (None, math.nan):
        assert all(math.isnan(v) for v in scores_at_threshold(scores, targets,
                                                              threshold).values())
        assert all(math.isnan(v) for v in detection_metrics(scores, targets,
                                                            threshold).values())


def test_single_label_threshold_from_a_validation_split_without_positives(caplog):
    val = pd.DataFrame({"score_chagas": [0.1, 0.4, 0.8], "target_chagas": [0, 0, 0]})
    test = pd.DataFrame({"score_chagas": [0.1, 0.4, 0.8, 0.9], "target_chagas": [0, 1, 0, 1]})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        report = single_label_report({"val": val, "test": test}, "chagas",
                                     ("max_f1", "youden"))
    for rule in ("max_f1", "youden"):
        assert all(math.isnan(v) for v in report["test"][rule].values())
    assert report["test"]["chagas"]["auroc"] == pytest.approx(0.75)
    assert warnings_of(caplog) == [
        "val: label 'chagas' has no positive exams, so no threshold (max_f1, youden) is "
        "chosen for it: its sensitivity, specificity, precision, F1, balanced accuracy and "
        "MCC are undefined on every split; give ecgexp-evaluate fixed thresholds=[...] (one "
        "per label), or a validation split (dataset.split.val_fraction) with positive and "
        "negative exams"]


def test_report_json_writes_undefined_as_null_and_reads_back_as_nan(predictions):
    report = binary_report(predictions, LABELS)
    report["test"]["A"]["threshold"] = math.inf  # a threshold that flags nothing
    text = report_json(report)
    stored = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON {name}"))
    assert stored["test"]["T"]["auroc"] is None and stored["val"]["V"]["threshold"] is None
    assert stored["test"]["A"]["threshold"] == "inf"
    flat = flatten_report(stored)
    assert math.isnan(flat["test/T/f1"]) and flat["test/A/threshold"] == math.inf
    assert flat["test/macro/auroc"] == pytest.approx(report["test"]["macro"]["auroc"])
