"""``ecgexp.inference.rows.prediction_rows``, the one builder of predictions-table rows.

The objectives here are stand-ins with only what the table needs (``prediction_columns``,
``target_columns``, ``add_derived_columns``), so every expected value is written by hand from
the arrays given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecgexp.inference.rows import prediction_rows


class Scores:
    """Two labels, one score each (as the multi-label objective)."""

    target_columns = ["AF", "RBBB"]
    prediction_columns = ["score_AF", "score_RBBB"]

    def add_derived_columns(self, table: pd.DataFrame) -> pd.DataFrame:
        return table


class Gaussian:
    """One target, three prediction columns and a derived gap column (as the Gaussian
    regression with a ``gap_column``)."""

    target_columns = ["potassium"]
    prediction_columns = ["predicted_potassium", "mean_potassium", "std_potassium"]

    def add_derived_columns(self, table: pd.DataFrame) -> pd.DataFrame:
        table["gap"] = table.predicted_potassium - table.target_potassium
        return table


def test_rows_follow_the_order_of_the_columns_and_the_exams():
    predictions = np.array([[[0.9, 0.1], [0.25, 0.5], [0.125, 0.75]]], np.float32)
    table = prediction_rows(Scores(), predictions, {"exam_id": np.array([501, 77, 3])},
                            targets=np.array([[1, 0], [0, 1], [1, 1]], np.float32))
    expected = pd.DataFrame({"exam_id": [501, 77, 3],
                             "score_AF": [0.9, 0.25, 0.125], "score_RBBB": [0.1, 0.5, 0.75],
                             "target_AF": [1.0, 0.0, 1.0], "target_RBBB": [0.0, 1.0, 1.0]})
    pd.testing.assert_frame_equal(table, expected.astype({c: np.float32 for c in
                                                         expected.columns[1:]}))


def test_several_prediction_columns_per_target_and_derived_columns():
    score = [[4.5, 1.5, 0.25], [3.0, 1.0, 0.5], [5.5, 1.75, 0.125]]
    table = prediction_rows(Gaussian(), np.array([score]), {"exam_id": np.array([10, 11, 12])},
                            targets=np.array([4.0, 3.5, 6.0]))
    assert table.columns.tolist() == ["exam_id", "predicted_potassium", "mean_potassium",
                                      "std_potassium", "target_potassium", "gap"]
    np.testing.assert_array_equal(table[["predicted_potassium", "mean_potassium",
                                         "std_potassium"]].to_numpy(), score)
    np.testing.assert_array_equal(table.target_potassium, [4.0, 3.5, 6.0])
    np.testing.assert_array_equal(table.gap, [0.5, -0.5, -0.5])


def test_an_ensemble_gives_the_members_mean_and_standard_deviation():
    members = np.array([[[0.2, 0.4]], [[0.4, 0.8]], [[0.6, 0.6]]])
    table = prediction_rows(Scores(), members, {"exam_id": np.array([7])})
    assert table.columns.tolist() == ["exam_id", "score_AF", "score_RBBB", "score_AF_sd",
                                      "score_RBBB_sd"]
    np.testing.assert_allclose(table.iloc[0, 1:].astype(float),
                               [0.4, 0.6, 0.2, 0.2], atol=1e-12)


def test_thresholds_give_nullable_labels_and_none_without_a_threshold_or_score():
    predictions = np.array([[[0.9, 0.1], [0.3, np.nan]]])
    table = prediction_rows(Scores(), predictions, thresholds={"AF": 0.3, "RBBB": float("nan")})
    assert table.columns.tolist() == ["score_AF", "score_RBBB", "label_AF", "label_RBBB"]
    assert table.label_AF.tolist() == [1, 1] and str(table.label_AF.dtype) == "Int64"
    assert table.label_RBBB.isna().all()  # no threshold chosen (no positives in validation)


def test_no_exams_give_the_columns_and_no_rows():
    table = prediction_rows(Scores(), np.zeros((1, 0, 2), np.float32),
                            {"exam_id": np.zeros(0, np.int64)}, targets=np.zeros((0, 2)))
    assert table.empty
    assert table.columns.tolist() == ["exam_id", "score_AF", "score_RBBB", "target_AF",
                                      "target_RBBB"]
