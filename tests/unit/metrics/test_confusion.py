"""``ecgexp.metrics.confusion``: the cells of every resample as one matrix product, checked
against counting the drawn exams one by one, and the rates from the cells by hand."""

import numpy as np
import pytest

from ecgexp.metrics.confusion import Confusion, confusion_counts, rates, threshold_confusion


def test_cells_of_each_resample_count_the_exams_as_often_as_drawn():
    predicted = np.array([[1, 0], [1, 1], [0, 0], [0, 1], [1, 0]])
    targets = np.array([[1, 0], [0, 1], [0, 1], [0, 0], [1, 1]])
    counts = np.array([[1, 1, 1, 1, 1], [2, 0, 3, 0, 0], [0, 1, 0, 2, 2]])
    cells = confusion_counts(predicted, targets, counts)
    assert cells["tp"].shape == (3, 2)
    for r, row in enumerate(counts):
        for label in range(2):
            tally = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
            for exam, times in enumerate(row):
                p, t = predicted[exam, label], targets[exam, label]
                cell = ("t" if p == t else "f") + ("p" if p else "n")
                tally[cell] += times
            for name, value in tally.items():
                assert cells[name][r, label] == value, (r, label, name)


def test_one_label_gives_one_value_per_resample():
    cells = confusion_counts([True, False, True], [True, True, False], np.ones((1, 3)))
    assert {name: value.tolist() for name, value in cells.items()} == \
        {"tp": [1.0], "fp": [1.0], "tn": [0.0], "fn": [1.0]}


def test_thresholds_per_label_and_scores_at_the_threshold_are_positive():
    scores = np.array([[0.2, 0.7], [0.5, 0.69], [0.9, 0.1]])
    targets = np.array([[0, 1], [1, 1], [1, 0]])
    confusion = threshold_confusion(scores, targets, np.array([0.5, 0.7]))
    cells = confusion.counts(np.ones(3))
    # label 0: predicted [0, 1, 1] -> tp 2; label 1: predicted [1, 0, 0] -> tp 1, fn 1, tn 1
    assert cells["tp"].tolist() == [2.0, 1.0] and cells["fn"].tolist() == [0.0, 1.0]
    assert cells["tn"].tolist() == [1.0, 1.0] and cells["fp"].tolist() == [0.0, 0.0]


def test_rates_by_hand_and_nan_where_a_denominator_is_zero():
    out = rates(tp=np.array([6.0, 0.0]), fp=np.array([2.0, 0.0]), tn=np.array([9.0, 5.0]),
                fn=np.array([3.0, 0.0]))
    assert out["precision"][0] == pytest.approx(6 / 8)
    assert out["recall"][0] == pytest.approx(6 / 9)
    assert out["specificity"][0] == pytest.approx(9 / 11)
    assert out["f1"][0] == pytest.approx(2 * (6 / 8) * (6 / 9) / (6 / 8 + 6 / 9))
    assert out["balanced_accuracy"][0] == pytest.approx((6 / 9 + 9 / 11) / 2)
    assert out["mcc"][0] == pytest.approx((6 * 9 - 2 * 3) / np.sqrt(8 * 9 * 11 * 12))
    # No positive exam and none predicted: every rate that needs one is undefined.
    assert np.isnan([out[m][1] for m in ("precision", "recall", "f1", "balanced_accuracy",
                                         "mcc")]).all()
    assert out["specificity"][1] == 1.0


def test_mismatched_shapes_are_named():
    with pytest.raises(ValueError, match=r"^bootstrap: predicted \(3,\) and targets \(4,\) "
                                         r"differ$"):
        Confusion(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"^bootstrap: counts \(2, 5\) and the 3 exams of the "
                                         r"predictions must share the exam axis$"):
        Confusion(np.ones(3), np.ones(3)).counts(np.ones((2, 5)))
