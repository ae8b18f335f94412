"""``ecgexp.metrics.errors``: MAE, RMSE, R² and Pearson's r of a regression, by hand on a few
pairs, with NaN pairs left out and the undefined cases NaN."""

import math

import numpy as np
import pytest

from ecgexp.metrics.errors import regression_errors


def test_errors_of_four_pairs_by_hand():
    target = np.array([50.0, 60.0, 70.0, 80.0])
    predicted = np.array([52.0, 57.0, 71.0, 84.0])  # errors 2, -3, 1, 4
    out = regression_errors(predicted, target)
    assert out["mae"] == pytest.approx((2 + 3 + 1 + 4) / 4)
    assert out["rmse"] == pytest.approx(math.sqrt((4 + 9 + 1 + 16) / 4))
    # R²: 1 - 30 / sum((t - 65)²) = 1 - 30 / 500
    assert out["r2"] == pytest.approx(1 - 30 / 500)
    # r: centred predicted (-14, -9, 5, 18) against centred target (-15, -5, 5, 15)
    covariance = -14 * -15 + -9 * -5 + 5 * 5 + 18 * 15
    assert out["pearson"] == pytest.approx(
        covariance / math.sqrt((14**2 + 9**2 + 5**2 + 18**2) * 500))
    assert all(isinstance(value, float) for value in out.values())


def test_weights_repeat_the_pairs_and_nan_pairs_count_in_none():
    target = np.array([1.0, 2.0, 4.0, np.nan])
    predicted = np.array([2.0, 2.0, 1.0, 3.0])
    out = regression_errors(predicted, target, np.array([[2.0, 1.0, 1.0, 5.0],
                                                         [0.0, 1.0, 0.0, 1.0]]))
    # Resample 0: errors 1, 1, 0, -3 (the first pair twice; the NaN pair left out).
    assert out["mae"][0] == pytest.approx(5 / 4)
    assert out["rmse"][0] == pytest.approx(math.sqrt(11 / 4))
    # Resample 1: one pair, error 0: MAE and RMSE 0, no spread for R² and r.
    assert out["mae"][1] == 0 and out["rmse"][1] == 0
    assert np.isnan(out["r2"][1]) and np.isnan(out["pearson"][1])


def test_constant_predictions_have_no_correlation_and_no_pairs_no_errors():
    out = regression_errors(np.full(3, 5.0), np.array([4.0, 5.0, 7.0]))
    assert math.isnan(out["pearson"]) and out["r2"] == pytest.approx(1 - 5 / (14 / 3))
    empty = regression_errors(np.array([np.nan, 1.0]), np.array([1.0, np.nan]))
    assert all(math.isnan(value) for value in empty.values())


def test_mismatched_columns_are_named():
    with pytest.raises(ValueError, match=r"^predicted \(3,\) and target \(2,\) must be one "
                                         r"column of the same exams$"):
        regression_errors(np.ones(3), np.ones(2))
