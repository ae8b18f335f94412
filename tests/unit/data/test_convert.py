"""``ecgexp-preprocess`` and raw-record datasets: the real WFDB fixtures, bad records, resume,
parallel conversion, training directly on a Challenge-style WFDB folder, and the conversion's
faults: kills at every step of writing the outputs, foreign files in the partial folder, bad
settings and outputs, and worker processes outliving a killed converter."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import wfdb
from helpers.commands import run_in_process
from helpers.configs import QUARTER_LENGTHS
from helpers.records import FIXTURES
from omegaconf import open_dict
from scipy.signal import resample_poly

from ecgexp.data.convert import convert
from ecgexp.data.synthetic import synthesize_exams
from ecgexp.errors import UserError
from ecgexp.signal.leads import CANONICAL_LEADS
from ecgexp.signal.pipeline import SignalPipeline
from ecgexp.train import train

WFDB_FIXTURES = FIXTURES / "wfdb"
PTB_CHANNELS = 12  # s0010_re.dat holds the 12 standard leads, interleaved int16, gain 2000


@pytest.fixture
def fixture_records(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    for path in WFDB_FIXTURES.iterdir():
        shutil.copy(path, folder / path.name)
    return folder


def read_h5(path):
    with h5py.File(path, "r") as handle:
        return handle["tracings"][:], handle["exam_id"][:]


def test_ptb_record_converts_with_leads_by_name(fixture_records, tmp_path):
    output = tmp_path / "out.h5"
    result = convert(fixture_records, output, SignalPipeline(baseline_removal=False), workers=1)
    assert (result["converted"], result["rejected"]) == (1, 1)
    tracings, exam_ids = read_h5(output)
    assert tracings.shape == (1, 4096, 12) and tracings.dtype == np.float32

    raw = np.fromfile(WFDB_FIXTURES / "s0010_re.dat", dtype="<i2").reshape(-1, PTB_CHANNELS)
    ii = raw[:, 1] / 2000.0  # mV, 1000 Hz, 38 400 samples
    expected = resample_poly(ii, 2, 5)  # 400 Hz: 15 360 samples, centre-cropped to 4096
    start = (len(expected) - 4096) // 2
    np.testing.assert_allclose(tracings[0, :, 1], expected[start:start + 4096], atol=1e-5)
    di, dii = tracings[0, :, 0], tracings[0, :, 1]
    np.testing.assert_allclose(tracings[0, :, 2], dii - di, atol=1e-6)  # DIII derived
    np.testing.assert_allclose(tracings[0, :, 3], -(di + dii) / 2, atol=1e-6)  # AVR

    metadata = pd.read_csv(tmp_path / "out.csv", dtype={"record": str})
    assert len(metadata) == len(exam_ids) == 1 and metadata.exam_id[0] == exam_ids[0]
    row = metadata.iloc[0]
    assert (row.record, row.age, row.sex) == ("s0010_re", 81, "female")
    assert (row.sampling_rate, row.original_samples) == (1000, 38400)
    assert row.leads.split(";")[:3] == ["DI", "DII", "DIII"]
    report = pd.read_csv(tmp_path / "out_rejected.csv", dtype={"record": str})
    assert list(report.record) == ["100"] and "missing leads" in report.reason[0]


def test_two_lead_record_is_zero_filled_on_request(fixture_records, tmp_path):
    pipeline = SignalPipeline(missing_leads="zero", baseline_removal=False)
    convert(fixture_records, tmp_path / "out.h5", pipeline, workers=1)
    tracings, _ = read_h5(tmp_path / "out.h5")
    metadata = pd.read_csv(tmp_path / "out.csv", dtype={"record": str})
    mitbih = tracings[list(metadata.record).index("100")]
    v5 = CANONICAL_LEADS.index("V5")
    assert np.abs(mitbih[:, v5]).max() > 0.1  # the recorded V5, resampled from 360 Hz
    assert np.all(np.delete(mitbih, v5, axis=1) == 0)  # MLII is not a standard lead


def write_synthetic_records(folder: Path, n: int, rate: int = 500, comments=True,
                            subfolders=False) -> pd.DataFrame:
    """Synthetic exams as 16-bit WFDB records at ``rate`` with the Challenge header comments
    and their original (unpadded) lengths of 7 or 10 s."""
    tracings, table = synthesize_exams(n, seed=3)
    for i, (tracing, exam) in enumerate(zip(tracings, table.itertuples())):
        nonzero = np.flatnonzero(np.abs(tracing).sum(axis=1) > 0)
        signal = tracing[nonzero[0]:nonzero[-1] + 1]
        if rate != 400:
            signal = resample_poly(signal, rate // 100, 4, axis=0)
        directory = folder / (f"part{i % 2}" if subfolders else "")
        directory.mkdir(parents=True, exist_ok=True)
        notes = ([f"Age: {exam.age}", f"Sex: {'Male' if exam.is_male else 'Female'}",
                  f"Chagas label: {bool(exam.chagas)}", "Source: synthetic"]
                 if comments else [])
        wfdb.wrsamp(f"{exam.exam_id}", fs=rate, units=["mV"] * 12,
                    sig_name=list(CANONICAL_LEADS), p_signal=signal.astype(np.float64),
                    fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    comments=notes, write_dir=str(directory))
    return table


def test_bad_records_are_reported_and_the_rest_converted(tmp_path):
    folder = tmp_path / "records"
    write_synthetic_records(folder, 6, comments=False)
    names = sorted(p.stem for p in folder.glob("*.hea"))
    dat = folder / f"{names[0]}.dat"
    dat.write_bytes(dat.read_bytes()[:100])  # truncated
    (folder / f"{names[1]}.dat").unlink()  # unreadable
    (folder / "empty.json").write_text("")
    record = wfdb.rdrecord(str(folder / names[2]))
    record.p_signal[10, 3] = np.nan
    wfdb.wrsamp(names[2], fs=500, units=record.units, sig_name=record.sig_name,
                p_signal=record.p_signal, fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                baseline=[0] * 12, write_dir=str(folder))
    result = convert(folder, tmp_path / "out.h5", SignalPipeline(), workers=1)
    assert (result["converted"], result["rejected"]) == (3, 4)
    report = pd.read_csv(tmp_path / "out_rejected.csv", dtype={"record": str}).set_index("record")
    assert "NaN" in report.reason[names[2]]
    assert set(report.index) == {names[0], names[1], names[2], "empty.json"}
    tracings, exam_ids = read_h5(tmp_path / "out.h5")
    metadata = pd.read_csv(tmp_path / "out.csv", dtype={"record": str})
    assert list(metadata.exam_id) == list(exam_ids) and len(tracings) == 3
    assert list(metadata.record) == names[3:]


def test_duplicate_exam_ids_are_rejected(tmp_path):
    folder = tmp_path / "records"
    write_synthetic_records(folder, 3, comments=False, subfolders=True)
    first = next(folder.rglob("*.hea"))
    other = folder / ("part1" if first.parent.name == "part0" else "part0")
    for suffix in (".hea", ".dat"):
        shutil.copy(first.with_suffix(suffix), other / first.with_suffix(suffix).name)
    result = convert(folder, tmp_path / "out.h5", SignalPipeline(), workers=1, ids="name")
    assert (result["converted"], result["rejected"]) == (3, 1)
    report = pd.read_csv(tmp_path / "out_rejected.csv", dtype={"record": str})
    assert "duplicate exam_id" in report.reason[0]
    _, exam_ids = read_h5(tmp_path / "out.h5")
    assert len(set(exam_ids)) == 3


def test_parallel_conversion_equals_serial(tmp_path, capsys):
    folder = tmp_path / "records"
    write_synthetic_records(folder, 20)
    convert(folder, tmp_path / "serial.h5", SignalPipeline(), workers=1, batch_size=4)
    convert(folder, tmp_path / "parallel.h5", SignalPipeline(), workers=2, batch_size=4)
    lines = capsys.readouterr().out.splitlines()  # off a terminal: a line per stage
    assert [line.split("  ")[0] for line in lines] == [
        "converting 20/20 records", "assembling 5/5 batch files"] * 2
    serial, parallel = read_h5(tmp_path / "serial.h5"), read_h5(tmp_path / "parallel.h5")
    np.testing.assert_array_equal(serial[1], parallel[1])
    np.testing.assert_array_equal(serial[0], parallel[0])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "serial.csv"),
                                  pd.read_csv(tmp_path / "parallel.csv"))


def test_nothing_is_overwritten(fixture_records, tmp_path):
    output = tmp_path / "out.h5"
    convert(fixture_records, output, SignalPipeline(), workers=1)
    before = output.read_bytes()
    message = f"output: '{output}' exists; choose another output (nothing is overwritten)"
    with pytest.raises(UserError, match=re.escape(message)):
        convert(fixture_records, output, SignalPipeline(), workers=1)
    assert output.read_bytes() == before
    assert not (tmp_path / "out.h5.partial").exists()


def run_preprocess(*overrides, cwd):
    script = Path(sys.executable).parent / "ecgexp-preprocess"
    return subprocess.Popen([str(script), *overrides], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_killed_conversion_resumes_to_the_same_file(tmp_path):
    folder = tmp_path / "records"
    write_synthetic_records(folder, 64)  # 16 batches of 4
    settings = [f"input={folder}", "workers=1", "batch_size=4"]
    convert(folder, tmp_path / "reference.h5", SignalPipeline(), workers=1, batch_size=4)

    output = tmp_path / "resumed.h5"
    partial_folder = tmp_path / "resumed.h5.partial"
    killed = run_preprocess(*settings, f"output={output}", cwd=tmp_path)
    deadline = time.time() + 120
    while len(list(partial_folder.glob("batch_*.npz"))) < 4 and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    done_before = len(list(partial_folder.glob("batch_*.npz")))
    assert 4 <= done_before < 16 and not output.exists()

    resumed = run_in_process("ecgexp-preprocess", tmp_path, *settings, f"output={output}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]  # the kill needed a process
    expected, got = read_h5(tmp_path / "reference.h5"), read_h5(output)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])
    assert not partial_folder.exists()


def test_challenge_folder_trains_chagas_directly(compose_train, tmp_path):
    folder = tmp_path / "challenge"
    write_synthetic_records(folder, 60, rate=500, subfolders=True)  # resampled on the fly
    cfg = compose_train("task=chagas", "dataset=wfdb_folder", f"dataset.path={folder}",
                        "dataset.ids=name", "model=resnet1d_small", QUARTER_LENGTHS,
                        "trainer.max_epochs=1",
                        "+trainer.limit_train_batches=2", "loader.batch_size=8",
                        "loader.num_workers=0", "callbacks.progress_bar=null", "logger=none",
                        "dataset.split.val_fraction=0.3", "dataset.split.test_fraction=0.2")
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    metrics = train(cfg)
    assert "test/chagas/auroc" in metrics
    predictions = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    assert len(predictions) == 12
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(written) == {"val", "test"}
    assert os.path.exists(tmp_path / "run" / "provenance.json")


def test_one_header_file_is_one_record(fixture_records, tmp_path):
    """``input=<record>.hea``: that record alone (not its header lines read as a RECORDS
    list), the same tracing as from its folder."""
    convert(fixture_records / "s0010_re.hea", tmp_path / "one.h5", SignalPipeline(), workers=1)
    convert(fixture_records, tmp_path / "all.h5", SignalPipeline(), workers=1)
    one, all_ = read_h5(tmp_path / "one.h5"), read_h5(tmp_path / "all.h5")
    assert len(one[0]) == 1
    position = pd.read_csv(tmp_path / "all.csv").record.tolist().index("s0010_re")
    np.testing.assert_array_equal(one[0][0], all_[0][position])


def test_records_file_selects_and_orders_the_records(fixture_records, tmp_path):
    (fixture_records / "RECORDS").write_text("s0010_re\n\n100\n")
    pipeline = SignalPipeline(missing_leads="zero")
    result = convert(fixture_records / "RECORDS", tmp_path / "out.h5", pipeline, workers=1)
    assert (result["converted"], result["rejected"]) == (2, 0)
    metadata = pd.read_csv(tmp_path / "out.csv", dtype={"record": str})
    assert list(metadata.record) == ["s0010_re", "100"]
    assert list(metadata.exam_id) == [0, 1]


def test_missing_input_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="input: no folder or RECORDS file"):
        convert(tmp_path / "nowhere", tmp_path / "out.h5", SignalPipeline(), workers=1)


# -- the conversion's faults --------------------------------------------------------------------

CODE15_FIXTURES = FIXTURES / "code15_wfdb"
OUTPUT_NAMES = ("out.h5", "out.csv", "out_rejected.csv", "out_quality.csv")


@pytest.fixture
def code15_records(tmp_path):
    """Five real CODE-15% records (copies) and a RECORDS file that lists a sixth, absent one
    (so that the rejection report is not empty)."""
    folder = tmp_path / "code15"
    folder.mkdir()
    names = sorted(p.stem for p in CODE15_FIXTURES.glob("*.hea"))[:5]
    for name in names:
        for suffix in (".hea", ".dat"):
            shutil.copy(CODE15_FIXTURES / f"{name}{suffix}", folder / f"{name}{suffix}")
    (folder / "RECORDS").write_text("\n".join([*names[:3], "missing", *names[3:]]) + "\n")
    return folder / "RECORDS"


def assert_same_outputs(folder: Path, reference: Path):
    """The three outputs in ``folder`` equal those in ``reference``: arrays, attributes, CSV
    bytes."""
    got, expected = read_h5(folder / "out.h5"), read_h5(reference / "out.h5")
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    with h5py.File(folder / "out.h5") as a, h5py.File(reference / "out.h5") as b:
        assert dict(a.attrs).keys() == dict(b.attrs).keys()
        assert a.attrs["pipeline"] == b.attrs["pipeline"]
    for name in OUTPUT_NAMES[1:]:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the converter handles it (it has no
    ``finally`` or ``except BaseException`` that would tidy up what a kill leaves)."""


