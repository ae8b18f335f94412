"""``ecgexp.evaluation.tables``: a user's table checked column by column, each fault one line
naming the key, the file, the column and the first bad row with its line in the file."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgexp.errors import UserError
from ecgexp.evaluation.tables import binary_column, finite_column, first_line, require_columns

PATH = Path("predictions.csv")


def test_finite_scores_are_read_as_floats():
    table = pd.DataFrame({"score_AF": ["0.25", 1, 0.5]})
    values = finite_column(table, "score_AF", PATH, "predictions")
    assert values.dtype == np.float64 and values.tolist() == [0.25, 1.0, 0.5]


@pytest.mark.parametrize("cells, shown, row, rows", [
    ([0.1, np.nan, 0.3, np.inf], "nan", 2, 2), ([0.1, 0.2, "yes"], "'yes'", 3, 1),
    ([-np.inf], "-inf", 1, 1)])
def test_the_first_bad_score_is_named_with_its_line(cells, shown, row, rows):
    table = pd.DataFrame({"score_AF": cells})
    with pytest.raises(UserError) as error:
        finite_column(table, "score_AF", PATH, "predictions", what="probabilities")
    assert str(error.value) == (
        f"predictions: 'predictions.csv' column 'score_AF' holds {shown} at row {row} (line "
        f"{row + 1} of the file) ({rows} such rows); probabilities must be finite numbers (no "
        f"NaN, Inf or text)")


def test_binary_labels_are_0_or_1():
    table = pd.DataFrame({"AF": [0, 1, "1", 1.0], "SB": [0, 1, 2, "no"]})
    assert binary_column(table, "AF", PATH, "labels_csv").tolist() == [0, 1, 1, 1]
    with pytest.raises(UserError, match=r"^labels_csv: 'predictions.csv' column 'SB' holds 2 at "
                                        r"row 3 \(line 4 of the file\) \(2 such rows\); a binary "
                                        r"label must be 0 or 1$"):
        binary_column(table, "SB", PATH, "labels_csv")


def test_missing_columns_are_listed_with_the_columns_present():
    table = pd.DataFrame(columns=[f"c{i}" for i in range(14)])
    require_columns(table, ["c0", "c13"], PATH, "predictions", "unused")
    with pytest.raises(UserError, match=r"^predictions: 'predictions.csv' lacks the column\(s\) "
                                        r"exam_id, score_AF; one row per exam \(its columns: c0, "
                                        r"c1, .*, c11, \.\.\.\)$"):
        require_columns(table, ["exam_id", "c1", "score_AF"], PATH, "predictions",
                        "one row per exam")


def test_first_line_of_an_error():
    assert first_line(ValueError("bad value\nmore detail")) == "bad value"
    assert first_line(KeyError()) == "KeyError"
