"""The generic single-label multi-class objective (ecgexp.tasks.multiclass.MultiClass) and its
report (ecgexp.evaluation.multiclass), on a K = 4 task whose class values are not 1..K.

The task: ``grade`` holds 0, 5, 10 or 20, named none, low, mid, high; the contrast
``high_vs_none`` is grade 20 against grade 0. Expected numbers are worked out by hand or by the
plain pair-counting / ranking helpers below, which share no code with the product.
"""

import math
from math import log as ln

import numpy as np
import pandas as pd
import pytest
import torch

from ecgexp.errors import UserError
from ecgexp.evaluation.multiclass import (
    Contrast,
    class_indices,
    multiclass_report,
    probabilities_of,
)
from ecgexp.tasks.multiclass import MultiClass

# The report's weighted AUROC warns about a class without exams (SMALL has no grade 10).
pytestmark = pytest.mark.filterwarnings("ignore:No positive samples in targets:UserWarning")

GRADES = [0, 5, 10, 20]
NAMES = ["none", "low", "mid", "high"]
CONTRASTS = {"high_vs_none": {"positive": 20, "negative": 0}}


def grade(**options) -> MultiClass:
    options.setdefault("class_names", NAMES)
    return MultiClass("grade", GRADES, **options)


def column(*values, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)[:, None]