MUTATIONS = ("mkdir", "replace", "rename", "link", "unlink", "rmdir")


def convert_killed_at(step, monkeypatch, *args, **kwargs) -> int:
    """Runs ``convert`` with the process 'killed' just before its ``step``-th change of a name
    on disk (mkdir, rename, link, unlink, rmdir; None: not killed; a function of the step, the
    call's name and its arguments: where it is true); returns the changes made."""
    calls = []
    if not callable(step):
        step = (lambda at: lambda number, name, arguments: number == at)(step)
    with monkeypatch.context() as patch:
        for name in MUTATIONS:
            def wrapper(*a, _name=name, _original=getattr(os, name), **k):  # noqa: B008
                if step(len(calls) + 1, _name, a):
                    raise Killed
                calls.append(a[0])
                return _original(*a, **k)
            patch.setattr(os, name, wrapper)
        convert(*args, **kwargs)
    return len(calls)


def test_a_kill_at_any_step_leaves_all_or_nothing_and_a_rerun_finishes(code15_records, tmp_path,
                                                                      monkeypatch):
    pipeline = SignalPipeline()
    reference = tmp_path / "reference"
    reference.mkdir()
    n_steps = convert_killed_at(None, monkeypatch, code15_records, reference / "out.h5",
                                pipeline, workers=1, batch_size=2)
    assert n_steps > 12 and sorted(p.name for p in reference.iterdir()) == sorted(OUTPUT_NAMES)
    for step in range(1, n_steps + 1):
        folder = tmp_path / f"killed_{step}"
        folder.mkdir()
        with pytest.raises(Killed):
            convert_killed_at(step, monkeypatch, code15_records, folder / "out.h5", pipeline,
                              workers=1, batch_size=2)
        final = {p.name for p in folder.iterdir()} & set(OUTPUT_NAMES)
        if "out.h5" in final:  # the marker: the whole set is there, complete
            assert final == set(OUTPUT_NAMES), step
            assert_same_outputs(folder, reference)
        elif final:  # CSVs only while the files are moved, recorded as this converter's own
            assert (folder / "out.h5.partial" / "commit.json").is_file(), step
            for name in final:
                assert (folder / name).read_bytes() == (reference / name).read_bytes()
        if final == set(OUTPUT_NAMES) and not any((folder / "out.h5.partial").iterdir()):
            assert step == n_steps  # killed just before removing the empty partial folder
            with pytest.raises(UserError, match=re.escape(f"output: '{folder / 'out.h5'}' exists")):
                convert(code15_records, folder / "out.h5", pipeline, workers=1, batch_size=2)
        else:
            result = convert(code15_records, folder / "out.h5", pipeline, workers=1,
                             batch_size=2)
            assert (result["converted"], result["rejected"]) == (5, 1)
        assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_NAMES), step
        assert_same_outputs(folder, reference)


