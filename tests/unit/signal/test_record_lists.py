"""``ecgexp.signal.record_lists``: the records a folder, a RECORDS file or one record path
names, and their exam ids."""

import numpy as np
import pytest

from ecgexp.signal.record_lists import exam_ids, list_records


@pytest.fixture
def folder(tmp_path):
    """``b/2.hea``, ``a.hea`` (+ ``a.dat``), ``c.xml``, ``d.json`` and a ``notes.txt``."""
    (tmp_path / "b").mkdir()
    for name in ("b/2.hea", "a.hea", "a.dat", "c.xml", "d.json", "notes.txt"):
        (tmp_path / name).write_text("")
    return tmp_path


def test_a_folder_lists_its_records_recursively_and_sorted(folder):
    assert list_records(folder) == (folder, ["a", "b/2", "c.xml", "d.json"])


def test_a_records_file_lists_its_lines_in_order(folder):
    records = folder / "RECORDS"
    records.write_text("b/2\n\n  a  \nc.xml\n")
    assert list_records(records) == (folder, ["b/2", "a", "c.xml"])


def test_one_record_by_its_header_its_path_or_its_file(folder):
    assert list_records(folder / "b" / "2.hea") == (folder / "b", ["2"])
    assert list_records(folder / "a") == (folder, ["a"])  # a WFDB record without .hea
    assert list_records(folder / "c.xml") == (folder, ["c.xml"])


def test_nothing_to_read_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^dataset.path: no folder or RECORDS file at "
                                                r"'.*nowhere'$"):
        list_records(tmp_path / "nowhere", "dataset.path")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^input: no records \(.hea, .xml, .json\) in "
                                                r"'.*empty'$"):
        list_records(tmp_path / "empty")


def test_exam_ids_by_position_or_by_name():
    ids, rejected = exam_ids(["x/10", "y", "z"], "index")
    assert ids.tolist() == [0, 1, 2] and ids.dtype == np.int64 and rejected == {}
    ids, rejected = exam_ids(["part0/1111611", "1111628.xml", "17"], "name")
    assert ids.tolist() == [1111611, 1111628, 17] and ids.dtype == np.int64
    ids, rejected = exam_ids(["E07500", "g/00001_hr", "h/E07500"], "name")
    assert ids.tolist() == ["E07500", "00001_hr", "E07500"] and ids.dtype == object
    assert rejected == {2: "duplicate exam_id E07500 (also E07500)"}
    with pytest.raises(ValueError, match=r"^ids: 'hash' is not one of \('index', 'name'\)$"):
        exam_ids(["a"], "hash")
