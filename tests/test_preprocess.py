"""``ecgexp-preprocess`` and raw-record datasets: the real WFDB fixtures, bad records, resume,
parallel conversion, and training directly on a Challenge-style WFDB folder."""

import json
import os
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
from conftest import FIXTURES
from omegaconf import open_dict
from scipy.signal import resample_poly

from ecgexp.data.synthetic import synthesize_exams
from ecgexp.preprocess import convert
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


def test_parallel_conversion_equals_serial(tmp_path):
    folder = tmp_path / "records"
    write_synthetic_records(folder, 20)
    convert(folder, tmp_path / "serial.h5", SignalPipeline(), workers=1, batch_size=4)
    convert(folder, tmp_path / "parallel.h5", SignalPipeline(), workers=2, batch_size=4)
    serial, parallel = read_h5(tmp_path / "serial.h5"), read_h5(tmp_path / "parallel.h5")
    np.testing.assert_array_equal(serial[1], parallel[1])
    np.testing.assert_array_equal(serial[0], parallel[0])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "serial.csv"),
                                  pd.read_csv(tmp_path / "parallel.csv"))


def test_nothing_is_overwritten(fixture_records, tmp_path):
    output = tmp_path / "out.h5"
    convert(fixture_records, output, SignalPipeline(), workers=1)
    before = output.read_bytes()
    with pytest.raises(FileExistsError, match="output"):
        convert(fixture_records, output, SignalPipeline(), workers=1)
    assert output.read_bytes() == before


def run_preprocess(*overrides, cwd):
    script = Path(sys.executable).parent / "ecgexp-preprocess"
    return subprocess.Popen([str(script), *overrides], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_killed_conversion_resumes_to_the_same_file(tmp_path):
    folder = tmp_path / "records"
    write_synthetic_records(folder, 120)
    settings = [f"input={folder}", "workers=1", "batch_size=8"]
    reference = run_preprocess(*settings, f"output={tmp_path / 'reference.h5'}", cwd=tmp_path)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    output = tmp_path / "resumed.h5"
    partial_folder = tmp_path / "resumed.h5.partial"
    killed = run_preprocess(*settings, f"output={output}", cwd=tmp_path)
    deadline = time.time() + 120
    while len(list(partial_folder.glob("batch_*.npz"))) < 4 and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    done_before = len(list(partial_folder.glob("batch_*.npz")))
    assert 4 <= done_before < 15 and not output.exists()

    resumed = run_preprocess(*settings, f"output={output}", cwd=tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    expected, got = read_h5(tmp_path / "reference.h5"), read_h5(output)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])
    assert not partial_folder.exists()


def test_challenge_folder_trains_chagas_directly(compose_train, tmp_path):
    folder = tmp_path / "challenge"
    write_synthetic_records(folder, 60, rate=500, subfolders=True)  # resampled on the fly
    cfg = compose_train("task=chagas", "dataset=wfdb_folder", f"dataset.path={folder}",
                        "dataset.ids=name", "model=resnet1d_small", "trainer.max_epochs=1",
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