KILL_AFTER_FIRST_MOVE = """
import os, sys
from ecgexp.data.convert import convert
from ecgexp.signal.pipeline import SignalPipeline
link = os.link
def link_then_die(*args, **kwargs):
    link(*args, **kwargs)
    os._exit(9)
os.link = link_then_die
convert(sys.argv[1], sys.argv[2], SignalPipeline(), workers=1, batch_size=2)
"""


def test_a_process_killed_after_the_first_move_is_finished_by_a_rerun(code15_records, tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    convert(code15_records, reference / "out.h5", SignalPipeline(), workers=1, batch_size=2)
    folder = tmp_path / "killed"
    folder.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_MOVE, str(code15_records),
                             str(folder / "out.h5")], capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["out.csv", "out.h5.partial"]
    assert (folder / "out.csv").read_bytes() == (reference / "out.csv").read_bytes()
    with pytest.raises(UserError, match="other records or settings"):  # not another conversion
        convert(code15_records, folder / "out.h5", SignalPipeline(scale=2.0), workers=1,
                batch_size=2)
    convert(code15_records, folder / "out.h5", SignalPipeline(), workers=1, batch_size=2)
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_NAMES)
    assert_same_outputs(folder, reference)


def test_a_csv_the_converter_did_not_write_is_not_taken_over(code15_records, tmp_path,
                                                            monkeypatch):
    output = tmp_path / "out.h5"

    def before_moving_the_report(number, name, arguments):
        return name == "link" and Path(arguments[1]).name == "out_rejected.csv"

    with pytest.raises(Killed):  # killed after the metadata CSV was moved into place
        convert_killed_at(before_moving_the_report, monkeypatch, code15_records, output,
                          SignalPipeline(), workers=1, batch_size=2)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == [
        "out.csv", "out.h5.partial"]
    (tmp_path / "out.csv").unlink()
    (tmp_path / "out.csv").write_text("the user's own table\n")
    with pytest.raises(UserError, match=re.escape(
            f"output: '{tmp_path / 'out.csv'}' exists and is not the file this conversion "
            f"wrote; move it away")):
        convert(code15_records, output, SignalPipeline(), workers=1, batch_size=2)
    assert (tmp_path / "out.csv").read_text() == "the user's own table\n"
    assert not output.exists()


