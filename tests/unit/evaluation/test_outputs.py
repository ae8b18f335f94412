"""``ecgexp.evaluation.outputs``: the Markdown pipe table written out by hand, the CSV read
back, the export folder's checks and the PhysioNet Challenge 2025 files (their text written
out by hand from the scores and the threshold), errors by their text and nothing written when
a check fails."""

import numpy as np
import pandas as pd
import pytest

from ecgexp.errors import UserError
from ecgexp.evaluation.outputs import (
    challenge_export,
    check_export_folder,
    markdown_table,
    write_table,
)


def test_markdown_table_with_three_decimals_for_floats_only():
    table = pd.DataFrame({"label": ["af", "rbbb"], "n": [12, 3],
                          "auroc": [0.91234, np.float32(0.5)]})
    assert markdown_table(table) == ("| label | n | auroc |\n"
                                     "|---|---|---|\n"
                                     "| af | 12 | 0.912 |\n"
                                     "| rbbb | 3 | 0.500 |\n")


def test_write_table_writes_csv_and_markdown_side_by_side_and_replaces_them(tmp_path):
    table = pd.DataFrame({"label": ["af"], "auroc": [0.8766]})
    (tmp_path / "binary.csv").write_text("old\n")
    write_table(table, tmp_path / "binary")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["binary.csv", "binary.md"]
    assert (tmp_path / "binary.csv").read_text() == "label,auroc\naf,0.8766\n"
    assert (tmp_path / "binary.md").read_text() == (
        "| label | auroc |\n|---|---|\n| af | 0.877 |\n")


def test_export_folder_may_be_new_or_empty(tmp_path):
    check_export_folder(tmp_path / "new")
    check_export_folder(tmp_path)


def test_export_folder_that_is_a_file_or_holds_entries_is_refused(tmp_path):
    file = tmp_path / "out.txt"
    file.write_text("x")
    with pytest.raises(UserError, match=r"^challenge_export: '.*out\.txt' is a file, not a "
                                        r"folder; give a new or empty folder$"):
        check_export_folder(file)
    (tmp_path / "b").mkdir()
    with pytest.raises(UserError, match=r"^challenge_export: '.*' is not empty \(2 entries, "
                                        r"e\.g\. 'b'\); give a new or empty folder"):
        check_export_folder(tmp_path)


def predictions(scores):
    return pd.DataFrame({"exam_id": [101, 102, 103][:len(scores)], "score_chagas": scores})


def test_challenge_files_per_exam_named_by_record_with_label_at_the_threshold(tmp_path):
    folder = tmp_path / "export"
    names = ["records/HR001", "HR002", "../HR003"]
    written = challenge_export(predictions([0.2, 0.5, 0.7312346]), "chagas", 0.5, folder, names)
    assert written == 3
    assert sorted(p.name for p in folder.iterdir()) == ["HR002.txt", "_HR003.txt",
                                                         "records_HR001.txt"]
    assert (folder / "records_HR001.txt").read_text() == (
        "HR001\n# Chagas label: False\n# Chagas probability: 0.200000\n")
    assert (folder / "HR002.txt").read_text() == (  # a score at the threshold is positive
        "HR002\n# Chagas label: True\n# Chagas probability: 0.500000\n")
    assert (folder / "_HR003.txt").read_text() == (
        "HR003\n# Chagas label: True\n# Chagas probability: 0.731235\n")


def test_challenge_files_default_to_the_exam_ids(tmp_path):
    challenge_export(predictions([0.1, 0.9]), "chagas", 0.3, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["101.txt", "102.txt"]
    assert (tmp_path / "out" / "102.txt").read_text().splitlines()[:2] == [
        "102", "# Chagas label: True"]


def test_challenge_export_refuses_names_that_do_not_fit_and_writes_nothing(tmp_path):
    folder = tmp_path / "out"
    table = predictions([0.1, 0.9])
    with pytest.raises(UserError, match=r"^challenge_export: 3 record names for 2 predicted "
                                        r"exams$"):
        challenge_export(table, "chagas", 0.5, folder, ["a", "b", "c"])
    with pytest.raises(UserError, match=r"^challenge_export: exam_id 102 has no value in the "
                                        r"dataset's column 'record' \(1 exams without one\)$"):
        challenge_export(table, "chagas", 0.5, folder, pd.Series(["a", None]))
    with pytest.raises(UserError, match=r"^challenge_export: the column 'record' holds 'a/b' "
                                        r"and 'a_b' \(exam_id 101 and 102\), which both give "
                                        r"the file name 'a_b.txt'"):
        challenge_export(table, "chagas", 0.5, folder, ["a/b", "a_b"])
    assert not folder.exists()


def test_challenge_export_into_a_folder_with_files_is_refused(tmp_path):
    (tmp_path / "stale.txt").write_text("old")
    with pytest.raises(UserError, match=r"^challenge_export: '.*' is not empty \(1 entries, "
                                        r"e\.g\. 'stale\.txt'\)"):
        challenge_export(predictions([0.4]), "chagas", 0.5, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["stale.txt"]
