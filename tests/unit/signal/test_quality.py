"""Signal quality of real records: findings checked against what the raw bytes show (read here
with numpy, not with ecgexp or wfdb), actions (reject, zero a lead, interpolate a gap), the
quality report, and duplicates and patients kept on one side of a split.

What the fixtures hold, found by reading their samples for this test:
- byte-identical records: E07509.mat = E07510.mat (cinc2021, Georgia) and 1111611.dat =
  1111628.dat (code15_wfdb, both of patient 438017);
- no saturation plateau, no flat or all-zero lead and no invalid (-32768) sample in any of the
  183 records; those are made in copies below;
- CODE-15% records stored at twice the mV scale: samples beyond 20 "mV" in 1111554 (most
  leads, up to 32.8), 1111117 (V2, 27.2) and 111169 (V6, 24.5).
"""

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers.commands import run_in_process
from helpers.configs import compose_in
from helpers.records import FIXTURES
from hydra.utils import instantiate

from ecgexp.data.build import build_datamodule

CODE15 = FIXTURES / "code15_wfdb"
CINC = FIXTURES / "cinc2021"
LEADS = ["DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def raw_samples(dat) -> np.ndarray:
    """A 12-lead format-16 ``.dat``: ``(samples, 12)`` int16, read with numpy."""
    return np.fromfile(dat, dtype="<i2").reshape(-1, 12)


def copy_records(names, folder, source=CODE15, suffixes=(".hea", ".dat")):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        for suffix in suffixes:
            shutil.copy(source / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


def source_of(root, folder, *overrides):
    cfg = compose_in(root, "task=chagas", "dataset=challenge2025", f"dataset.path={folder}",
                     *overrides)
    return instantiate(cfg.dataset)


def test_real_records_duplicates_amplitudes_and_short_records(tmp_path):
    source = source_of(tmp_path, CODE15)
    table, _ = source.load(["chagas"])
    report = source.quality_report
    duplicates = report[report.finding == "duplicate"]
    assert duplicates[["exam_id", "detail"]].values.tolist() == [
        [1111628, "the same samples as record 1111611"]]
    assert table.set_index("exam_id").duplicate_of.dropna().to_dict() == {1111628: 1111611}

    beyond = {}  # lead -> max |sample| in mV from the raw int16 bytes (gain 1000)
    for dat in sorted(CODE15.glob("*.dat")):
        peaks = np.abs(raw_samples(dat).astype(float)).max(axis=0) / 1000
        for lead in np.flatnonzero(peaks > 20):
            beyond[(int(dat.stem), LEADS[lead])] = peaks[lead]
    implausible = report[report.finding == "implausible_amplitude"]
    assert set(zip(implausible.exam_id, implausible.lead)) == set(beyond)
    assert {e for e, _ in beyond} == {1111554, 1111117, 111169}

    lengths = {int(h.stem): int(h.read_text().split()[3]) for h in CODE15.glob("*.hea")}
    short = report[report.finding == "short_record"]
    # short: under 90 % of the 4096-sample window (3687 samples: the 7.3 s exams and shorter);
    # the 10 s one (4020 samples, 98 %) is not a finding
    assert set(short.exam_id) == {e for e, n in lengths.items() if n < 0.9 * 4096}
    assert len(short) == 83 and 4020 in lengths.values()
    assert not report.finding.isin(["saturation", "flat_lead", "zero_lead",
                                    "invalid_samples"]).any()


def test_cinc2021_duplicate_pair_is_found(tmp_path):
    cfg = compose_in(tmp_path, "dataset=cinc2021", f"dataset.path={CINC}")
    source = instantiate(cfg.dataset)
    source.load([])
    report = source.quality_report
    assert report[report.finding == "duplicate"].record.tolist() == ["E07510"]
    # the standard 10 s records (5000 samples at 500 Hz, read from their headers here) are
    # not short for the 10.24 s window: a few padded samples are not a finding
    lengths = [int(h.read_text().split()[3]) for h in CINC.glob("*.hea")]
    assert set(lengths) == {5000} and "short_record" not in set(report.finding)


def _damaged(tmp_path):
    """Copies of three real records: 1111 with -32768 (WFDB's invalid sample) at samples
    100-104 of V2; 1111004 with V1-V3 all zero; 1111009 with lead II held at 8 mV for 41
    samples (a clipping plateau)."""
    folder = copy_records(["1111", "1111004", "1111009", "1111025"], tmp_path / "damaged")
    for name, change in (("1111", lambda x: x.__setitem__((slice(100, 105), 7), -32768)),
                         ("1111004", lambda x: x.__setitem__((slice(None), slice(6, 9)), 0)),
                         ("1111009", lambda x: x.__setitem__((slice(500, 541), 1), 8000))):
        samples = raw_samples(folder / f"{name}.dat")
        if name == "1111009":
            samples[:, 1] = np.minimum(samples[:, 1], 8000)
        change(samples)
        samples.astype("<i2").tofile(folder / f"{name}.dat")
    return folder


def test_damaged_copies_are_found_and_the_invalid_record_rejected(tmp_path, caplog):
    folder = _damaged(tmp_path)
    caplog.set_level(logging.INFO, logger="ecgexp.data.record_source")
    source = source_of(tmp_path, folder, "dataset.split.val_fraction=0.25",
                       "dataset.split.test_fraction=0.25")
    table, _ = source.load(["chagas"])
    report = source.quality_report

    def only(exam_id, finding):
        (row,) = report[(report.exam_id == exam_id) & (report.finding == finding)].itertuples()
        return row

    invalid = only(1111, "invalid_samples")
    assert (invalid.lead, invalid.count) == ("V2", 5)
    assert invalid.detail == "5 invalid samples at 100, 101, 102, 103, 104"
    zero = source.quality_report.query("exam_id == 1111004 and finding == 'zero_lead'")
    assert zero.lead.tolist() == ["V1", "V2", "V3"]
    plateau = only(1111009, "saturation")
    assert (plateau.lead, plateau.count, plateau.detail) == ("DII", 41, "41 samples at 8 mV")
    assert 1111 not in set(table.exam_id)  # invalid_samples: reject (the default)
    assert {1111004, 1111009, 1111025} <= set(table.exam_id)  # kept, reported
    assert "1 left out by quality.actions" in caplog.text


def test_repair_interpolates_the_gap_and_strict_rejects_the_rest(tmp_path):
    folder = _damaged(tmp_path)
    repaired = source_of(tmp_path / "a", folder, "quality=repair",
                         "preprocessing.baseline_removal=false",
                         "preprocessing.sampling_rate=400", "preprocessing.n_samples=2934")
    table, reader = repaired.load(["chagas"])
    position = int(table.set_index("exam_id").file_index[1111])
    tracing = reader.read(position)
    original = raw_samples(CODE15 / "1111.dat").astype(float) / 1000
    ramp = np.interp(np.arange(100, 105), [99, 105], original[[99, 105], 7])
    np.testing.assert_allclose(tracing[100:105, 7], ramp, atol=1e-6)
    np.testing.assert_allclose(tracing[:, 6:9][:, 0], original[:, 6], atol=1e-6)
    zeroed = reader.read(int(table.set_index("exam_id").file_index[1111004]))
    assert not zeroed[:, 6:9].any()

    strict = source_of(tmp_path / "b", folder, "quality=strict")
    assert set(strict.load(["chagas"])[0].exam_id) == {1111025}  # the undamaged one


def test_duplicates_and_patients_stay_on_one_side_of_the_split(tmp_path):
    """Every real record plus byte-identical copies of 20 of them under new names (new exam
    ids, and no patient id, as a re-export would have): each copy lands with its original,
    and each patient's exams in one split."""
    folder = copy_records([p.stem for p in CODE15.glob("*.hea")], tmp_path / "all")
    originals = sorted(int(p.stem) for p in CODE15.glob("*.hea"))[:20]
    for number, original in enumerate(originals):
        copy = 9_000_000 + number
        header = (folder / f"{original}.hea").read_text().replace(str(original), str(copy))
        header = "".join(line + "\n" for line in header.splitlines()
                         if not line.startswith("# Patient ID:"))
        (folder / f"{copy}.hea").write_text(header)
        shutil.copy(folder / f"{original}.dat", folder / f"{copy}.dat")
    cfg = compose_in(tmp_path, "task=chagas", "dataset=challenge2025", f"dataset.path={folder}",
                     "dataset.split.val_fraction=0.2", "dataset.split.test_fraction=0.2")
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    split = datamodule.table.set_index("exam_id").split
    for number, original in enumerate(originals):
        assert split[9_000_000 + number] == split[original]
    patients = {int(h.stem): line.split(": ", 1)[1].strip() for h in CODE15.glob("*.hea")
                for line in h.read_text().splitlines() if line.startswith("# Patient ID:")}
    by_patient = pd.Series(patients).groupby(pd.Series(patients)).groups
    for exams in by_patient.values():
        assert split[list(exams)].nunique() == 1
    assert set(split) == {"train", "val", "test"}


@pytest.mark.parametrize("override, message", [
    ("quality.flat_lead_mv=-1", "quality.flat_lead_mv: -1 is not a number > 0"),
    ("quality.saturation_samples=0", "quality.saturation_samples: 0 is not a whole number >= 1"),
    ("quality.max_gap_samples=1.5", "quality.max_gap_samples: 1.5 is not a whole number >= 0"),
    ("quality.actions.flat_lead=explode",
     "quality.actions.flat_lead: 'explode' is not one of keep, reject, zero_lead"),
])
def test_quality_settings_are_checked_at_start_up(tmp_path, override, message):
    """Every command with the quality group refuses a bad value before it does anything."""
    for command, args in {"ecgexp-preprocess": [f"input={tmp_path}", "output=x.h5"],
                          "ecgexp-predict": ["run=x", "dataset=synthetic", "output=y.csv"],
                          "ecgexp": []}.items():
        result = run_in_process(command, tmp_path, override, *args)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert result.stderr.strip() == f"error: {message}" or result.stderr.startswith(
            f"error: {message}"), (command, result.stderr)
        assert not (tmp_path / "outputs").exists() and not (tmp_path / "x.h5").exists()
