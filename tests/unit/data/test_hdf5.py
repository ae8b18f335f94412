"""``ecgexp.data.hdf5``: finding the tracing files, indexing their exams, reading rows, naming
files and rows that cannot be read, and the cached set-up scan.

Every test writes its own HDF5 files with h5py under ``tmp_path``; what the code returns is
compared with the arrays written. The scan is also checked on real CODE-15% exams of
``tests/data/code15_wfdb`` (read with wfdb, in mV, zero-padded to (4096, 12)).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers.records import code15_exams, damaged

import ecgexp.data.hdf5 as hdf5
from ecgexp.data.hdf5 import (
    FileScan,
    TracingReader,
    cache_dir,
    index_tracings,
    open_hdf5,
    read_rows,
    resolve_tracing_files,
    scan_file,
    scan_tracings,
)
from ecgexp.errors import UserError, is_user_error

SAMPLES, LEADS = 32, 3  # small tracings; index_tracings is told the shape to expect
N_SAMPLES, N_LEADS = 4096, 12  # the real exams


@pytest.fixture(autouse=True)
def scan_cache(tmp_path, monkeypatch):
    """The scan cache of each test in its own folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("ECGEXP_CACHE_DIR", str(folder))
    return folder


def tracings(n, seed=0, samples=SAMPLES, leads=LEADS):
    return np.random.default_rng(seed).normal(size=(n, samples, leads)).astype(np.float32)


