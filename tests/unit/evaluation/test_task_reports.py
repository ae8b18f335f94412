"""Chagas, AF-risk and electrolyte evaluation against numbers worked out by hand or in numpy."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import lognorm, norm

from ecgexp.errors import UserError
from ecgexp.evaluation.binary import (
    challenge_score,
    choose_threshold,
    detection_metrics,
    single_label_report,
    specificity_threshold,
    youden_threshold,
)
from ecgexp.evaluation.multiclass import Contrast, multiclass_report
from ecgexp.evaluation.regression import (
    event_detection,
    gaussian_metrics,
    regression_metrics,
    regression_report,
)

# Hand example: four positives, four negatives. Cumulative (tp, fp) at each threshold:
# 0.9 (1,0)  0.8 (1,1)  0.7 (2,1)  0.6 (3,1)  0.5 (3,2)  0.4 (3,3)  0.3 (4,3)  0.2 (4,4).
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
TARGETS = np.array([1, 0, 1, 1, 0, 0, 1, 0])


def test_youden_threshold_by_hand():
    # J = tpr - fpr: .25, 0, .25, .5, .25, 0, .25, 0 -> unique maximum at 0.6.
    assert youden_threshold(SCORES, TARGETS) == 0.6


def test_youden_threshold_maximises_j_by_brute_force():
    rng = np.random.default_rng(1)
    targets = (rng.random(300) < 0.3).astype(int)
    scores = np.clip(0.3 * targets + rng.normal(0.4, 0.2, 300), 0, 1)

    def j(threshold):
        predicted = scores >= threshold
        return predicted[targets == 1].mean() - predicted[targets == 0].mean()

    best = max(j(t) for t in np.unique(scores))
    assert j(youden_threshold(scores, targets)) == pytest.approx(best)


def test_specificity_threshold_by_hand():
    # fpr at inf (nothing positive), 0.9, 0.8, 0.7, 0.6, 0.5: 0, 0, .25, .25, .25, .5.
    assert specificity_threshold(SCORES, TARGETS, 0.75) == 0.8  # first point with fpr = .25
    # |0 - .1| = .1 beats |.25 - .1|: the nearest point predicts nothing positive.
    assert specificity_threshold(SCORES, TARGETS, 0.9) == math.inf


def test_choose_threshold_parses_the_rules():
    # F1 = 2tp / (2tp + fp + fn): .4, .33, .57, .75, .67, .6, .73, .67 -> 0.6.
    assert choose_threshold("max_f1", SCORES, TARGETS) == 0.6
    assert choose_threshold("youden", SCORES, TARGETS) == 0.6
    assert choose_threshold("specificity_75", SCORES, TARGETS) == 0.8
    assert choose_threshold("specificity_90", SCORES, TARGETS) == math.inf


@pytest.mark.parametrize("rule", ["precision_90", "specificity_abc", "specificity_150",
                                  "specificity", "maxf1"])
def test_choose_threshold_rejects_unknown_rules(rule):
    with pytest.raises(ValueError, match=r"task\.threshold_rules.*specificity_<pct>"):
        choose_threshold(rule, SCORES, TARGETS)


def test_thresholds_keep_the_record_they_come_from():
    # 0.1 rounds up in float32; the threshold must still make the 0.1 record positive (F1 = 1).
    scores, targets = np.array([0.9, 0.1, 0.05]), np.array([1, 1, 0])
    for rule in ("max_f1", "youden"):
        threshold = choose_threshold(rule, scores, targets)
        assert detection_metrics(scores, targets, threshold)["f1"] == 1.0, rule


def test_thresholds_need_probabilities():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        youden_threshold(np.array([-2.0, 3.0]), np.array([0, 1]))


def test_detection_metrics_by_hand():
    # At 0.7: predicted 1,1,1,0,0,0,0,0 -> tp 2, fp 1, fn 2, tn 3.
    result = detection_metrics(SCORES, TARGETS, 0.7)
    mcc = (2 * 3 - 1 * 2) / math.sqrt((2 + 1) * (2 + 2) * (3 + 1) * (3 + 2))
    assert result == pytest.approx({"sensitivity": 0.5, "specificity": 0.75,
                                    "precision": 2 / 3, "f1": 4 / 7,
                                    "balanced_accuracy": 0.625, "mcc": mcc})


def test_detection_metrics_nan_where_undefined():
    result = detection_metrics(SCORES, TARGETS, math.inf)  # nothing predicted positive
    assert result["sensitivity"] == 0 and result["specificity"] == 1
    assert math.isnan(result["precision"]) and math.isnan(result["mcc"])


def test_challenge_score_without_ties():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    targets = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0, 1])
    # fraction 0.3 of 10 records -> the top 3 hold 2 of the 4 positives.
    assert challenge_score(scores, targets, fraction=0.3) == 0.5


# Twenty records, capacity int(0.25 * 20) = 5: two above the cut-off (one positive), four tied at
# the cut-off 0.7 (two positives) sharing the 3 remaining places, the rest below (one positive).
TIED_SCORES = np.array([0.9, 0.9, 0.7, 0.7, 0.7, 0.7] + [0.1] * 14)
TIED_TARGETS = np.array([1, 0, 1, 0, 1, 0] + [1] + [0] * 13)


def test_challenge_score_ties_at_the_cutoff_count_their_expected_positives():
    expected_tp = 1 + 3 * 2 / 4
    assert challenge_score(TIED_SCORES, TIED_TARGETS, fraction=0.25) == pytest.approx(
        expected_tp / 4)


def test_challenge_score_matches_the_official_permutation_average():
    """The official helper: permute, stable-sort by descending score, count the top positives."""
    rng = np.random.default_rng(0)
    capacity, found = 5, []
    for _ in range(4000):
        order = rng.permutation(len(TIED_SCORES))
        scores, targets = TIED_SCORES[order], TIED_TARGETS[order]
        top = np.argsort(scores, kind="stable")[::-1][:capacity]
        found.append(np.sum(targets[top] == 1) / np.sum(targets == 1))
    assert challenge_score(TIED_SCORES, TIED_TARGETS, 0.25) == pytest.approx(np.mean(found),
                                                                            abs=0.01)


def test_challenge_score_edge_cases():
    assert math.isnan(challenge_score(np.array([0.2, 0.9]), np.array([0, 0])))
    assert challenge_score(np.array([0.2, 0.9]), np.array([0, 1]), fraction=0.05) == 0.0


def _chagas_table(scores, targets):
    return pd.DataFrame({"score_chagas": scores, "target_chagas": targets})


def test_single_label_report_uses_val_thresholds_everywhere():
    # The test split's own best F1 threshold is 0.3 (F1 6/7), not val's 0.6.
    test_scores = np.array([0.95, 0.65, 0.55, 0.3, 0.1, 0.05])
    test_targets = np.array([0, 1, 1, 1, 0, 0])
    report = single_label_report({"val": _chagas_table(SCORES, TARGETS),
                                  "test": _chagas_table(test_scores, test_targets)}, "chagas",
                                 ("max_f1", "youden", "specificity_75"), challenge_fraction=0.5)
    assert set(report) == {"val", "test"}
    assert set(report["test"]) == {"chagas", "max_f1", "youden", "specificity_75"}
    test = report["test"]
    # Positives .65 .55 .3 each beat .1 and .05, lose to .95: AUROC 6/9. Ranked: neg, pos, pos,
    # pos -> AP = (1/2 + 2/3 + 3/4) / 3. Top int(0.5 * 6) = 3 records hold 2 of 3 positives.
    assert test["chagas"] == pytest.approx({"auroc": 6 / 9, "ap": (1 / 2 + 2 / 3 + 3 / 4) / 3,
                                            "challenge_score": 2 / 3, "n": 6, "positives": 3})
    assert test["max_f1"]["threshold"] == test["youden"]["threshold"] == 0.6
    assert test["specificity_75"]["threshold"] == 0.8
    # At 0.6: predicted 1,1,0,0,0,0 -> tp 1, fp 1, fn 2, tn 2; MCC numerator 1*2 - 1*2 = 0.
    assert test["max_f1"] == pytest.approx({"threshold": 0.6, "sensitivity": 1 / 3,
                                            "specificity": 2 / 3, "precision": 0.5, "f1": 0.4,
                                            "balanced_accuracy": 0.5, "mcc": 0.0})
    assert report["val"]["max_f1"]["f1"] == pytest.approx(0.75)


def test_single_label_report_needs_validation_predictions():
    with pytest.raises(ValueError, match="'val'"):
        single_label_report({"test": _chagas_table(SCORES, TARGETS)}, "chagas")


def test_regression_metrics_against_numpy_formulas():
    rng = np.random.default_rng(2)
    target = rng.normal(4.5, 0.6, 200)
    predicted = target + rng.normal(0.1, 0.3, 200)
    target[3], predicted[7] = np.nan, np.nan
    result = regression_metrics(predicted, target)
    keep = ~np.isnan(target) & ~np.isnan(predicted)
    p, t = predicted[keep], target[keep]
    error = p - t
    pearson = np.sum((p - p.mean()) * (t - t.mean())) / np.sqrt(
        np.sum((p - p.mean()) ** 2) * np.sum((t - t.mean()) ** 2))
    assert result == pytest.approx({
        "mae": np.mean(np.abs(error)), "rmse": np.sqrt(np.mean(error**2)),
        "r2": 1 - np.sum(error**2) / np.sum((t - t.mean()) ** 2), "pearson": pearson,
        "n": 198})


def test_event_detection_directions_by_hand():
    target = np.array([3.0, 3.4, 4.0, 5.0, 6.0])
    predicted = np.array([3.2, 4.1, 3.9, 5.8, 5.0])
    result = event_detection(predicted, target, {"hypo": {"below": 3.5},
                                                 "hyper": {"above": 5.5}})
    # hypo: events at predictions 3.2, 4.1; lower predictions rank first: 3.2 beats 3.9, 5.0,
    # 5.8; 4.1 beats 5.0, 5.8 only -> 5/6 (it would be 1/6 with +predicted). Ranked: pos, neg,
    # pos -> AP (1 + 2/3) / 2.
    assert result["hypo"] == pytest.approx({"auroc": 5 / 6, "ap": 5 / 6, "positives": 2})
    # hyper: the event is predicted 5.0, above 3.2, 3.9, 4.1 but below 5.8 -> 3/4, AP 1/2.
    assert result["hyper"] == pytest.approx({"auroc": 0.75, "ap": 0.5, "positives": 1})


def test_event_detection_with_large_values_and_a_single_class():
    target = np.array([135.0, 140.0, 146.0, 150.0])
    predicted = np.array([138.0, 147.0, 146.0, 149.0])
    result = event_detection(predicted, target, {"hyper": {"above": 145},
                                                 "none": {"below": 100}})
    # Events predicted 146 and 149 against 138 and 147: 149 beats both, 146 beats 138 -> 3/4.
    assert result["hyper"]["auroc"] == pytest.approx(0.75)
    assert math.isnan(result["none"]["auroc"]) and result["none"]["positives"] == 0


@pytest.mark.parametrize("spec", [{}, {"below": 3.5, "above": 5.5}, {"under": 3.5}])
def test_event_detection_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match=r"task\.objective\.events"):
        event_detection(np.ones(3), np.ones(3), {"bad": spec})


def test_gaussian_nll_matches_scipy():
    rng = np.random.default_rng(3)
    mean, std = rng.normal(1.5, 0.2, 50), rng.uniform(0.1, 0.5, 50)
    target = np.exp(mean + std * rng.normal(size=50))
    result = gaussian_metrics(mean, std, target)
    assert result["nll"] == pytest.approx(-np.mean(norm.logpdf(target, mean, std)))
    result = gaussian_metrics(mean, std, target, log_target=True)
    expected = -np.mean(lognorm.logpdf(target, s=std, scale=np.exp(mean)))
    assert result["nll"] == pytest.approx(expected)


@pytest.mark.parametrize("log_target", [False, True])
def test_gaussian_coverage_on_calibrated_simulation(log_target):
    rng = np.random.default_rng(4)
    mean, std = rng.normal(1.0, 0.3, 20000), rng.uniform(0.05, 0.4, 20000)
    draw = mean + std * rng.normal(size=20000)
    target = np.exp(draw) if log_target else draw
    assert gaussian_metrics(mean, std, target, 0.9, log_target)["coverage_90"] == pytest.approx(
        0.9, abs=0.01)


def test_gaussian_coverage_and_width_by_hand():
    z = 1.6448536269514722  # 95th percentile of N(0, 1): the central 90 % interval is ±z
    mean, std = np.zeros(5), np.ones(5)
    target = np.array([0.0, 1.6, 1.7, -1.7, -1.6])
    result = gaussian_metrics(mean, std, target, level=0.9)
    assert result["coverage_90"] == pytest.approx(3 / 5)
    assert result["mean_interval_width"] == pytest.approx(2 * z)
    result = gaussian_metrics(mean, std, np.exp(target), level=0.9, log_target=True)
    assert result["coverage_90"] == pytest.approx(3 / 5)
    assert result["mean_interval_width"] == pytest.approx(np.exp(z) - np.exp(-z))


def test_regression_report_structure():
    table = pd.DataFrame({"predicted_k": [3.2, 4.1, 3.9, 5.8, 5.0],
                          "target_k": [3.0, 3.4, 4.0, 5.0, 6.0],
                          "mean_k": np.log([3.2, 4.1, 3.9, 5.8, 5.0]),
                          "std_k": [0.1] * 5})
    report = regression_report({"val": table, "test": table}, "k",
                               events={"hypo": {"below": 3.5}},
                               gaussian={"level": 0.8, "log_target": True})
    assert set(report) == {"val", "test"}
    assert set(report["test"]) == {"k", "hypo"}
    assert set(report["test"]["k"]) == {"mae", "rmse", "r2", "pearson", "n", "nll",
                                        "coverage_80", "mean_interval_width"}
    assert report["test"]["k"]["mae"] == pytest.approx(np.mean([0.2, 0.7, 0.1, 0.8, 1.0]))
    assert report["test"]["hypo"]["auroc"] == pytest.approx(5 / 6)


def _af_table(rows):
    probabilities = np.array([row[:3] for row in rows])
    return pd.DataFrame({"prob_class1": probabilities[:, 0], "prob_class2": probabilities[:, 1],
                         "prob_class3": probabilities[:, 2],
                         "target_exam_class": [row[3] for row in rows]})


# val, p3 / (p1 + p3): 1/3 (class 1), removed (class 2; would be 0.75), 2/3 (class 3),
# 0.125 (1), 0.5 (3), 0.25 (1). Class 3 vs 1 is perfectly separated, F1 = 1 at 0.5 only;
# raw p3 would not separate it (0.25 for a class-3 exam against 0.3 for a class-1 exam).
AF_VAL = [(0.6, 0.1, 0.3, 1), (0.05, 0.8, 0.15, 2), (0.3, 0.1, 0.6, 3),
          (0.7, 0.2, 0.1, 1), (0.25, 0.5, 0.25, 3), (0.6, 0.2, 0.2, 1)]
# test, p3 / (p1 + p3): g 0.5 (3), h 0.5 (1), i 0.111 (3), j 0.0526 (1), k removed (2),
# l 0.3 (1), m removed (2).
AF_TEST = [(0.3, 0.4, 0.3, 3), (0.3, 0.4, 0.3, 1), (0.8, 0.1, 0.1, 3), (0.9, 0.05, 0.05, 1),
           (0.2, 0.7, 0.1, 2), (0.7, 0.0, 0.3, 1), (0.1, 0.1, 0.8, 2)]


AF_CLASSES = [1, 2, 3]
AF_NAMES = ["class1", "class2", "class3"]


def af_risk_report(predictions):
    """The report of AF risk's task config: classes 1, 2, 3 and the contrast 3 vs 1."""
    contrast = Contrast.from_config("class3_vs_1", {"positive": 3, "negative": 1}, AF_CLASSES)
    return multiclass_report(predictions, "exam_class", AF_CLASSES, AF_NAMES, [contrast])


