"""``ecgexp.tasks.predictions.predictions_table``: ``predict_step`` outputs -> one row per exam.

The objectives here are stand-ins with only what the table needs (``prediction_columns``,
``target_columns``, ``add_derived_columns``), so every expected value is written by hand from
the tensors of the batches.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ecgexp.tasks.predictions import predictions_table


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


def batch(exam_ids, score, target):
    return {"exam_id": torch.tensor(exam_ids, dtype=torch.int64),
            "score": torch.tensor(score), "target": torch.tensor(target)}


def test_rows_follow_the_batches_and_columns_the_objective():
    batches = [batch([501, 77], [[0.9, 0.1], [0.25, 0.5]], [[1.0, 0.0], [0.0, 1.0]]),
               None,  # a batch whose exams were all left out (dataset.nan_policy=skip)
               batch([3], [[0.125, 0.75]], [[1.0, 1.0]])]
    table = predictions_table(batches, Scores())
    expected = pd.DataFrame({"exam_id": [501, 77, 3],
                             "score_AF": [0.9, 0.25, 0.125], "score_RBBB": [0.1, 0.5, 0.75],
                             "target_AF": [1.0, 0.0, 1.0], "target_RBBB": [0.0, 1.0, 1.0]})
    pd.testing.assert_frame_equal(table, expected.astype({c: np.float32 for c in
                                                         expected.columns[1:]}))
    assert table.exam_id.dtype == np.int64


def test_several_prediction_columns_per_target_and_derived_columns():
    score = [[4.5, 1.5, 0.25], [3.0, 1.0, 0.5], [5.5, 1.75, 0.125]]
    table = predictions_table([batch([10, 11, 12], score, [[4.0], [3.5], [6.0]])], Gaussian())
    assert table.columns.tolist() == ["exam_id", "predicted_potassium", "mean_potassium",
                                      "std_potassium", "target_potassium", "gap"]
    np.testing.assert_array_equal(table.exam_id, [10, 11, 12])
    np.testing.assert_array_equal(table[["predicted_potassium", "mean_potassium",
                                         "std_potassium"]].to_numpy(), score)
    np.testing.assert_array_equal(table.target_potassium, [4.0, 3.5, 6.0])
    np.testing.assert_array_equal(table.gap, [0.5, -0.5, -0.5])


def test_one_output_vectors_and_half_precision_scores():
    """Scores and targets of one column may come as ``(n,)``; bf16/fp16 outputs (mixed
    precision) become float32 numbers."""
    class One:
        target_columns = ["age"]
        prediction_columns = ["predicted_age"]

        def add_derived_columns(self, table):
            return table

    scores = torch.tensor([61.5, 40.25], dtype=torch.bfloat16)
    table = predictions_table([{"exam_id": torch.tensor([8, 9]), "score": scores,
                                "target": torch.tensor([60.0, 42.0], dtype=torch.float16)}],
                              One())
    assert table.columns.tolist() == ["exam_id", "predicted_age", "target_age"]
    assert table.predicted_age.dtype == np.float32 and table.target_age.dtype == np.float32
    np.testing.assert_array_equal(table.predicted_age, scores.float().numpy())
    np.testing.assert_array_equal(table.target_age, [60.0, 42.0])


@pytest.mark.parametrize("batches", [[], [None, None]], ids=["no_batches", "all_skipped"])
def test_no_exams_give_an_empty_table_with_the_columns(batches):
    table = predictions_table(batches, Scores())
    assert table.empty
    assert table.columns.tolist() == ["exam_id", "score_AF", "score_RBBB", "target_AF",
                                      "target_RBBB"]