def write(path, values, exam_ids=None, name="tracings", id_name="exam_id", **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset(name, data=values, **options)
        if exam_ids is not None:
            handle.create_dataset(id_name, data=exam_ids)
    return path


def index(files, exam_id_dataset="exam_id", drop_padding_rows=False, name="tracings",
          samples=SAMPLES, leads=LEADS, scale=1.0):
    return index_tracings(files, name, exam_id_dataset, samples, leads, drop_padding_rows,
                          scale)


def corrupt_chunk(path, chunk):
    """Zeroes bytes in the middle of compressed chunk number ``chunk`` of ``tracings``;
    returns the chunk's first row."""
    with h5py.File(path, "r") as handle:
        info = handle["tracings"].id.get_chunk_info(chunk)
    content = bytearray(path.read_bytes())
    middle = info.byte_offset + info.size // 2
    content[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(content))
    return info.chunk_offset[0]


# --------------------------------------------------------------------------------------------
# finding the files


def test_globs_sort_parts_naturally_and_lists_keep_their_order(tmp_path):
    for part in (10, 2, 0, 1):
        write(tmp_path / f"exams_part{part}.hdf5", tracings(1))
    names = [p.name for p in resolve_tracing_files(str(tmp_path / "exams_part*.hdf5"))]
    assert names == ["exams_part0.hdf5", "exams_part1.hdf5", "exams_part2.hdf5",
                     "exams_part10.hdf5"]
    listed = [str(tmp_path / "exams_part2.hdf5"), str(tmp_path / "exams_part1*.hdf5")]
    assert resolve_tracing_files(listed) == [tmp_path / "exams_part2.hdf5",
                                             tmp_path / "exams_part1.hdf5",
                                             tmp_path / "exams_part10.hdf5"]
    assert resolve_tracing_files(tmp_path / "exams_part0.hdf5") == [tmp_path / "exams_part0.hdf5"]


def test_missing_hdf5_file(tmp_path):
    """Moved from tests/unit/data/test_datamodule.py (there through ``HDF5Source.load``)."""
    write(tmp_path / "tracings.hdf5", tracings(2))
    for missing in (tmp_path / "nowhere" / "exams.hdf5", tmp_path / "exams_part*.hdf5",
                    tmp_path):  # a folder is no file
        with pytest.raises(FileNotFoundError) as info:
            resolve_tracing_files(str(missing))
        assert str(info.value) == (f"dataset.tracing_files: no HDF5 file at '{missing}' "
                                   f"(working directory {Path.cwd()}); set "
                                   f"dataset.tracing_files or paths.data_dir")
    files = [str(tmp_path / "tracings.hdf5"), str(tmp_path / "gone.hdf5")]  # one good, one not
    with pytest.raises(FileNotFoundError, match=re.escape(f"'{tmp_path / 'gone.hdf5'}'")):
        resolve_tracing_files(files)


# --------------------------------------------------------------------------------------------
# the exam index


def test_index_lists_each_exam_with_its_file_and_row(tmp_path):
    first = write(tmp_path / "a.hdf5", tracings(3), np.array([71, 5, 0]))  # 0: padding row
    second = write(tmp_path / "b.hdf5", tracings(2, seed=1), np.array([9, 0]))
    expected = pd.DataFrame({"exam_id": [71, 5, 0, 9, 0], "file_index": [0, 0, 0, 1, 1],
                             "row": [0, 1, 2, 0, 1]})
    with pytest.raises(ValueError, match=r"1 exam_ids occur more than once.*\(e\.g\. 0\)"):
        index([first, second])  # the padding rows collide unless dropped
    got = index([first, second], drop_padding_rows=True)
    pd.testing.assert_frame_equal(got, expected[expected.exam_id != 0].reset_index(drop=True),
                                  check_dtype=False)
    assert got.exam_id.dtype == np.int64
    # without an exam id dataset the key is the running row number across the files
    got = index([first, second], exam_id_dataset=None)
    pd.testing.assert_frame_equal(got, expected.assign(exam_id=np.arange(5)), check_dtype=False)


def test_duplicate_exam_ids_across_files(tmp_path):
    """Moved from tests/unit/data/test_datamodule.py (the tracing half of
    ``test_duplicate_exam_ids``)."""
    files = [write(tmp_path / "exams_part0.hdf5", tracings(3), np.array([1, 2, 3])),
             write(tmp_path / "exams_part1.hdf5", tracings(3), np.array([3, 4, 5]))]
    with pytest.raises(ValueError) as info:
        index(files)
    assert str(info.value) == (f"dataset.tracing_files: 1 exam_ids occur more than once across "
                               f"{[str(f) for f in files]} (e.g. 3)")


def test_missing_hdf5_dataset_names(tmp_path):
    """Moved from tests/unit/data/test_datamodule.py (there through ``HDF5Source.load``)."""
    path = write(tmp_path / "tracings.hdf5", tracings(4), np.arange(4))
    with pytest.raises(KeyError) as info:
        index([path], name="signal")
    assert info.value.args[0] == (f"dataset.tracings_dataset: HDF5 file '{path}' has no dataset "
                                  f"'signal' (it has: exam_id, tracings)")
    with pytest.raises(KeyError) as info:
        index([path], exam_id_dataset="id_exam")
    assert info.value.args[0] == (f"dataset.exam_id_dataset: HDF5 file '{path}' has no dataset "
                                  f"'id_exam' (it has: exam_id, tracings)")


def test_wrong_tracing_shapes(tmp_path):
    """Moved from tests/unit/data/test_datamodule.py (there through ``HDF5Source.load``)."""
    path = write(tmp_path / "t.hdf5", tracings(5, leads=8), np.arange(5))
    with pytest.raises(ValueError) as info:
        index([path])
    assert str(info.value) == (f"dataset.n_samples / dataset.leads: tracings 'tracings' in "
                               f"'{path}' have shape (5, {SAMPLES}, 8), expected "
                               f"(N, {SAMPLES}, {LEADS})")
    write(path, np.ascontiguousarray(tracings(5).transpose(0, 2, 1)), np.arange(5))
    with pytest.raises(ValueError, match=rf"\(5, {LEADS}, {SAMPLES}\).*it looks transposed"):
        index([path])
    write(path, tracings(5, samples=2 * SAMPLES), np.arange(5))
    with pytest.raises(ValueError, match=rf"\(N, {SAMPLES}, {LEADS}\)") as info:
        index([path])
    assert "transposed" not in str(info.value)
    write(path, tracings(5)[0], np.arange(5))  # one exam without the exam axis
    with pytest.raises(ValueError, match=rf"have shape \({SAMPLES}, {LEADS}\)"):
        index([path])


def test_exam_ids_must_be_integers_one_per_row(tmp_path):
    path = write(tmp_path / "t.hdf5", tracings(3), np.array([b"a", b"b", b"c"]))
    with pytest.raises(UserError) as info:
        index([path])
    assert str(info.value) == (f"dataset.exam_id_dataset: 'exam_id' in '{path}' holds |S1 "
                               f"values, not integer exam ids")
    write(path, tracings(3), np.array([1, 2]))
    with pytest.raises(ValueError) as info:
        index([path])
    assert str(info.value) == (f"dataset.exam_id_dataset: 'exam_id' in '{path}' has 2 ids for "
                               f"3 tracings")
    write(path, tracings(3), np.array([4.0, 5.0, 6.0]))  # whole numbers stored as floats
    assert index([path]).exam_id.tolist() == [4, 5, 6]


def test_stored_values_must_be_numbers_and_counts_need_a_scale(tmp_path):
    counts = np.arange(2 * SAMPLES * LEADS, dtype=np.int16).reshape(2, SAMPLES, LEADS)
    path = write(tmp_path / "t.hdf5", counts, np.array([1, 2]))
    with pytest.raises(UserError) as info:
        index([path])
    assert str(info.value) == (f"dataset.scale: tracings 'tracings' in '{path}' are stored as "
                               f"int16, which looks like ADC counts rather than mV; set "
                               f"dataset.scale to 1/gain (e.g. dataset.scale=0.001 for 1000 "
                               f"counts per mV) or convert the file to float mV")
    assert index([path], scale=0.001).exam_id.tolist() == [1, 2]
    write(path, np.full((2, SAMPLES, LEADS), b"x"), np.array([1, 2]))
    with pytest.raises(UserError) as info:
        index([path])
    assert str(info.value) == (f"dataset.tracings_dataset: 'tracings' in '{path}' holds |S1 "
                               f"values, not numbers; point dataset.tracings_dataset at the "
                               f"tracing array")


# --------------------------------------------------------------------------------------------
# reading


def test_reader_returns_the_stored_rows(tmp_path):
    first, second = tracings(6, seed=2), tracings(4, seed=3).astype(np.float16)
    files = [write(tmp_path / "a.hdf5", first), write(tmp_path / "b.hdf5", second, name="ecg")]
    reader = TracingReader(files, ["tracings", "ecg"])
    for row in range(6):
        np.testing.assert_array_equal(reader.read(0, row), first[row])
    one = reader.read(1, 3)
    assert one.dtype == np.float16 and one.shape == (SAMPLES, LEADS)
    np.testing.assert_array_equal(one, second[3])
    np.testing.assert_array_equal(reader.read_rows(0, 1, 5), first[1:5])
    np.testing.assert_array_equal(reader.read_rows(1, 0, 4), second)
    assert sorted(reader._handles) == [0, 1]  # one handle per file, kept open

    clone = pickle.loads(pickle.dumps(reader))  # a data-loader worker's copy
    assert clone._handles == {} and clone.files == files
    np.testing.assert_array_equal(clone.read(0, 5), first[5])
    handle = reader._handles[0]
    reader._pid = -1  # as after a fork: the handles of the parent are not reused
    np.testing.assert_array_equal(reader.read(0, 2), first[2])
    assert reader._handles[0] is not handle
    reader.close()
    assert reader._handles == {}
    np.testing.assert_array_equal(reader.read(1, 0), second[0])  # reopens on the next read
    reader.close()
    clone.close()


@pytest.mark.parametrize("damage, problem", [
    ("empty", "is empty (0 bytes), not an HDF5 file"),
    ("text", "is not an HDF5 file (no HDF5 signature in its 12 bytes)"),
    ("truncated", "is truncated: it has {kept} of the {size} bytes its header announces "
                  "(an interrupted download or copy)"),
])
def test_a_file_that_cannot_be_opened_is_named(tmp_path, damage, problem):
    path = write(tmp_path / "t.hdf5", tracings(20))
    size = path.stat().st_size
    kept = size // 3
    content = {"empty": b"", "text": b"exam_id,age\n", "truncated": path.read_bytes()[:kept]}
    path.write_bytes(content[damage])
    with pytest.raises(UserError) as info:
        open_hdf5(path, key="dataset.sources.code15.tracing_files")
    assert is_user_error(info.value)
    assert str(info.value) == (f"dataset.sources.code15.tracing_files: '{path}' "
                               f"{problem.format(kept=kept, size=size)}; replace the file or "
                               f"point dataset.sources.code15.tracing_files at a readable one")


def test_a_corrupt_chunk_is_named_by_file_and_rows(tmp_path):
    values = tracings(12, seed=4, samples=256, leads=12)
    path = write(tmp_path / "t.hdf5", values, chunks=(2, 256, 12), compression="gzip")
    bad = corrupt_chunk(path, 2)  # rows 4 and 5
    assert bad == 4
    with h5py.File(path, "r") as handle:
        stored = handle["tracings"]
        for start, stop, rows in ((4, 6, "rows 4-5"), (5, 6, "row 5"), (0, 12, "rows 0-11")):
            with pytest.raises(UserError) as info:
                read_rows(stored, start, stop)
            message = str(info.value)
            assert message.startswith(f"dataset.tracing_files: {rows} of '{path}' cannot be "
                                      f"read (a corrupt compressed chunk: ")
            assert message.endswith("); replace the file, or set dataset.nan_policy=skip so "
                                    "that the set-up scan leaves such exams out")
            assert "\n" not in message
        np.testing.assert_array_equal(read_rows(stored, 0, 4), values[:4])
        np.testing.assert_array_equal(read_rows(stored, 6, 12), values[6:])


# --------------------------------------------------------------------------------------------
# the set-up scan


def test_file_scan_round_trips_through_json(tmp_path):
    scan = FileScan(tmp_path / "t.hdf5", 40, nonfinite=[3, 17], unreadable={20: "bad chunk"},
                    zero=[8], amplitude=2.25, outlier=[30])
    data = json.loads(json.dumps(scan.to_json()))
    assert data == {"n_rows": 40, "nonfinite": [3, 17], "unreadable": {"20": "bad chunk"},
                    "zero": [8], "amplitude": 2.25, "outlier": [30]}
    again = FileScan.from_json(scan.path, data)
    assert again == FileScan(scan.path, 40, [3, 17], {20: "bad chunk"}, [8], 2.25, [30],
                             cached=True)
    empty = FileScan.from_json(scan.path, FileScan(scan.path, 0).to_json())
    assert empty.amplitude is None and empty.unreadable == {}


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGEXP_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("ECGEXP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "ecgexp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ecgexp"


@pytest.fixture(scope="module")
def real():
    """40 real exams: ids and mV tracings float32 (40, 4096, 12), centre-padded with zeros."""
    headers, _, millivolts = code15_exams(limit=40)
    assert len(headers) == 40
    return np.array([int(h["Exam ID"]) for h in headers], np.int64), millivolts


def test_scan_reads_only_the_exams_in_the_table_in_blocks(tmp_path, real):
    """Moved from tests/unit/data/test_source.py."""
    ids, millivolts = real
    tracings = damaged(millivolts)
    path = write(tmp_path / "data" / "exams.hdf5", tracings, ids)
    rows = np.array([0, 1, 2, 3, 8, 9, 10, 30, 31, 32, 39])  # not 17, 25, 33
    reads = []
    original = h5py.Dataset.__getitem__

    def counting(self, selection):
        if self.name == "/tracings":
            reads.append(selection)
        return original(self, selection)

    block_bytes = 4 * N_SAMPLES * N_LEADS * 4  # at most 4 rows per read
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(h5py.Dataset, "__getitem__", counting)
        scan = scan_file(path, "tracings", rows, block_bytes=block_bytes)
    # each read starts at the next wanted row and spans at most 4 file rows
    assert reads == [slice(0, 4), slice(8, 11), slice(30, 33), slice(39, 40)]
    kept = tracings[rows]
    finite = np.isfinite(kept).all(axis=(1, 2))
    assert scan.nonfinite == rows[~finite].tolist() == [3]
    assert scan.zero == rows[finite & ~kept.any(axis=(1, 2))].tolist() == [8]
    usable = kept[finite & kept.any(axis=(1, 2))].astype(np.float64)
    per_exam = np.median(usable.max(axis=1) - usable.min(axis=1), axis=1)
    assert scan.amplitude == pytest.approx(float(np.median(per_exam)))


def test_scan_finds_unreadable_rows_chunk_by_chunk(tmp_path):
    values = tracings(12, seed=5, samples=256, leads=12)
    values[9, 7, 1] = np.nan
    path = write(tmp_path / "t.hdf5", values, chunks=(2, 256, 12), compression="gzip")
    corrupt_chunk(path, 3)  # rows 6 and 7
    scan = scan_file(path, "tracings", np.arange(12))
    assert sorted(scan.unreadable) == [6, 7]
    assert all(reason.startswith("a corrupt compressed chunk: ")
               for reason in scan.unreadable.values())
    assert scan.nonfinite == [9] and scan.zero == [] and scan.n_rows == 12
    usable = values[[0, 1, 2, 3, 4, 5, 8, 10, 11]].astype(np.float64)
    per_exam = np.median(usable.max(axis=1) - usable.min(axis=1), axis=1)
    assert scan.amplitude == pytest.approx(float(np.median(per_exam)))


def test_scan_is_cached_by_file_rows_size_and_mtime(tmp_path, scan_cache, monkeypatch):
    values = tracings(10, seed=6)
    values[[2, 7]] = 0.0
    path = write(tmp_path / "t.hdf5", values)
    scanned = []
    original = hdf5._blocks
    monkeypatch.setattr(hdf5, "_blocks", lambda *a: scanned.append(1) or original(*a))

    first = scan_file(path, "tracings", np.array([7, 2, 0, 1, 2]))  # unsorted, repeated
    assert (first.cached, first.n_rows, first.zero, len(scanned)) == (False, 4, [2, 7], 1)
    [stored] = list((scan_cache / "tracing_scans").glob("*.json"))
    content = json.loads(stored.read_text())
    assert content["fingerprint"]["path"] == str(path.resolve())
    assert content["fingerprint"]["size"] == path.stat().st_size
    assert content["scan"] == first.to_json()

    again = scan_file(path, "tracings", np.array([0, 1, 2, 7]))  # the same rows
    assert again.cached and len(scanned) == 1
    assert again.to_json() == first.to_json() and again.path == path
    scan_file(path, "tracings", np.array([0, 1]))  # other rows
    assert len(scanned) == 2
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))  # the file changed
    assert not scan_file(path, "tracings", np.array([0, 1, 2, 7])).cached
    assert len(scanned) == 3 and len(list((scan_cache / "tracing_scans").glob("*.json"))) == 3

    for entry in (scan_cache / "tracing_scans").glob("*.json"):
        entry.write_text("{not json")  # a damaged cache entry is scanned again
    assert not scan_file(path, "tracings", np.array([0, 1, 2, 7])).cached
    assert len(scanned) == 4