def test_af_risk_report_by_hand():
    report = af_risk_report({"val": _af_table(AF_VAL), "test": _af_table(AF_TEST)})
    assert set(report["test"]) == {"class1", "class2", "class3", "class3_vs_1", "macro",
                                   "overall"}
    assert report["val"]["class3_vs_1"]["auroc"] == 1.0  # needs class 2 removed and p3 / (p1+p3)
    assert report["val"]["class3_vs_1"]["threshold"] == pytest.approx(0.5)
    test = report["test"]
    # At val's 0.5: g, h positive -> tp 1 (g), fp 1 (h), fn 1 (i), tn 2 (j, l). Test's own best
    # threshold would be 0.111 (F1 2/3). AUROC: g ties h, beats j, l (2.5); i beats j (1) -> 3.5/6.
    # AP: at 0.5 precision 1/2, recall 1/2; at 0.111 precision 2/4, recall 1 -> 1/2.
    assert test["class3_vs_1"] == pytest.approx({"auroc": 3.5 / 6, "ap": 0.5, "threshold": 0.5,
                                                 "sensitivity": 0.5, "ppv": 0.5,
                                                 "specificity": 2 / 3, "f1": 0.5})
    # One-vs-rest, counting pairs (ties 1/2): class 1 9.5/12, class 2 7.5/10, class 3 4.5/10.
    assert test["class1"]["auroc"] == pytest.approx(9.5 / 12)
    assert test["class2"]["auroc"] == pytest.approx(0.75)
    assert test["class3"]["auroc"] == pytest.approx(0.45)
    # class 1 ranked by p1: j (pos), i, l (pos), g/h tie (h pos) ... -> precision at each recall
    # step: 1, 2/3, then g and h share 0.3 -> 3/5.
    assert test["class1"]["ap"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert [test[f"class{k}"]["n"] for k in (1, 2, 3)] == [3, 2, 2]
    # macro: the mean of the three one-vs-rest AUROCs and APs.
    assert test["macro"]["auroc"] == pytest.approx((9.5 / 12 + 0.75 + 0.45) / 3)
    assert test["macro"]["ap"] == pytest.approx(
        np.mean([test[f"class{k}"]["ap"] for k in (1, 2, 3)]))
    # argmax classes 2, 2, 1, 1, 2, 1, 3 against 3, 1, 3, 1, 2, 1, 2 -> 3 of 7 right.
    assert test["overall"] == pytest.approx({
        "accuracy": 3 / 7, "weighted_ovr_auroc": (3 * 9.5 / 12 + 2 * 0.75 + 2 * 0.45) / 7})


def test_af_risk_report_thresholds_come_from_val_in_every_split():
    report = af_risk_report({"test": _af_table(AF_TEST), "val": _af_table(AF_VAL)})
    assert report["test"]["class3_vs_1"]["threshold"] == pytest.approx(0.5)
    assert report["val"]["class3_vs_1"]["threshold"] == pytest.approx(0.5)


def test_af_risk_report_needs_validation_and_valid_classes():
    with pytest.raises(ValueError, match="'val'"):
        af_risk_report({"test": _af_table(AF_TEST)})
    with pytest.raises(ValueError, match=r"evaluation: target_exam_class holds .*0\.0.*, not "
                                         r"among the classes \[1, 2, 3\]"):
        af_risk_report({"val": _af_table([(0.5, 0.2, 0.3, 0)])})


def test_af_risk_report_unknown_class_message_is_plain():
    with pytest.raises(UserError, match=r"target_exam_class holds \[0\.0\], not among the "
                                        r"classes \[1, 2, 3\]"):
        af_risk_report({"val": _af_table([(0.5, 0.2, 0.3, 0)])})