def rows(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def fitted(objective, *targets):
    objective.fit(np.array(targets, dtype=float)[:, None])
    return objective


def table(records) -> pd.DataFrame:
    """``(p_none, p_low, p_mid, p_high, grade)`` records -> a predictions table."""
    records = np.array(records, dtype=float)
    return pd.DataFrame({**{f"prob_{name}": records[:, k] for k, name in enumerate(NAMES)},
                         "target_grade": records[:, 4]})


# --- independent reference computations ---------------------------------------------------------

def pair_auroc(scores, positive) -> float:
    """AUROC as the fraction of (positive, negative) pairs ranked right, ties counting 1/2."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def step_average_precision(scores, positive) -> float:
    """sum_k (R_k - R_{k-1}) P_k over the distinct thresholds, highest first."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    total, previous_recall = 0.0, 0.0
    for threshold in sorted(set(scores), reverse=True):
        predicted = scores >= threshold
        tp = np.sum(predicted & positive)
        recall = tp / positive.sum()
        total += (recall - previous_recall) * tp / predicted.sum()
        previous_recall = recall
    return total


def counts_at(scores, positive, threshold):
    predicted = np.asarray(scores) >= threshold
    positive = np.asarray(positive, bool)
    return (np.sum(predicted & positive), np.sum(predicted & ~positive),
            np.sum(~predicted & positive), np.sum(~predicted & ~positive))


def brute_force_max_f1(scores, positive) -> float:
    """The score (as threshold, ``>=``) with the highest F1; asserts the maximum is unique."""
    f1 = {}
    for threshold in np.unique(scores):
        tp, fp, fn, _ = counts_at(scores, positive, threshold)
        f1[threshold] = 2 * tp / (2 * tp + fp + fn)
    best = max(f1.values())
    winners = [t for t, value in f1.items() if value == best]
    assert len(winners) == 1, "the test data must have a unique max-F1 threshold"
    return float(winners[0])


# --- class values, names and indices ------------------------------------------------------------

def test_default_names_come_from_the_class_values():
    objective = MultiClass("grade", GRADES)
    assert objective.classes == [0.0, 5.0, 10.0, 20.0]
    assert objective.class_names == ["class0", "class5", "class10", "class20"]
    assert objective.prediction_columns == ["prob_class0", "prob_class5", "prob_class10",
                                            "prob_class20"]
    assert objective.n_outputs == 4


def test_fractional_class_values_keep_their_fraction_in_the_default_names():
    objective = MultiClass("dose", [0.5, 1.5, 2])
    assert objective.class_names == ["class0.5", "class1.5", "class2"]


def test_class_names_name_the_prediction_columns():
    objective = grade()
    assert objective.class_names == NAMES
    assert objective.prediction_columns == ["prob_none", "prob_low", "prob_mid", "prob_high"]
    assert objective.output_columns == objective.prediction_columns
    assert objective.output_names == objective.prediction_columns


def test_class_index_maps_class_values_to_output_positions():
    indices = grade().class_index(column(20.0, 0.0, 10.0, 5.0, 20.0))
    assert indices.tolist() == [3, 0, 2, 1, 3]


def test_class_index_matches_float32_targets_of_decimal_classes():
    objective = MultiClass("dose", [0.1, 0.2, 0.3])
    targets = column(0.3, 0.1, 0.2, dtype=torch.float32)
    assert objective.class_index(targets).tolist() == [2, 0, 1]


def test_unknown_class_values_are_named_with_the_config_key():
    with pytest.raises(UserError) as error:
        grade().loss(torch.zeros(4, 4, dtype=torch.float64), column(0.0, 7.0, 15.0, 7.0))
    assert str(error.value) == ("task.objective.classes: 'grade' holds [7.0, 15.0], which are "
                                "not among the classes [0.0, 5.0, 10.0, 20.0]")


def test_unknown_class_values_in_the_training_split_fail_the_fit():
    with pytest.raises(UserError, match=r"task\.objective\.classes: 'grade' holds \[1\.0\]"):
        fitted(grade(class_weights="auto"), 0, 5, 10, 20, 1)


@pytest.mark.parametrize("classes", [[1], [1, 1], [], None, [0, 5, 5]])
def test_at_least_two_distinct_classes_are_needed(classes):
    with pytest.raises(UserError, match=r"task\.objective\.classes: at least two distinct class "
                                        r"values are needed"):
        MultiClass("grade", classes)


@pytest.mark.parametrize("names", [["none", "low", "high"], ["a", "a", "b", "c"],
                                   ["none", "low", "macro", "high"]])
def test_class_names_must_match_the_classes(names):
    with pytest.raises(UserError, match=r"task\.objective\.class_names: one distinct name per "
                                        r"class is needed \(4 classes\)"):
        MultiClass("grade", GRADES, class_names=names)


def test_class_weights_reject_unknown_strings():
    with pytest.raises(ValueError, match=r"task\.objective\.class_weights: 'inverse'"):
        grade(class_weights="inverse")


# --- loss, class weights, predict ---------------------------------------------------------------

def test_cross_entropy_by_hand():
    logits = rows([0.0, 0.0, 0.0, 0.0], [0.0, ln(2), 0.0, 0.0], [0.0, 0.0, 0.0, ln(5)])
    # grade 0 uniform: ln 4; grade 5 with p = 2/5: ln 5/2; grade 20 with p = 5/8: ln 8/5.
    loss = grade().loss(logits, column(0.0, 5.0, 20.0))
    assert loss.item() == pytest.approx((ln(4) + ln(5 / 2) + ln(8 / 5)) / 3)


def test_auto_class_weights_are_n_max_over_n_c():
    # counts: grade 0 x3, 5 x1, 10 x2, 20 x6 -> 6/3, 6/1, 6/2, 6/6.
    objective = fitted(grade(class_weights="auto"), 0, 0, 0, 5, 10, 10, *[20] * 6)
    assert objective.state == {"class_weights": [2.0, 6.0, 3.0, 1.0]}


def test_auto_weighted_cross_entropy_by_hand():
    objective = fitted(grade(class_weights="auto"), 0, 0, 0, 5, 10, 10, *[20] * 6)
    logits = rows([0.0, 0.0, 0.0, 0.0], [0.0, ln(2), 0.0, 0.0], [0.0, 0.0, 0.0, ln(5)])
    # weights 2 (grade 0), 6 (grade 5), 1 (grade 20): sum w * nll / sum w.
    expected = (2 * ln(4) + 6 * ln(5 / 2) + 1 * ln(8 / 5)) / (2 + 6 + 1)
    assert objective.loss(logits, column(0.0, 5.0, 20.0)).item() == pytest.approx(expected)


def test_auto_class_weights_need_every_class_in_training():
    with pytest.raises(ValueError, match="class index 2 has no training exam"):
        fitted(grade(class_weights="auto"), 0, 5, 20, 20)


def test_listed_class_weights_are_kept_and_checked():
    objective = fitted(grade(class_weights=[1, 2, 3, 4]), 0, 5)
    assert objective.state == {"class_weights": [1.0, 2.0, 3.0, 4.0]}
    with pytest.raises(ValueError, match="4 weights are needed"):
        fitted(grade(class_weights=[1, 2, 3]), 0, 5)


def test_weighted_loss_before_fit_raises():
    with pytest.raises(RuntimeError, match="fit"):
        grade(class_weights="auto").loss(torch.zeros(1, 4, dtype=torch.float64), column(0.0))


def test_predict_is_the_softmax_in_class_order():
    probabilities = grade().predict(rows([0.0, ln(2), ln(3), ln(4)]))
    np.testing.assert_allclose(probabilities.numpy(), [[0.1, 0.2, 0.3, 0.4]])


def test_metric_inputs_are_probabilities_and_class_indices():
    probabilities, indices = grade().metric_inputs(rows([0.0, ln(2), ln(3), ln(4)],
                                                        [0.0, 0.0, 0.0, 0.0]),
                                                   column(10.0, 0.0))
    np.testing.assert_allclose(probabilities.numpy(), [[0.1, 0.2, 0.3, 0.4], [0.25] * 4])
    assert indices.tolist() == [2, 0]


def test_tracked_metrics_are_macro_one_vs_rest():
    rng = np.random.default_rng(5)
    logits = torch.as_tensor(rng.normal(size=(60, 4)))
    targets = column(*rng.choice(GRADES, 60).astype(float))
    objective = grade()
    metrics = objective.metrics()
    assert set(metrics.keys()) == {"auroc", "ap"}
    metrics.update(*objective.metric_inputs(logits, targets))
    result = metrics.compute()
    probabilities = torch.softmax(logits, dim=1).numpy()
    indices = objective.class_index(targets).numpy()
    assert float(result["auroc"]) == pytest.approx(
        np.mean([pair_auroc(probabilities[:, k], indices == k) for k in range(4)]), abs=1e-6)


# --- contrasts ----------------------------------------------------------------------------------

def test_contrast_from_config_stores_class_indices_and_time_columns():
    contrast = Contrast.from_config("high_vs_none", {
        "positive": 20, "negative": 0, "event_time": "weeks_to_event",
        "censor_time": "weeks_followed", "time_unit": "weeks"}, [0.0, 5.0, 10.0, 20.0])
    assert contrast == Contrast("high_vs_none", 3, 0, "weeks_to_event", "weeks_followed",
                                "weeks")
    plain = Contrast.from_config("low_vs_mid", {"positive": 5, "negative": 10}, GRADES)
    assert (plain.positive, plain.negative, plain.event_time, plain.time_unit) == (
        1, 2, None, "")


@pytest.mark.parametrize(("side", "rule"), [
    ("positive", {"positive": 7, "negative": 0}),
    ("negative", {"positive": 20, "negative": 3}),
])
def test_contrast_classes_must_be_among_the_classes(side, rule):
    with pytest.raises(UserError) as error:
        grade(contrasts={"bad": rule})
    value = rule[side]
    assert str(error.value) == (f"task.objective.contrasts.bad.{side}: {value} is not one of "
                                f"the classes [0.0, 5.0, 10.0, 20.0]")


@pytest.mark.parametrize("rule", [{"positive": 20}, {"negative": 0}, {},
                                  {"positive": 20, "negative": 0, "event": "t"}])
def test_contrast_needs_positive_and_negative_and_known_keys(rule):
    with pytest.raises(UserError, match=r"task\.objective\.contrasts\.bad: expects positive and "
                                        r"negative class values \(and optionally event_time, "
                                        r"censor_time, time_unit\)"):
        Contrast.from_config("bad", rule, [0.0, 5.0, 10.0, 20.0])


def test_contrast_of_a_class_against_itself_is_rejected():
    with pytest.raises(UserError, match=r"task\.objective\.contrasts\.bad"):
        grade(contrasts={"bad": {"positive": 20, "negative": 20}})


def test_contrast_scores_by_hand():
    contrast = Contrast.from_config("high_vs_none", CONTRASTS["high_vs_none"], GRADES)
    probabilities = np.array([[0.6, 0.1, 0.1, 0.2], [0.1, 0.8, 0.05, 0.05],
                              [0.2, 0.1, 0.1, 0.6], [0.3, 0.3, 0.3, 0.1]])
    kept, scores, positive = contrast.scores(probabilities, np.array([0, 1, 3, 2]))
    # grades 0, 5, 20, 10: only the grade-0 and grade-20 exams stay; p_high / (p_high + p_none).
    assert kept.tolist() == [True, False, True, False]
    np.testing.assert_allclose(scores, [0.25, 0.75])
    assert positive.tolist() == [0, 1]


def test_contrast_with_event_time_adds_the_survival_analysis():
    objective = grade(contrasts={"high_vs_none": {**CONTRASTS["high_vs_none"],
                                                  "event_time": "weeks_to_event"}})
    assert objective.analyses == ("classes", "strata", "contrast_survival")
    assert grade(contrasts=CONTRASTS).analyses == ("classes", "strata")


# --- report -------------------------------------------------------------------------------------

# a (0.7 .1 .1 .1, 0)  b (.2 .5 .2 .1, 5)  c (.1 .1 .1 .7, 20)  d (.4 .3 .2 .1, 0)
# e (.1 .2 .3 .4, 20)  f (.3 .2 .4 .1, 5): no grade-10 exam.
SMALL = [(0.7, 0.1, 0.1, 0.1, 0), (0.2, 0.5, 0.2, 0.1, 5), (0.1, 0.1, 0.1, 0.7, 20),
         (0.4, 0.3, 0.2, 0.1, 0), (0.1, 0.2, 0.3, 0.4, 20), (0.3, 0.2, 0.4, 0.1, 5)]


def small_report():
    contrast = Contrast.from_config("high_vs_none", CONTRASTS["high_vs_none"], GRADES)
    return multiclass_report({"val": table(SMALL)}, "grade", GRADES, NAMES, [contrast])


def test_report_rows_by_hand():
    rows_ = small_report()["val"]
    assert set(rows_) == {*NAMES, "high_vs_none", "macro", "overall"}
    # none: a (.7) and d (.4) beat b .2, c .1, e .1, f .3 -> 1. high: c .7, e .4 beat .1 x4 -> 1.
    # low: b .5 beats a .1, c .1, d .3, e .2 (4); f .2 beats a, c, ties e, loses to d (2.5).
    assert rows_["none"] == pytest.approx({"auroc": 1.0, "ap": 1.0, "n": 2})
    assert rows_["high"] == pytest.approx({"auroc": 1.0, "ap": 1.0, "n": 2})
    # low AP: b first (precision 1, recall 1/2), then d, then f and e tie at .2 (2/4, recall 1).
    assert rows_["low"] == pytest.approx({"auroc": 6.5 / 8, "ap": 0.5 + 0.5 * 0.5, "n": 2})
    assert math.isnan(rows_["mid"]["auroc"]) and math.isnan(rows_["mid"]["ap"])
    assert rows_["mid"]["n"] == 0
    # macro over the classes with exams: (1 + 6.5/8 + 1) / 3; AP (1 + .75 + 1) / 3.
    assert rows_["macro"] == pytest.approx({"auroc": (2 + 6.5 / 8) / 3, "ap": 2.75 / 3})
    # argmax none, low, high, none, high, mid -> 5 of 6; supports 2, 2, 0, 2.
    assert rows_["overall"] == pytest.approx({"accuracy": 5 / 6,
                                              "weighted_ovr_auroc": (2 + 2 * 6.5 / 8 + 2) / 6})
    # high_vs_none on a, c, d, e: .1/.8, .7/.8, .1/.5, .4/.5 -> F1 1 only at 0.8.
    assert rows_["high_vs_none"] == pytest.approx({
        "auroc": 1.0, "ap": 1.0, "threshold": 0.8, "sensitivity": 1.0, "ppv": 1.0,
        "specificity": 1.0, "f1": 1.0})


def random_split(seed, n):
    rng = np.random.default_rng(seed)
    grades = rng.choice(GRADES, n, p=[0.4, 0.2, 0.15, 0.25])
    shift = np.eye(4)[[GRADES.index(g) for g in grades]]
    probabilities = rng.dirichlet(np.ones(4), n) + 0.6 * shift
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return table(np.column_stack([probabilities, grades]))


def test_report_matches_independent_computations_on_random_splits():
    predictions = {"val": random_split(11, 80), "test": random_split(12, 60)}
    contrast = Contrast.from_config("high_vs_none", CONTRASTS["high_vs_none"], GRADES)
    report = multiclass_report(predictions, "grade", GRADES, NAMES, [contrast])
    val = predictions["val"]
    kept = val["target_grade"].isin([0, 20]).to_numpy()
    val_scores = (val["prob_high"] / (val["prob_high"] + val["prob_none"])).to_numpy()[kept]
    threshold = brute_force_max_f1(val_scores, val["target_grade"].to_numpy()[kept] == 20)
    for split, frame in predictions.items():
        grades = frame["target_grade"].to_numpy()
        rows_ = report[split]
        aurocs = []
        for name, value in zip(NAMES, GRADES):
            scores, positive = frame[f"prob_{name}"].to_numpy(), grades == value
            aurocs.append(pair_auroc(scores, positive))
            assert rows_[name]["auroc"] == pytest.approx(aurocs[-1], abs=1e-6)
            assert rows_[name]["ap"] == pytest.approx(step_average_precision(scores, positive),
                                                      abs=1e-6)
            assert rows_[name]["n"] == positive.sum()
        assert rows_["macro"]["auroc"] == pytest.approx(np.mean(aurocs), abs=1e-6)
        argmax = np.array(GRADES)[frame[[f"prob_{n}" for n in NAMES]].to_numpy().argmax(axis=1)]
        supports = [np.sum(grades == g) for g in GRADES]
        assert rows_["overall"]["accuracy"] == pytest.approx(np.mean(argmax == grades))
        assert rows_["overall"]["weighted_ovr_auroc"] == pytest.approx(
            np.dot(aurocs, supports) / len(grades), abs=1e-6)
        # the contrast at val's threshold, on this split's grade-0 and grade-20 exams
        keep = np.isin(grades, [0, 20])
        scores = (frame["prob_high"] / (frame["prob_high"] + frame["prob_none"])).to_numpy()
        scores, positive = scores[keep], grades[keep] == 20
        tp, fp, fn, tn = counts_at(scores, positive, threshold)
        assert rows_["high_vs_none"] == pytest.approx({
            "auroc": pair_auroc(scores, positive),
            "ap": step_average_precision(scores, positive), "threshold": threshold,
            "sensitivity": tp / (tp + fn), "ppv": tp / (tp + fp),
            "specificity": tn / (tn + fp), "f1": 2 * tp / (2 * tp + fp + fn)}, abs=1e-6)


def test_report_without_contrasts_needs_no_validation_split():
    report = multiclass_report({"test": table(SMALL)}, "grade", GRADES, NAMES)
    assert set(report) == {"test"}
    assert set(report["test"]) == {*NAMES, "macro", "overall"}


def test_report_with_a_contrast_needs_the_validation_split():
    contrast = Contrast.from_config("high_vs_none", CONTRASTS["high_vs_none"], GRADES)
    with pytest.raises(ValueError, match="'val'"):
        multiclass_report({"test": table(SMALL)}, "grade", GRADES, NAMES, [contrast])


def test_class_indices_and_probabilities_of():
    frame = table(SMALL)
    assert class_indices(frame, "grade", GRADES).tolist() == [0, 1, 3, 0, 3, 1]
    np.testing.assert_allclose(probabilities_of(frame, NAMES), np.array(SMALL)[:, :4])
    with pytest.raises(ValueError, match=r"target_grade holds .*7\.0.*not among the classes "
                                         r"\[0, 5, 10, 20\]"):
        class_indices(table([(0.25, 0.25, 0.25, 0.25, 7)]), "grade", GRADES)


def test_objective_evaluate_is_the_report_of_its_configuration():
    objective = grade(contrasts=CONTRASTS)
    predictions = {"val": table(SMALL), "test": random_split(3, 40)}
    report = objective.evaluate(predictions)
    contrast = Contrast.from_config("high_vs_none", CONTRASTS["high_vs_none"], GRADES)
    expected = multiclass_report(predictions, "grade", GRADES, NAMES, [contrast])
    assert report.keys() == expected.keys()
    for split in report:
        assert report[split].keys() == expected[split].keys()
        for row in report[split]:
            assert report[split][row] == pytest.approx(expected[split][row], nan_ok=True)


def test_thresholds_are_the_contrast_thresholds():
    objective = grade(contrasts={**CONTRASTS, "low_vs_none": {"positive": 5, "negative": 0}})
    report = objective.evaluate({"val": table(SMALL), "test": random_split(3, 40)})
    thresholds = objective.thresholds(report)
    assert set(thresholds) == {"high_vs_none", "low_vs_none"}
    assert thresholds["high_vs_none"] == pytest.approx(0.8)
    # low_vs_none on a, b, d, f: .125, .714 (low), .429, .4 (low). F1 at .714: 2/3; at .429:
    # 1/2; at .4: tp 2, fp 1 -> 4/5 (the best); at .125: 2/3.
    assert thresholds["low_vs_none"] == pytest.approx(0.4)
    assert report["val"]["low_vs_none"]["f1"] == pytest.approx(0.8)
    assert thresholds == {name: report["test"][name]["threshold"] for name in thresholds}


def test_thresholds_without_contrasts_are_empty():
    objective = grade()
    assert objective.thresholds(objective.evaluate({"test": table(SMALL)})) == {}


def test_contrast_without_validation_positives_gets_no_threshold(caplog):
    """No grade-20 exam in val: no threshold is chosen for high_vs_none, its thresholded
    metrics are undefined on test too (not made up at a threshold from one class), with a
    warning; its ranking metrics on test stay defined."""
    contrast = Contrast.from_config("high_vs_none", CONTRASTS["high_vs_none"], GRADES)
    no_high = [row for row in SMALL if row[-1] != 20]
    report = multiclass_report({"val": table(no_high), "test": table(SMALL)}, "grade", GRADES,
                               NAMES, [contrast])
    test = report["test"]["high_vs_none"]
    assert math.isnan(test["threshold"])
    for name in ("sensitivity", "ppv", "specificity", "f1"):
        assert math.isnan(test[name])
    assert test["auroc"] == pytest.approx(1.0)  # c .875 and e .8 over a .125 and d .2
    assert "contrast 'high_vs_none' has no positive exams" in caplog.text
