"""``ecgexp.files``: file names from data kept inside their folder, files and folders that
appear whole under their final name or not at all, and nothing a user wrote overwritten."""

import re

import pytest

from ecgexp.errors import UserError
from ecgexp.files import (
    atomic_path,
    check_new_folder,
    confined_path,
    distinct_file_names,
    make_folder,
    safe_file_name,
    staged_folder,
    writable_folder,
    write_text_atomic,
)


@pytest.mark.parametrize("name, expected", [
    ("E07500", "E07500"), (1111611, "1111611"), ("rec a.hea", "rec_a.hea"),
    ("../../etc/passwd", "_.._etc_passwd"), ("..hidden", "hidden"), ("a\\b", "a_b"),
    ("grade-2_v1.0", "grade-2_v1.0")])
def test_safe_file_name_keeps_letters_digits_dots_underscores_and_dashes(name, expected):
    assert safe_file_name(name, "record") == expected


@pytest.mark.parametrize("name", ["", "...", "//", "é/ü", "x" * 201])
def test_names_that_give_no_usable_file_are_refused(name):
    with pytest.raises(UserError, match=r"^labels: '.*' gives no usable file name .*over 200"):
        safe_file_name(name, "labels")
    assert safe_file_name("x" * 200, "labels") == "x" * 200


def test_confined_path_lies_in_its_folder(tmp_path):
    assert confined_path(tmp_path, "../up", "record", ".csv") == tmp_path / "_up.csv"
    assert confined_path(tmp_path, 17, "exam_id") == tmp_path / "17"


def test_two_names_giving_one_file_are_refused_with_both_names():
    assert distinct_file_names(["a", "b c"], "labels", "the label list", ".png") == \
        ["a.png", "b_c.png"]
    with pytest.raises(UserError, match=r"^labels: the label list holds 'a/b' and 'a_b', which "
                                        r"both give the file name 'a_b'; each needs a file"):
        distinct_file_names(["a/b", "a_b"], "labels", "the label list")
    with pytest.raises(UserError, match=r"^record: the record list holds 'x' twice \(exam_id 3 "
                                        r"and 9\); each needs a file of its own, so make them "
                                        r"unique$"):
        distinct_file_names(["x", "y", "x"], "record", "the record list", ids=[3, 5, 9])


def test_atomic_path_renames_a_whole_file_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".metrics.json.")
        temporary.write_text("{}")
        assert not target.exists()  # not under its final name before the block ends
    assert target.read_text() == "{}"

    failed = tmp_path / "failed.json"
    with pytest.raises(RuntimeError, match="disk"), atomic_path(failed) as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_an_existing_file_is_kept_unless_the_caller_owns_it(tmp_path):
    target = tmp_path / "report.csv"
    target.write_text("the user's")
    with pytest.raises(UserError, match=rf"^output: '{re.escape(str(target))}' exists; nothing "
                                        r"is overwritten \(choose another output"):
        write_text_atomic(target, "new")
    assert target.read_text() == "the user's"
    assert write_text_atomic(target, "the run's own", replace=True) == target
    assert target.read_text() == "the run's own"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_a_file_appearing_while_written_is_not_overwritten(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(UserError, match=r"'.*out.txt' appeared while it was being written"):
        with atomic_path(target, "output") as temporary:
            temporary.write_text("ours")
            target.write_text("theirs")
    assert target.read_text() == "theirs"


def test_writable_folder_names_a_file_in_the_way_and_creates_nothing(tmp_path):
    assert writable_folder(tmp_path / "a" / "b", "report.folder") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=rf"^report.folder: '{re.escape(str(tmp_path))}/file' is "
                                        r"a file, not a folder, so '.*file/x' cannot be written "
                                        r"there; choose another report.folder$"):
        writable_folder(tmp_path / "file" / "x", "report.folder")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"the folder '.*broken' of '.*broken/x' is a broken link"):
        writable_folder(tmp_path / "broken" / "x", "output")
    assert make_folder(tmp_path / "c" / "d", "output").is_dir()


def test_a_report_folder_must_be_new_or_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_new_folder(tmp_path / "empty", "out", "report") == tmp_path / "empty"
    full = tmp_path / "full"
    full.mkdir()
    (full / "b.txt").write_text("")
    (full / "a.txt").write_text("")
    with pytest.raises(UserError, match=r"^out: '.*full' is not empty \(2 entries, e.g. "
                                        r"'a.txt'\); a report goes into a new or empty folder"):
        check_new_folder(full, "out", "report")


def test_a_staged_folder_appears_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "report"
    with staged_folder(folder, "out", "report") as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".report.")
        (staging / "metrics.csv").write_text("auroc\n0.9\n")
        assert not folder.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
    assert (folder / "metrics.csv").read_text() == "auroc\n0.9\n"

    other = tmp_path / "other"
    with pytest.raises(UserError, match=r"^out: writing the report failed \(No space left on "
                                        r"device: .*other/figure.png\); nothing was left in"):
        with staged_folder(other, "out", "report") as staging:
            raise OSError(28, "No space left on device", str(staging / "figure.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
