"""``ecgexp.data.labels``: reading label CSVs, checking their values, and joining them with the
tracing index.

Every test writes its own small CSV under ``tmp_path``. A bad file or value is one line that
names the config key, the file and, for a value, its column and row: each message is checked by
its full text.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgexp.data.labels import (
    check_columns,
    check_label_values,
    join_labels,
    read_csv_table,
    read_label_table,
)
from ecgexp.errors import UserError, is_user_error

EXPECTED = "point dataset.labels_csv at the label table"
# How messages name the target columns of the task (a metadata column is task.metadata_columns).
TARGET_KEY = "task.objective (target columns)"


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def one_line(info) -> str:
    message = info.value.args[0] if isinstance(info.value, KeyError) else str(info.value)
    assert is_user_error(info.value) and "\n" not in message, message
    return message


def tracing_index(exam_ids) -> pd.DataFrame:
    """A tracing index as ``index_tracings`` returns it: one file, rows in order."""
    return pd.DataFrame({"exam_id": np.asarray(exam_ids, np.int64), "file_index": 0,
                         "row": np.arange(len(exam_ids))})


# --------------------------------------------------------------------------------------------
# reading the file


def test_read_csv_table_returns_the_rows_written(tmp_path):
    written = pd.DataFrame({"exam_id": [3, 1, 2], "age": [61.5, 40.0, np.nan],
                            "AF": [True, False, True], "site": ["a", "b", "c"]})
    written.to_csv(tmp_path / "labels.csv", index=False)
    pd.testing.assert_frame_equal(read_csv_table(tmp_path / "labels.csv", "k", EXPECTED),
                                  written)


@pytest.mark.parametrize("content, problem", [
    (None, "no file '{path}' (working directory {cwd})"),
    ("", "'{path}' is empty (no header line, no rows)"),
    ("exam_id,chagas,age\n", "'{path}' has a header (exam_id, chagas, age) but no rows"),
], ids=["missing", "empty", "header_only"])
def test_read_csv_table_names_key_file_and_what_to_do(tmp_path, content, problem):
    path = tmp_path / "exams.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as info:
        read_csv_table(path, "dataset.extra_labels_csv", "point it at the Chagas labels")
    assert one_line(info) == (f"dataset.extra_labels_csv: "
                              f"{problem.format(path=path, cwd=Path.cwd())}; point it at the "
                              f"Chagas labels")


def test_read_csv_table_names_an_unparsable_file(tmp_path):
    path = write_csv(tmp_path / "exams.csv", 'exam_id,chagas\n1,0\n2,"1\n')  # open quote
    with pytest.raises(UserError) as info:
        read_csv_table(path, "dataset.labels_csv", EXPECTED)
    message = one_line(info)
    assert message.startswith(f"dataset.labels_csv: '{path}' is not a readable CSV table (")
    assert message.endswith(f"); {EXPECTED}") and "C error" not in message
    binary = tmp_path / "exams.hdf5"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)  # not text at all
    with pytest.raises(UserError, match=r"is not a readable CSV table"):
        read_csv_table(binary, "dataset.labels_csv", EXPECTED)


def test_missing_label_csv(tmp_path):
    """Moved from tests/unit/data/test_datamodule.py (there through ``HDF5Source.load``)."""
    missing = tmp_path / "no_labels.csv"
    with pytest.raises(FileNotFoundError) as info:
        read_label_table(missing, "exam_id", ["y"])
    assert str(info.value) == (f"dataset.labels_csv: no label file at '{missing}' "
                               f"(working directory {Path.cwd()})")
    with pytest.raises(FileNotFoundError, match=r"^dataset\.extra_labels_csv: no label file"):
        read_label_table(missing, "exam_id", ["y"], key="dataset.extra_labels_csv")


def test_read_label_table_renames_and_takes_the_exam_id(tmp_path):
    path = write_csv(tmp_path / "pair.csv", "id_exam,Idade,AF\n7,60,True\n3,45.5,False\n")
    table = read_label_table(path, "id_exam", ["age"], rename_columns={"Idade": "age"},
                             target_columns=["AF"], metadata_columns=["age"],
                             binary_columns=["AF"])
    assert table.columns.tolist() == ["exam_id", "age", "AF"]
    assert table.exam_id.tolist() == [7, 3] and table.age.tolist() == [60.0, 45.5]
    assert table.AF.tolist() == [True, False]
    # without an id column (row-order labels) the table is returned as read
    unchanged = read_label_table(path, None, ["Idade"])
    assert unchanged.columns.tolist() == ["id_exam", "Idade", "AF"]


def test_label_csv_without_target_or_id_column(tmp_path):
    """Moved from tests/unit/data/test_datamodule.py (there through ``HDF5Source.load``)."""
    path = write_csv(tmp_path / "labels.csv", "exam_id,y\n1,0.5\n2,1.0\n")
    with pytest.raises(KeyError) as info:
        read_label_table(path, "exam_id", ["y", "AF"])
    assert one_line(info) == (f"{TARGET_KEY} / task.metadata_columns: column 'AF' not in "
                              f"{path} (columns: exam_id, y); map CSV names with "
                              f"dataset.rename_columns")
    with pytest.raises(KeyError) as info:
        read_label_table(path, "id_exam", ["y"])
    assert one_line(info) == (f"dataset.id_column: column 'id_exam' not in {path} (columns: "
                              f"exam_id, y)")
    with pytest.raises(KeyError, match=r"columns 'AF', 'ST' not in"):
        check_columns(pd.read_csv(path), ["y", "AF", "ST"], path)


# --------------------------------------------------------------------------------------------
# label values


def test_a_text_value_is_named_by_column_row_and_file(tmp_path):
    path = write_csv(tmp_path / "exams.csv",
                     "exam_id,age,chagas\n11,50,0\n12,61,1\n13,sixty,0\n14,,1\n15,old,1\n")
    with pytest.raises(UserError) as info:
        read_label_table(path, "exam_id", ["age"], target_columns=["age"])
    assert one_line(info) == (
        f"{TARGET_KEY}: column 'age' of '{path}' is not numeric: row 3 (exam_id 13) holds "
        f"'sixty' (2 such values: 'sixty', 'old'); labels must be numbers (binary ones 0/1 or "
        f"True/False): fix the file (dataset.labels_csv) or choose another column in "
        f"{TARGET_KEY}")
    # the same column as an input of the network names the metadata key
    with pytest.raises(UserError, match=r"^task\.metadata_columns: column 'age' .* row 3 "
                                        r"\(exam_id 13\)"):
        read_label_table(path, "exam_id", ["age"], metadata_columns=["age"])
    # without exam ids (row-order labels) the row alone names the value
    rows = write_csv(tmp_path / "gold_standard.csv", "age,chagas\n50,0\n61,1\nsixty,0\n")
    with pytest.raises(UserError, match=r"is not numeric: row 3 holds 'sixty' \(1 such"):
        read_label_table(rows, None, ["age"], target_columns=["age"])


def test_an_infinite_value_is_not_a_number(tmp_path):
    path = write_csv(tmp_path / "exams.csv", "exam_id,potassium\n1,4.1\n2,inf\n3,-inf\n")
    with pytest.raises(UserError) as info:
        read_label_table(path, "exam_id", [], target_columns=["potassium"],
                         key="dataset.extra_labels_csv")
    assert one_line(info).startswith(
        f"{TARGET_KEY}: column 'potassium' of '{path}' is not numeric: row 2 (exam_id 2) holds "
        f"inf (2 such values: inf, -inf); ")
    assert "fix the file (dataset.extra_labels_csv)" in one_line(info)


def test_a_binary_label_outside_0_1_is_named(tmp_path):
    path = write_csv(tmp_path / "exams.csv", "exam_id,AF\n1,0\n2,1\n3,1\n4,2\n5,-1\n6,2\n")
    with pytest.raises(UserError) as info:
        read_label_table(path, "exam_id", ["AF"], target_columns=["AF"], binary_columns=["AF"])
    assert one_line(info) == (
        f"{TARGET_KEY}: binary label 'AF' of '{path}' holds 2 at row 4 (exam_id 4) (3 values "
        f"outside {{0, 1}}: 2, -1); binary labels must be 0/1 or True/False: fix the file "
        f"(dataset.labels_csv) or leave 'AF' out of {TARGET_KEY}")
    # the same values are fine for a target that is not binary (a regression target)
    table = read_label_table(path, "exam_id", ["AF"], target_columns=["AF"])
    assert table.AF.tolist() == [0, 1, 1, 2, -1, 2]


def test_accepted_label_values(tmp_path):
    """Numbers, True/False (as the Challenge writes them), 0/1 and empty cells (missing
    values, left out later) pass; columns the table does not hold are not checked."""
    path = write_csv(tmp_path / "exams.csv", "exam_id,chagas,AF,age\n1,True,1,50.5\n"
                                             "2,False,0,\n3,,1.0,71\n")
    table = read_label_table(path, "exam_id", ["chagas", "AF", "age"],
                             target_columns=["chagas", "AF", "absent"],
                             metadata_columns=["age"], binary_columns=["chagas", "AF"])
    assert table.chagas.tolist()[:2] == [True, False] and pd.isna(table.chagas.iloc[2])
    assert table.AF.tolist() == [1.0, 0.0, 1.0]
    assert table.age.tolist()[::2] == [50.5, 71.0] and pd.isna(table.age.iloc[1])


def test_values_not_from_csv_rows_are_named_by_exam(tmp_path):
    """A derived table (e.g. built targets) or a constant column has no CSV row to name."""
    table = pd.DataFrame({"exam_id": [21, 22, 23], "exam_class": [1, 4, 2]})
    with pytest.raises(UserError) as info:
        check_label_values(table, ["exam_class"], [], ["exam_class"], "exams.csv",
                           csv_rows=False)
    assert one_line(info).startswith(f"{TARGET_KEY}: binary label 'exam_class' of 'exams.csv' "
                                     f"holds 4 at exam_id 22 (2 values outside {{0, 1}}: 4, "
                                     f"2); ")
    constant = pd.DataFrame({"chagas": ["yes"]})
    with pytest.raises(UserError) as info:
        check_label_values(constant, ["chagas"], [], ["chagas"], "dataset.constant_columns",
                           key="dataset.constant_columns", csv_rows=False)
    assert one_line(info).startswith(f"{TARGET_KEY}: column 'chagas' of "
                                     f"'dataset.constant_columns' is not numeric: every exam "
                                     f"holds 'yes' (1 such values: 'yes'); ")
    assert "fix the file (dataset.constant_columns)" in one_line(info)


# --------------------------------------------------------------------------------------------
# the join


def test_join_on_exam_id_keeps_the_tracing_order(tmp_path):
    index = tracing_index([30, 10, 20, 40])  # 40 has no label: left out
    labels = pd.DataFrame({"exam_id": [20, 30, 10], "y": [2.0, 3.0, 1.0]})
    table = join_labels(index, labels, "exam_id", "labels.csv")
    assert table.exam_id.tolist() == [30, 10, 20]
    assert table.row.tolist() == [0, 1, 2] and table.y.tolist() == [3.0, 1.0, 2.0]
    assert table.columns.tolist() == ["exam_id", "file_index", "row", "y"]


def test_labelled_exams_missing_from_the_tracings(tmp_path, caplog):
    index = tracing_index(np.arange(1, 18))
    labels = pd.DataFrame({"exam_id": np.arange(1, 21), "y": np.arange(1, 21) * 0.5})
    with pytest.raises(ValueError) as info:
        join_labels(index, labels, "exam_id", "labels.csv")
    assert str(info.value) == ("dataset.tracing_files / dataset.labels_csv: 3 of 20 exam_ids in "
                               "labels.csv are not in the tracings (e.g. 18); check that all "
                               "tracing files are listed, or set dataset.missing_exams=drop")
    with caplog.at_level(logging.WARNING, logger="ecgexp.data.labels"):
        table = join_labels(index, labels, "exam_id", "labels.csv", missing_exams="drop")
    assert table.exam_id.tolist() == list(range(1, 18))
    np.testing.assert_array_equal(table.y, np.arange(1, 18) * 0.5)
    assert ("3 of 20 exam_ids in labels.csv are not in the tracings (e.g. 18); dropped "
            "(dataset.missing_exams=drop)") in caplog.text


def test_row_order_pairs_rows_and_takes_ids_from_the_labels():
    index = tracing_index(np.arange(4))  # row numbers as ids (no exam_id dataset)
    annotations = pd.DataFrame({"AF": [1, 0, 0, 1]})
    table = join_labels(index, annotations, "row_order", "gold_standard.csv")
    assert table.exam_id.tolist() == [0, 1, 2, 3] and table.AF.tolist() == [1, 0, 0, 1]
    with_ids = pd.DataFrame({"exam_id": [907, 13, 52, 4], "death": [0, 1, 0, 0]})
    table = join_labels(index, with_ids, "row_order", "exams.csv")  # SaMi-Trop
    assert table.exam_id.tolist() == [907, 13, 52, 4] and table.row.tolist() == [0, 1, 2, 3]
    assert table.columns.tolist() == ["file_index", "row", "exam_id", "death"]


def test_row_order_length_mismatch():
    """Moved from tests/unit/data/test_datamodule.py (there through ``HDF5Source.load``)."""
    with pytest.raises(ValueError) as info:
        join_labels(tracing_index(np.arange(10)), pd.DataFrame({"y": np.arange(9.0)}),
                    "row_order", "labels.csv")
    assert str(info.value) == ("dataset.join=row_order: labels.csv has 9 rows but the tracings "
                               "have 10; row-order labels must match the tracings one to one")


@pytest.mark.parametrize("join", ["exam_id", "row_order"])
def test_duplicate_exam_ids_in_the_labels(join):
    """Moved from tests/unit/data/test_datamodule.py (the label half of
    ``test_duplicate_exam_ids`` and ``test_duplicate_exam_ids_row_order``)."""
    labels = pd.DataFrame({"exam_id": [1, 2, 2, 4, 5], "y": 1.0})
    with pytest.raises(ValueError) as info:
        join_labels(tracing_index([1, 2, 3, 4, 5]), labels, join, "labels.csv")
    assert str(info.value) == ("dataset.labels_csv: 1 exam_ids occur more than once in "
                               "labels.csv (e.g. 2)")


def test_unknown_join_rules_are_named():
    index, labels = tracing_index([1]), pd.DataFrame({"exam_id": [1]})
    with pytest.raises(ValueError) as info:
        join_labels(index, labels, "by_row", "labels.csv")
    assert str(info.value) == ("dataset.join: 'by_row' is not one of ('exam_id', "
                               "'row_order')")
    with pytest.raises(ValueError) as info:
        join_labels(index, labels, "exam_id", "labels.csv", missing_exams="ignore")
    assert str(info.value) == ("dataset.missing_exams: 'ignore' is not one of ('error', "
                               "'drop')")