def test_foreign_files_in_the_partial_folder_are_refused_not_deleted(code15_records, tmp_path):
    folder = tmp_path / "out.h5.partial"
    (folder / "notes").mkdir(parents=True)
    (folder / "my_analysis.txt").write_text("keep me")
    with pytest.raises(UserError) as error:
        convert(code15_records, tmp_path / "out.h5", SignalPipeline(), workers=1)
    assert str(error.value) == (
        f"output: '{folder}' holds files that ecgexp-preprocess did not write (my_analysis.txt, "
        f"notes/); move them out of it (or choose another output); nothing in it is deleted")
    assert sorted(p.name for p in folder.iterdir()) == ["my_analysis.txt", "notes"]
    assert (folder / "my_analysis.txt").read_text() == "keep me"
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.csv").exists()


def test_the_clean_up_removes_only_the_converters_files(code15_records, tmp_path, monkeypatch,
                                                        caplog):
    import ecgexp.data.convert as conversion

    folder = tmp_path / "out.h5.partial"
    assemble = conversion._assemble

    def assemble_while_a_user_saves_a_file(*args, **kwargs):
        (folder / "saved_meanwhile.txt").write_text("keep me")
        return assemble(*args, **kwargs)

    monkeypatch.setattr(conversion, "_assemble", assemble_while_a_user_saves_a_file)
    convert(code15_records, tmp_path / "out.h5", SignalPipeline(), workers=1, batch_size=2)
    assert all((tmp_path / name).is_file() for name in OUTPUT_NAMES)
    assert [p.name for p in folder.iterdir()] == ["saved_meanwhile.txt"]
    assert f"left '{folder}' in place" in caplog.text and "saved_meanwhile.txt" in caplog.text