def test_an_unwritable_cache_costs_only_a_new_scan(tmp_path, scan_cache, monkeypatch, caplog):
    path = write(tmp_path / "t.hdf5", tracings(4))
    replace = os.replace

    def refused(source, target):
        if Path(target).is_relative_to(scan_cache):
            raise PermissionError(13, "Permission denied")
        return replace(source, target)

    monkeypatch.setattr(os, "replace", refused)
    with caplog.at_level(logging.WARNING, logger="ecgexp.data.hdf5"):
        scan = scan_file(path, "tracings", np.arange(4))
    assert scan.n_rows == 4 and scan.nonfinite == [] and not scan.cached
    assert (f"could not cache the scan of {path} in {scan_cache / 'tracing_scans'}"
            in caplog.text)
    assert "set ECGEXP_CACHE_DIR to a writable folder" in caplog.text
    assert list((scan_cache / "tracing_scans").iterdir()) == []  # no temporary left
    assert not scan_file(path, "tracings", np.arange(4)).cached


def test_scan_tracings_scans_each_file_at_the_rows_of_the_table(tmp_path):
    first, second = tracings(5, seed=7), tracings(6, seed=8)
    first[4, 0, 0] = np.inf
    second[[1, 3]] = 0.0
    files = [write(tmp_path / "a.hdf5", first), write(tmp_path / "b.hdf5", second, name="ecg")]
    reader = TracingReader(files, ["tracings", "ecg"])
    table = pd.DataFrame({"file_index": [1, 0, 1, 0, 1], "row": [3, 4, 0, 1, 5]})
    scans = scan_tracings(reader, table)
    assert sorted(scans) == [0, 1]
    assert (scans[0].path, scans[0].n_rows, scans[0].nonfinite, scans[0].zero) == (
        files[0], 2, [4], [])
    assert (scans[1].path, scans[1].n_rows, scans[1].nonfinite, scans[1].zero) == (
        files[1], 3, [], [3])
    usable = second[[0, 5]].astype(np.float64)  # file 1, rows 0 and 5 (row 3 is all zero)
    per_exam = np.median(usable.max(axis=1) - usable.min(axis=1), axis=1)
    assert scans[1].amplitude == pytest.approx(float(np.median(per_exam)))
    assert all(scan.cached for scan in scan_tracings(reader, table).values())
