"""Training data that cannot be read, or looks wrong, is named when ``ExamDataModule.setup``
runs (issue 14): unreadable tracing and label files, bad label values, NaN/Inf, unreadable and
all-zero exams found by the cached set-up scan, and amplitudes that are not mV.

Tracings are the 153 real CODE-15% exams of ``tests/data/code15_wfdb`` (read with
wfdb, converted to mV and zero-padded to (4096, 12) float32 as CODE-15% stores them), written
to HDF5 under ``tmp_path``; every expectation is derived from those arrays, not from the code
under test. Every error is checked by its text: the config key and the file it names. How the
scan reads, caches and judges the rows of one file is tested in tests/unit/data/test_hdf5.py.
"""

from __future__ import annotations

import json
import logging
import os
import re
from functools import partial

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers.records import code15_exams, damaged

import ecgexp.data.hdf5 as hdf5
from ecgexp.data.datamodule import ExamDataModule
from ecgexp.data.source import HDF5Source
from ecgexp.data.splits import first_n_split
from ecgexp.data.synthetic import write_code15
from ecgexp.errors import is_user_error

N_SAMPLES, N_LEADS = 4096, 12
LEADS = ["DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """The scan cache of each test in its own folder (nothing written to ~/.cache)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("ECGEXP_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def real():
    """The real exams: exam ids, labels, mV tracings float32 (N, 4096, 12) centre-padded with
    zeros, and the same as int16 ADC counts (gain 1000 adu/mV)."""
    headers, counts, millivolts = code15_exams()
    assert len(headers) == 153
    labels = pd.DataFrame([{"exam_id": int(h["Exam ID"]), "patient_id": int(h["Patient ID"]),
                            "age": float(h["Age"]), "chagas": h["Chagas label"] == "True"}
                           for h in headers])
    return labels.exam_id.to_numpy(np.int64), labels, millivolts, counts


def write_exams(folder, tracings, exam_ids, labels=None, name="exams.hdf5", **dataset_options):
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / name, "w") as handle:
        handle.create_dataset("tracings", data=tracings, **dataset_options)
        handle.create_dataset("exam_id", data=np.asarray(exam_ids, np.int64))
    if labels is not None:
        labels.to_csv(folder / "exams.csv", index=False)
    return folder / name


def module(folder, targets=("chagas",), binary=("chagas",), name="exams.hdf5", **options):
    kwargs = dict(name="real", tracing_files=str(folder / name),
                  labels_csv=str(folder / "exams.csv"), drop_padding_rows=False,
                  split=partial(first_n_split, n_val=30))
    kwargs.update(options)
    return ExamDataModule(HDF5Source(**kwargs), list(targets), leads=LEADS,
                          binary_columns=list(binary))


def setup_error(datamodule) -> str:
    """The message of the error ``setup`` raises, checked to be one line a user sees as is."""
    with pytest.raises(ValueError) as info:
        datamodule.setup()
    message = str(info.value)
    assert is_user_error(info.value), message  # the console prints it as one line
    assert "\n" not in message and "Traceback" not in message
    assert "Unable to synchronously" not in message and "C error" not in message
    return message


def all_items(datamodule):
    return {int(exam_id): (tracing, target)
            for dataset in datamodule.datasets.values()
            for batch in [dataset.__getitems__(range(len(dataset)))]
            for exam_id, tracing, target in zip(batch["exam_id"], batch["tracing"],
                                                batch["target"])}


# --------------------------------------------------------------------------------------------
# 1. files that cannot be read


@pytest.mark.parametrize("damage, expected", [
    ("empty", r"is empty \(0 bytes\), not an HDF5 file"),
    ("truncated", r"is truncated: it has (\d+) of the (\d+) bytes"),
    ("text", r"is not an HDF5 file \(no HDF5 signature"),
], ids=["empty", "truncated", "text"])
def test_unreadable_tracing_file_is_named(tmp_path, real, damage, expected):
    ids, labels, millivolts, _ = real
    path = write_exams(tmp_path / "data", millivolts[:40], ids[:40], labels.iloc[:40])
    content = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(content[:len(content) // 3])
    else:
        path.write_text(labels.to_csv(index=False))
    message = setup_error(module(tmp_path / "data"))
    assert message.startswith(f"dataset.tracing_files: '{path}' ")
    match = re.search(expected, message)
    assert match, message
    if damage == "truncated":
        assert match.groups() == (str(len(content) // 3), str(len(content)))


def test_corrupt_compressed_chunk(tmp_path, real, caplog):
    ids, labels, millivolts, _ = real
    folder = tmp_path / "data"
    path = write_exams(folder, millivolts[:40], ids[:40], labels.iloc[:40],
                       chunks=(4, N_SAMPLES, N_LEADS), compression="gzip")
    with h5py.File(path, "r") as handle:
        info = handle["tracings"].id.get_chunk_info(5)
    bad_rows = list(range(info.chunk_offset[0], info.chunk_offset[0] + 4))  # rows 20-23
    content = bytearray(path.read_bytes())
    middle = info.byte_offset + info.size // 2
    content[middle:middle + 256] = bytes(256)
    path.write_bytes(bytes(content))

    message = setup_error(module(folder))
    assert message.startswith("dataset.tracing_files: 4 of 40 exams of 'real' cannot be used "
                              "(unreadable: 4 (a corrupt compressed chunk: ")
    named = ", ".join(f"exam_id {ids[row]} (row {row}, unreadable)" for row in bad_rows)
    assert f"{named} of '{path}'; " in message and "dataset.nan_policy=skip" in message

    datamodule = module(folder, nan_policy="skip")
    with caplog.at_level(logging.WARNING):
        datamodule.setup()
    assert sorted(datamodule.table.exam_id) == sorted(set(ids[:40]) - set(ids[bad_rows]))
    assert ("4 of 40 exams left out (dataset.nan_policy=skip): unreadable: 4 (a corrupt "
            "compressed chunk") in caplog.text
    items = all_items(datamodule)  # every other exam reads back as stored
    assert len(items) == 36
    for row in (0, 19, 24, 39):
        np.testing.assert_array_equal(items[ids[row]][0].numpy(), millivolts[row].T)


@pytest.mark.parametrize("content, expected", [
    ("", r"is empty \(no header line, no rows\)"),
    ("exam_id,chagas,age\n", r"has a header \(exam_id, chagas, age\) but no rows"),
    ('exam_id,chagas\n1,0\n2,"1\n', r"is not a readable CSV table"),
], ids=["empty", "header_only", "unterminated_quote"])
def test_unreadable_label_file_is_named(tmp_path, real, content, expected):
    ids, _, millivolts, _ = real
    folder = tmp_path / "data"
    write_exams(folder, millivolts[:40], ids[:40])
    (folder / "exams.csv").write_text(content)
    message = setup_error(module(folder))
    assert message.startswith(f"dataset.labels_csv: '{folder / 'exams.csv'}' ")
    assert re.search(expected, message), message


def test_label_values_are_named_by_column_row_and_file(tmp_path, real):
    ids, labels, millivolts, _ = real
    folder = tmp_path / "data"
    write_exams(folder, millivolts[:40], ids[:40])
    path = folder / "exams.csv"

    answers = labels.iloc[:40].assign(chagas=np.where(labels.chagas[:40], "yes", "no"))
    answers.to_csv(path, index=False)
    message = setup_error(module(folder))
    first = answers.chagas.iloc[0]
    assert message.startswith(f"task.objective (target columns): column 'chagas' of '{path}' "
                              f"is not numeric: row 1 (exam_id {ids[0]}) holds '{first}' (40 "
                              f"such")
    assert "dataset.labels_csv" in message

    outside = labels.iloc[:40].assign(chagas=labels.chagas[:40].astype(int))
    outside.loc[[7, 12], "chagas"] = [2, -1]
    outside.to_csv(path, index=False)
    message = setup_error(module(folder))
    assert message.startswith(f"task.objective (target columns): binary label 'chagas' of "
                              f"'{path}' holds 2 at row 8 (exam_id {ids[7]}) (2 values outside "
                              f"{{0, 1}}: 2, -1)")
    # the same column is fine where the task does not declare it binary (a regression target)
    datamodule = module(folder, binary=())
    datamodule.setup()
    assert set(datamodule.table.chagas) == {-1, 0, 1, 2}
    # age is a number but not 0/1: fine as a regression target beside a binary one
    labels.iloc[:40].to_csv(path, index=False)  # chagas as True/False, as the Challenge writes
    datamodule = module(folder, targets=("chagas", "age"), binary=("chagas",))
    datamodule.setup()
    targets = {exam: target.numpy() for exam, (_, target) in all_items(datamodule).items()}
    for exam, chagas, age in labels.iloc[:40][["exam_id", "chagas", "age"]].itertuples(False):
        np.testing.assert_array_equal(targets[exam], [float(chagas), age])


def test_binary_labels_in_an_extra_label_file(tmp_path, real):
    ids, labels, millivolts, _ = real
    folder = tmp_path / "data"
    write_exams(folder, millivolts[:40], ids[:40], labels.iloc[:40].drop(columns="chagas"))
    extra = folder / "chagas.csv"
    labels.iloc[:40][["exam_id"]].assign(chagas=3).to_csv(extra, index=False)
    message = setup_error(module(folder, extra_labels_csv=[str(extra)]))
    assert message.startswith(f"task.objective (target columns): binary label 'chagas' of "
                              f"'{extra}' holds 3 at row 1 (exam_id {ids[0]})")
    assert "dataset.extra_labels_csv" in message
    with pytest.raises(ValueError, match=r"task\.objective: the binary labels \['AF'\] are "
                                         r"not among the target columns \(\['chagas'\]\)"):
        module(folder, binary=("AF",))


# --------------------------------------------------------------------------------------------
# 2. the set-up scan: NaN/Inf and all-zero exams, cached


def test_bad_exams_stop_the_run_at_setup(tmp_path, real):
    ids, labels, millivolts, _ = real
    folder = tmp_path / "data"
    path = write_exams(folder, damaged(millivolts), ids[:40], labels.iloc[:40])
    message = setup_error(module(folder))
    assert message.startswith("dataset.tracing_files: 5 of 40 exams of 'real' cannot be used "
                              "(NaN/Inf samples: 3, all zero: 2): ")
    named = re.findall(r"exam_id (\d+) \(row (\d+), ([^)]*)\)", message)
    assert named == [(str(ids[3]), "3", "NaN/Inf samples"), (str(ids[8]), "8", "all zero"),
                     (str(ids[17]), "17", "NaN/Inf samples"), (str(ids[25]), "25", "all zero"),
                     (str(ids[33]), "33", "NaN/Inf samples")]
    assert f"of '{path}'" in message and message.endswith(
        "set dataset.nan_policy=skip to leave such exams out")


def test_an_exam_far_above_its_files_amplitude_stops_the_run(tmp_path, real):
    """One real exam multiplied by 10^6 (the file's others as recorded): named at set-up, with
    the ratio measured here over 100."""
    ids, labels, millivolts, _ = real
    tracings = millivolts[:40].copy()
    tracings[12] *= 1e6
    folder = tmp_path / "data"
    write_exams(folder, tracings, ids[:40], labels.iloc[:40])
    amplitudes = np.median(np.ptp(tracings, axis=1), axis=1)
    assert amplitudes[12] > 100 * np.median(amplitudes) > 0  # what the scan must see
    message = setup_error(module(folder))
    assert message.startswith("dataset.tracing_files: 1 of 40 exams of 'real' cannot be used "
                              "(amplitude over 100x the file's typical: 1): "
                              f"exam_id {ids[12]} (row 12, ")


def test_skip_leaves_bad_exams_out_with_one_line(tmp_path, real, caplog):
    ids, labels, millivolts, _ = real
    folder = tmp_path / "data"
    tracings = damaged(millivolts)
    write_exams(folder, tracings, ids[:40], labels.iloc[:40])
    datamodule = module(folder, nan_policy="skip")
    with caplog.at_level(logging.WARNING):
        datamodule.setup()
    bad = [3, 8, 17, 25, 33]
    assert sorted(datamodule.table.exam_id) == sorted(np.delete(ids[:40], bad))
    lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert lines == [f"real: 5 of 40 exams left out (dataset.nan_policy=skip): NaN/Inf "
                     f"samples: 3, all zero: 2; exam_ids {', '.join(str(ids[r]) for r in bad)}"]
    items = all_items(datamodule)
    assert len(items) == 35
    for row in np.delete(np.arange(40), bad):
        np.testing.assert_array_equal(items[ids[row]][0].numpy(), tracings[row].T)


def test_scan_is_cached_by_file_fingerprint_and_rows(tmp_path, real, cache_dir, monkeypatch):
    ids, labels, millivolts, _ = real
    folder = tmp_path / "data"
    path = write_exams(folder, damaged(millivolts), ids[:40], labels.iloc[:40])
    scanned = []
    original = hdf5._blocks
    monkeypatch.setattr(hdf5, "_blocks", lambda *a: scanned.append(1) or original(*a))

    def skipped():
        datamodule = module(folder, nan_policy="skip")
        datamodule.setup()
        return sorted(datamodule.table.exam_id)

    first = skipped()
    assert len(scanned) == 1
    [cached] = list((cache_dir / "tracing_scans").glob("*.json"))
    content = json.loads(cached.read_text())
    assert content["fingerprint"]["path"] == str(path.resolve())
    assert content["fingerprint"]["size"] == path.stat().st_size
    assert sorted(content["scan"]["zero"]) == [8, 25]
    assert skipped() == first and len(scanned) == 1  # paid once
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed
    assert skipped() == first and len(scanned) == 2
    labels.iloc[:30].to_csv(folder / "exams.csv", index=False)  # other rows scanned
    datamodule = module(folder, nan_policy="skip", split=partial(first_n_split, n_val=10))
    datamodule.setup()
    assert len(scanned) == 3 and len(datamodule.table) == 30 - 4  # rows 3, 8, 17, 25 of 30
    assert len(list((cache_dir / "tracing_scans").glob("*.json"))) == 3


def test_an_edit_that_keeps_the_mtime_is_scanned_again(tmp_path, real, cache_dir):
    """A NaN written into a scanned file in place, its mtime put back: the scan runs again
    (the file's ctime changed) and finds it, before training."""
    ids, labels, millivolts, _ = real
    folder = tmp_path / "data"
    path = write_exams(folder, millivolts[:40], ids[:40], labels.iloc[:40])
    module(folder).setup()  # clean: scanned and cached
    stat = path.stat()
    with h5py.File(path, "r+") as handle:
        handle["tracings"][5, 100, 2] = np.nan
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns and path.stat().st_size == stat.st_size
    with pytest.raises(ValueError, match=rf"exam_id {ids[5]}"):
        module(folder).setup()


# --------------------------------------------------------------------------------------------
# 3. amplitudes that are not mV


def test_real_exams_in_mv_pass_and_read_back(tmp_path, real):
    ids, labels, millivolts, _ = real
    folder = tmp_path / "data"
    write_exams(folder, millivolts, ids, labels)
    datamodule = module(folder)
    datamodule.setup()
    items = all_items(datamodule)
    assert sorted(items) == sorted(ids.tolist())
    row = {exam: i for i, exam in enumerate(ids)}
    for exam in ids[::17]:
        np.testing.assert_array_equal(items[exam][0].numpy(), millivolts[row[exam]].T)


def test_synthetic_exams_pass(tmp_path):
    folder = write_code15(tmp_path / "synthetic", n_exams=60, n_parts=2, seed=0)
    source = HDF5Source(name="synthetic", tracing_files=str(folder / "exams_part*.hdf5"),
                        labels_csv=str(folder / "exams.csv"),
                        split=partial(first_n_split, n_val=10))
    classes = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
    datamodule = ExamDataModule(source, classes, leads=LEADS, binary_columns=classes)
    datamodule.setup()
    assert len(datamodule.table) == 60


def test_adc_counts_are_refused_unless_scaled(tmp_path, real):
    ids, labels, millivolts, counts = real
    folder = tmp_path / "data"
    path = write_exams(folder, counts, ids, labels)
    message = setup_error(module(folder))
    assert message == (f"dataset.scale: tracings 'tracings' in '{path}' are stored as int16, "
                       f"which looks like ADC counts rather than mV; set dataset.scale to 1/gain "
                       f"(e.g. dataset.scale=0.001 for 1000 counts per mV) or convert the file "
                       f"to float mV")
    datamodule = module(folder, scale=0.001)  # the gain stated: accepted, read back in mV
    datamodule.setup()
    items = all_items(datamodule)
    row = {exam: i for i, exam in enumerate(ids)}
    for exam in ids[::17]:
        np.testing.assert_allclose(items[exam][0].numpy(), millivolts[row[exam]].T, rtol=1e-6)
    message = setup_error(module(folder, scale=0.1))  # a wrong gain is still refused
    assert message.startswith(f"dataset.scale: tracings in '{path}' look like other units, "
                              f"not mV")
    assert "set dataset.scale=0.001 or convert the file to mV" in message


@pytest.mark.parametrize("factor, units, suggested", [
    (1000.0, "µV (or ADC counts at 1000 per mV)", "0.001"),
    (0.001, "V", "1000"),
], ids=["microvolts", "volts"])
def test_amplitudes_far_from_mv_are_refused(tmp_path, real, factor, units, suggested):
    ids, labels, millivolts, _ = real
    folder = tmp_path / "data"
    path = write_exams(folder, millivolts * np.float32(factor), ids, labels)
    message = setup_error(module(folder))
    typical = np.median([np.median(x.max(axis=0) - x.min(axis=0)) for x in
                         millivolts.astype(np.float64) * factor])
    assert message.startswith(f"dataset.scale: tracings in '{path}' look like {units}, not mV: "
                              f"their typical peak-to-peak amplitude is {typical:.3g} with "
                              f"dataset.scale=1, expected 0.1-30 mV; set "
                              f"dataset.scale={suggested} or convert the file to mV")
    assert message.endswith("(dataset.amplitude_range=null turns this check off)")
    module(folder, scale=float(suggested)).setup()  # the suggested scale is accepted
    module(folder, amplitude_range=None).setup()  # and so is switching the check off
