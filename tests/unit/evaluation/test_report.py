"""``ecgexp.evaluation.report``: reports flattened for loggers, written as strict JSON and read
back, and the cells of the printed tables."""

import json
import math

import pytest

from ecgexp.evaluation.report import flatten, flatten_report, format_value, is_count, report_json


def test_flatten_joins_nested_keys_and_keeps_other_values():
    tree = {"test": {"AF": {"auroc": 0.9, "thresholds": [0.1, 0.2]}, "empty": {}}, "n": 3}
    assert flatten(tree) == {"test/AF/auroc": 0.9, "test/AF/thresholds": [0.1, 0.2],
                             "test/empty": {}, "n": 3}
    assert flatten({"a": {"b": 1}}, separator=".", prefix="val.") == {"val.a.b": 1}


def test_flatten_report_gives_floats_and_nan_for_undefined_values():
    flat = flatten_report({"test": {"AF": {"auroc": 0.9, "f1": None, "n": 12}, "skipped": {}}})
    assert set(flat) == {"test/AF/auroc", "test/AF/f1", "test/AF/n"}
    assert flat["test/AF/auroc"] == 0.9 and math.isnan(flat["test/AF/f1"])
    assert flat["test/AF/n"] == 12.0 and isinstance(flat["test/AF/n"], float)


def test_report_json_is_strict_json_that_reads_back():
    report = {"val": {"AF": {"auroc": math.nan, "threshold": math.inf, "low": -math.inf,
                             "curve": (0.5, math.nan), "n": 4}}}
    text = report_json(report)
    assert json.loads(text) == {"val": {"AF": {"auroc": None, "threshold": "inf", "low": "-inf",
                                               "curve": [0.5, None], "n": 4}}}
    assert "NaN" not in text and "Infinity" not in text
    back = flatten_report({"val": {"AF": {k: v for k, v in json.loads(text)["val"]["AF"].items()
                                          if k != "curve"}}})
    assert math.isnan(back["val/AF/auroc"]) and back["val/AF/threshold"] == math.inf
    assert back["val/AF/low"] == -math.inf and back["val/AF/n"] == 4.0


@pytest.mark.parametrize("metric, counted", [
    ("n", True), ("n_exams", True), ("n_resamples", True), ("positives", True),
    ("event_count", True), ("TP", True),
    ("support", True), ("auroc", False), ("n50", False), ("exams_per_second", False),
    ("recall", False)])
def test_counts_are_named_by_n_or_a_count_word_at_the_end(metric, counted):
    assert is_count(metric) is counted


@pytest.mark.parametrize("metric, value, cell", [
    ("n_exams", 12.0, "12"), ("positives", 3, "3"), ("n_exams", 12.5, "12.500"),
    ("auroc", 0.91249, "0.912"), ("auroc", 1, "1.000"), ("f1", math.nan, "nan"),
    ("rule", "youden", "youden"), ("threshold", None, "None")])
def test_cells_print_whole_counts_as_integers_and_other_numbers_with_three_decimals(
        metric, value, cell):
    assert format_value(metric, value) == cell
