"""The names of a predictions table's columns (ecgexp/columns.py), against the table layout the
published CODE-test outputs and ecgexp's own runs use (``score_1dAVb``, ``target_1dAVb``)."""

from ecgexp.columns import (
    LABEL,
    SCORE,
    TARGET,
    label_of,
    names_with,
    probability_of,
    score_of,
    scored_names,
    survival_at,
    target_of,
)


def test_names_and_their_columns():
    assert (score_of("1dAVb"), target_of("1dAVb"), label_of("1dAVb")) == \
        ("score_1dAVb", "target_1dAVb", "label_1dAVb")
    assert probability_of("above2") == "prob_above2"
    assert [survival_at(h) for h in (5, 2.5, 10.0)] == \
        ["survival_at_5", "survival_at_2.5", "survival_at_10"]


def test_names_are_read_back_in_column_order():
    columns = ["exam_id", "score_RBBB", "score_AF", "target_AF", "label_AF", "score_card"]
    assert scored_names(columns) == ["RBBB", "AF", "card"]
    assert names_with(columns, TARGET) == ["AF"] and names_with(columns, LABEL) == ["AF"]
    assert names_with(columns, SCORE) == scored_names(columns)