@pytest.mark.parametrize(("setting", "message"), [
    ({"workers": 0}, "workers: 0 is not a whole number >= 1 (1 converts in this process, "
                     "N > 1 starts N worker processes); set workers=<value>"),
    ({"workers": -2}, "workers: -2 is not a whole number >= 1"),
    ({"workers": "two"}, "workers: 'two' is not a whole number >= 1"),
    ({"workers": True}, "workers: True is not a whole number >= 1"),
    ({"batch_size": 0}, "batch_size: 0 is not a whole number >= 1 (records per batch file); "
                        "set batch_size=<value>"),
    ({"batch_size": -8}, "batch_size: -8 is not a whole number >= 1"),
    ({"batch_size": 2.5}, "batch_size: 2.5 is not a whole number >= 1"),
    ({"batch_size": None}, "batch_size: None is not a whole number >= 1"),
    ({"ids": "filename"}, "ids: 'filename' is not one of index, name"),
])
def test_bad_settings_are_refused_before_anything_is_written(code15_records, tmp_path, setting,
                                                             message):
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UserError, match=re.escape(message)):
        convert(code15_records, tmp_path / "out" / "out.h5", SignalPipeline(),
                **{"workers": 1, "batch_size": 2, **setting})
    assert sorted(tmp_path.rglob("*")) == before


