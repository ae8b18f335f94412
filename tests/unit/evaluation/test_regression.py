"""``ecgexp.evaluation.regression``, the edges that tests/unit/evaluation/test_task_reports.py
(the metrics on whole samples) leaves out: no pair and one pair, NaN pairs and triples
dropped, the refusals by their text, the coverage key's name for other levels and an empty
Gaussian sample; values by hand."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from ecgexp.evaluation.regression import event_detection, gaussian_metrics, regression_metrics

NAN = math.nan


def test_no_pair_is_nan_with_n_zero():
    result = regression_metrics(np.array([NAN, 1.0]), np.array([2.0, NAN]))
    assert result["n"] == 0.0
    assert all(math.isnan(result[k]) for k in ("mae", "rmse", "r2", "pearson"))


def test_one_pair_has_errors_but_no_r2_or_correlation():
    result = regression_metrics(np.array([3.0, NAN]), np.array([5.0, 1.0]))
    assert result["n"] == 1.0 and result["mae"] == 2.0 and result["rmse"] == 2.0
    assert math.isnan(result["r2"]) and math.isnan(result["pearson"])


def test_pairs_with_a_missing_value_are_dropped_before_the_errors():
    predicted = np.array([1.0, NAN, 4.0, 10.0, 2.0])
    target = np.array([2.0, 3.0, 4.0, NAN, 6.0])
    # kept: (1, 2), (4, 4), (2, 6): errors -1, 0, -4
    result = regression_metrics(predicted, target)
    assert result["n"] == 3.0
    assert result["mae"] == pytest.approx(5 / 3)
    assert result["rmse"] == pytest.approx(math.sqrt(17 / 3))
    # r2 = 1 - SSE / SST: SST of 2, 4, 6 around 4 is 8
    assert result["r2"] == pytest.approx(1 - 17 / 8)


def test_events_count_only_non_missing_targets_and_exclude_the_threshold():
    target = np.array([3.5, 3.4, NAN, 5.0, 3.0])
    predicted = np.array([3.0, 3.6, 2.0, 4.0, NAN])
    # kept: (3.0, 3.5), (3.6, 3.4), (4.0, 5.0); below 3.5 is strict: one event (3.4)
    result = event_detection(predicted, target, {"hypo": {"below": 3.5}, "hyper": {"above": 5}})
    assert result["hypo"]["positives"] == 1.0
    # score -predicted: the event's 3.6 is below 4.0 but above 3.0 -> 1/2
    assert result["hypo"]["auroc"] == pytest.approx(0.5)
    assert result["hyper"]["positives"] == 0.0 and math.isnan(result["hyper"]["auroc"])


def test_a_bad_event_spec_is_named_with_what_was_given():
    with pytest.raises(ValueError, match=r"^task\.objective\.events\.hypo: give exactly one of "
                                         r"'below: <value>' or 'above: <value>', got "
                                         r"\{'below': 3\.5, 'unit': 'mmol'\}$"):
        event_detection(np.ones(2), np.ones(2), {"hypo": {"below": 3.5, "unit": "mmol"}})


def test_gaussian_refusals_by_their_text():
    with pytest.raises(ValueError, match=r"^gaussian_metrics: standard deviations must be "
                                         r"positive$"):
        gaussian_metrics(np.zeros(2), np.array([1.0, 0.0]), np.ones(2))
    with pytest.raises(ValueError, match=r"^gaussian_metrics: log_target needs positive "
                                         r"targets$"):
        gaussian_metrics(np.zeros(2), np.ones(2), np.array([1.0, 0.0]), log_target=True)


def test_gaussian_triples_with_a_missing_value_are_dropped_first():
    # the NaN std and the non-positive target sit in dropped triples: nothing is refused
    mean = np.array([0.0, 1.0, NAN, 0.0])
    std = np.array([1.0, NAN, 1.0, 2.0])
    target = np.array([0.5, -1.0, 0.0, NAN])
    result = gaussian_metrics(mean, std, target, level=0.95)
    assert set(result) == {"nll", "coverage_95", "mean_interval_width"}
    assert result["nll"] == pytest.approx(0.5 * math.log(2 * math.pi) + 0.125)
    assert result["coverage_95"] == 1.0
    assert result["mean_interval_width"] == pytest.approx(2 * norm.ppf(0.975))


def test_coverage_key_of_a_fractional_level_and_an_empty_sample():
    result = gaussian_metrics(np.array([NAN]), np.ones(1), np.ones(1), level=0.975)
    assert set(result) == {"nll", "coverage_97.5", "mean_interval_width"}
    assert all(math.isnan(value) for value in result.values())