def test_an_output_that_cannot_be_written_names_the_path(code15_records, tmp_path):
    (tmp_path / "a_file").write_text("")
    before = sorted(tmp_path.rglob("*"))
    output = tmp_path / "a_file" / "sub" / "out.h5"
    with pytest.raises(UserError, match=re.escape(
            f"output: '{tmp_path / 'a_file'}' is a file, not a folder, so '{output}' cannot be "
            f"written there; choose another output")):
        convert(code15_records, output, SignalPipeline(), workers=1)
    with pytest.raises(UserError, match=re.escape(f"output: '{tmp_path / 'out.txt'}' must be "
                                                  f"a file name ending in .h5 or .hdf5")):
        convert(code15_records, tmp_path / "out.txt", SignalPipeline(), workers=1)
    (tmp_path / "out.h5.partial").write_text("")
    with pytest.raises(UserError, match=re.escape(
            f"output: '{tmp_path / 'out.h5.partial'}' is in the way of the conversion's working "
            f"folder")):
        convert(code15_records, tmp_path / "out.h5", SignalPipeline(), workers=1)
    (tmp_path / "out.h5.partial").unlink()
    assert sorted(tmp_path.rglob("*")) == before


def test_an_output_folder_that_is_not_writable_names_the_path(code15_records, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        try:
            (locked / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("chmod 0o500 does not stop this user from writing (running as root)")
        output = locked / "out.h5"
        with pytest.raises(UserError, match=re.escape(
                f"output: the folder '{locked}' is not writable, so '{output}' cannot be "
                f"written there")):
            convert(code15_records, output, SignalPipeline(), workers=1)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def child_processes(pid: int) -> set[int]:
    children = set()
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children |= {int(child) for child in listing.read_text().split()}
        except OSError:  # the thread ended meanwhile
            pass
    return children


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan nobody reaped has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_workers_end_when_the_converter_is_killed(tmp_path):
    folder = tmp_path / "records"
    shutil.copytree(CODE15_FIXTURES, folder)
    names = sorted(p.stem for p in folder.glob("*.hea"))
    (folder / "RECORDS").write_text("\n".join(names * 4) + "\n")  # 612 records
    converter = run_preprocess(f"input={folder / 'RECORDS'}", f"output={tmp_path / 'out.h5'}",
                               "workers=2", "batch_size=4", cwd=tmp_path)
    workers, deadline = set(), time.time() + 60
    try:
        while len(workers) < 2 and converter.poll() is None and time.time() < deadline:
            workers = child_processes(converter.pid)
            time.sleep(0.02)
        assert len(workers) >= 2, converter.stderr.read() if converter.poll() is not None else ""
        converter.send_signal(signal.SIGKILL)
        converter.wait(timeout=10)
        deadline = time.time() + 5
        while any(running(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if running(pid)], "workers outlived the converter"
    finally:
        converter.kill()
        for pid in workers:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_command_prints_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "a_file").write_text("")
    finished = run_in_process("ecgexp-preprocess", tmp_path, f"input={WFDB_FIXTURES}",
                              "output=a_file/out.h5")
    assert finished.returncode == 2
    assert finished.stderr == ("error: output: 'a_file' is a file, not a folder, so "
                               "'a_file/out.h5' cannot be written there; choose another "
                               "output\n")
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]
