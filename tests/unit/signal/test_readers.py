"""Readers of raw ECG files: WFDB (real PhysioNet fixtures and written ones), MUSE XML, TNMG JSON.

Expected values are computed independently of the readers: from the raw bytes of the fixtures,
from the integer arrays the tests encode, or from the published conversion rules.
"""

import base64
import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import wfdb
from helpers.records import FIXTURES

from ecgexp.signal.leads import normalise_lead_name
from ecgexp.signal.readers import (
    Record,
    RecordError,
    parse_header_comments,
    read_muse_xml,
    read_record,
    read_tnmg_json,
    read_wfdb,
)

WFDB_DIR = FIXTURES / "wfdb"
TWELVE = ["DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
MUSE_LEADS = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.mark.parametrize("raw, expected", [
    ("i", "DI"), ("I", "DI"), ("DI", "DI"), ("ii", "DII"), ("II", "DII"), ("DII", "DII"),
    ("iii", "DIII"), ("III", "DIII"), ("avr", "AVR"), ("aVR", "AVR"), ("aVL", "AVL"),
    ("AVF", "AVF"), ("v1", "V1"), ("V6", "V6"), (" v4 ", "V4"), ("MLII", "MLII"), ("vx", "VX"),
])
def test_normalise_lead_name(raw, expected):
    assert normalise_lead_name(raw) == expected


# --- WFDB -----------------------------------------------------------------------------------

@pytest.fixture
def s0010_re(tmp_path):
    for suffix in (".hea", ".dat", ".xyz"):
        shutil.copy(WFDB_DIR / f"s0010_re{suffix}", tmp_path)
    return tmp_path / "s0010_re"


def test_ptb_record_with_two_signal_files(s0010_re):
    record = read_wfdb(s0010_re)
    assert record.name == "s0010_re"
    assert record.leads == TWELVE + ["VX", "VY", "VZ"]
    assert record.sampling_rate == 1000
    assert record.signal.shape == (38400, 15)
    assert record.signal.dtype == np.float64
    # Format 16: interleaved little-endian int16, 12 channels in .dat and 3 in .xyz; gain 2000
    # adu/mV, baseline 0 for all channels.
    dat = np.fromfile(s0010_re.with_suffix(".dat"), dtype="<i2").reshape(-1, 12)
    xyz = np.fromfile(s0010_re.with_suffix(".xyz"), dtype="<i2").reshape(-1, 3)
    np.testing.assert_allclose(record.signal[:1000, 1], dat[:1000, 1] / 2000)
    np.testing.assert_allclose(record.signal[:1000, :12], dat[:1000] / 2000)
    np.testing.assert_allclose(record.signal[:1000, 12:], xyz[:1000] / 2000)


def test_ptb_header_comments(s0010_re):
    metadata = read_wfdb(s0010_re.with_suffix(".hea")).metadata
    assert metadata["age"] == 81
    assert metadata["sex"] == "female"
    assert metadata["reason_for_admission"] == "Myocardial infarction"
    assert metadata["number_of_coronary_vessels_involved"] == 1
    assert metadata["ecg_date"] == "01/10/1990"
    assert metadata["previous_infarction_1_date"] is None  # "n/a"
    assert metadata["diagnose"] is None  # "Diagnose:" with nothing after the colon
    assert "unnecessary_comment" not in metadata  # no colon: ignored


def test_mitbih_format_212():
    record = read_wfdb(WFDB_DIR / "100")
    assert record.leads == ["MLII", "V5"]
    assert record.sampling_rate == 360
    assert record.signal.shape == (650000, 2)
    assert record.metadata == {}  # its comments have no "key: value"
    # Format 212: each 3 bytes hold two 12-bit two's-complement samples (one frame of the two
    # channels); gain 200 adu/mV, baseline 1024 for both channels.
    raw = np.fromfile(WFDB_DIR / "100.dat", dtype=np.uint8, count=3 * 1000).astype(int)
    raw = raw.reshape(-1, 3)
    first = raw[:, 0] | ((raw[:, 1] & 0x0F) << 8)
    second = raw[:, 2] | ((raw[:, 1] & 0xF0) << 4)
    digital = np.stack([first, second], axis=1)
    digital[digital >= 2048] -= 4096
    np.testing.assert_allclose(record.signal[:1000], (digital - 1024) / 200)
    assert record.signal[0, 0] == pytest.approx(-0.145)


def _write_wfdb(folder, name, digital, units="mV", gain=1000.0, comments=(), fs=400):
    """Writes a format-16 record from integers (samples, leads); physical = digital / gain."""
    n_leads = digital.shape[1]
    wfdb.wrsamp(name, fs=fs, units=[units] * n_leads, sig_name=TWELVE[:n_leads],
                d_signal=digital.astype(np.int16), fmt=["16"] * n_leads,
                adc_gain=[gain] * n_leads, baseline=[0] * n_leads, comments=list(comments),
                write_dir=str(folder))
    return folder / name


@pytest.mark.parametrize("units, to_mv", [("uV", 1e-3), ("mV", 1.0), ("V", 1e3)])
def test_wfdb_units_converted_to_millivolts(tmp_path, units, to_mv):
    digital = np.random.default_rng(0).integers(-3000, 3000, size=(800, 3))
    record = read_wfdb(_write_wfdb(tmp_path, "rec", digital, units=units, gain=2.0))
    np.testing.assert_allclose(record.signal, digital / 2.0 * to_mv)
    assert record.leads == ["DI", "DII", "DIII"]
    assert record.sampling_rate == 400


def test_challenge_2025_comments(tmp_path):
    comments = ["Age: 45", "Sex: Male", "Chagas label: True", "Source: SaMi-Trop"]
    digital = np.arange(24 * 100).reshape(200, 12) % 500
    record = read_record(_write_wfdb(tmp_path, "12345", digital, comments=comments), name="a/b")
    assert record.name == "a/b"
    assert record.metadata == {"age": 45, "sex": "Male", "chagas_label": True,
                               "source": "SaMi-Trop"}
    assert record.leads == TWELVE
    np.testing.assert_allclose(record.signal, digital / 1000)


def test_parse_header_comments():
    metadata = parse_header_comments([
        "Chagas label: FALSE", "Weight-kg: 70.5", "Offset: -3", "Empty:", "Note: n/a",
        "Time: 19:45", "just text", ": no key", "Exp: 1e-3",
    ])
    assert metadata == {"chagas_label": False, "weight_kg": 70.5, "offset": -3, "empty": None,
                        "note": None, "time": "19:45", "exp": 1e-3}


def test_wfdb_nan_samples_are_kept(tmp_path):
    signal = np.ones((100, 2))
    signal[10, 1] = np.nan
    wfdb.wrsamp("nan", fs=500, units=["mV", "mV"], sig_name=["I", "II"], p_signal=signal,
                fmt=["16", "16"], adc_gain=[1000, 1000], baseline=[0, 0], write_dir=str(tmp_path))
    record = read_wfdb(tmp_path / "nan")
    assert np.isnan(record.signal[10, 1])
    assert np.isnan(record.signal).sum() == 1


def test_truncated_dat_raises(tmp_path):
    path = _write_wfdb(tmp_path, "cut", np.ones((1000, 2), dtype=int))
    dat = path.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2])
    with pytest.raises(RecordError, match="^cut: ") as info:
        read_wfdb(path)
    assert info.value.record == "cut"


def test_missing_files_raise(tmp_path):
    with pytest.raises(RecordError, match="^nothing: missing header") as info:
        read_wfdb(tmp_path / "nothing")
    assert isinstance(info.value, ValueError) and info.value.record == "nothing"
    path = _write_wfdb(tmp_path, "nodat", np.ones((100, 2), dtype=int))
    path.with_suffix(".dat").unlink()
    with pytest.raises(RecordError, match="^nodat: "):
        read_record(path.with_suffix(".hea"))


@pytest.mark.parametrize("header", [
    "empty 0 500 0\n",
    "empty 1 500 0\nempty.dat 16 1000/mV 16 0 0 0 0 I\n",
])
def test_empty_wfdb_record_raises(tmp_path, header):
    (tmp_path / "empty.hea").write_text(header)
    (tmp_path / "empty.dat").write_bytes(b"")
    with pytest.raises(RecordError, match="^empty: empty"):
        read_wfdb(tmp_path / "empty")


def test_record_rejects_empty_or_mismatched_signal():
    with pytest.raises(RecordError, match="empty"):
        Record("r", np.zeros((0, 2)), ["DI", "DII"], 500.0, {})
    with pytest.raises(RecordError, match="shape"):
        Record("r", np.zeros((10, 3)), ["DI", "DII"], 500.0, {})


# --- GE MUSE XML -----------------------------------------------------------------------------

def _muse_waveform(root, kind, data, units, per_bit, rate=500, lead_ids=MUSE_LEADS):
    waveform = ET.SubElement(root, "Waveform")
    if kind is not None:
        ET.SubElement(waveform, "WaveformType").text = kind
    ET.SubElement(waveform, "SampleBase").text = str(rate)
    for lead_id, column in zip(lead_ids, data.T):
        lead = ET.SubElement(waveform, "LeadData")
        ET.SubElement(lead, "LeadByteCountTotal").text = str(2 * len(column))
        ET.SubElement(lead, "LeadSampleCountTotal").text = str(len(column))
        ET.SubElement(lead, "LeadAmplitudeUnitsPerBit").text = per_bit
        ET.SubElement(lead, "LeadAmplitudeUnits").text = units
        ET.SubElement(lead, "LeadID").text = lead_id
        encoded = base64.encodebytes(column.astype("<i2").tobytes()).decode()  # with newlines
        ET.SubElement(lead, "WaveFormData").text = encoded


def _write_muse(path, rhythm, units="MICROVOLTS", per_bit="4,88", rhythm_kind="Rhythm"):
    """A MUSE file with a Median waveform first and the Rhythm waveform second."""
    root = ET.Element("RestingECG")
    demographics = ET.SubElement(root, "PatientDemographics")
    ET.SubElement(demographics, "PatientAge").text = "63"
    ET.SubElement(demographics, "AgeUnits").text = "YEARS"
    ET.SubElement(demographics, "Gender").text = "FEMALE"
    median = np.full((600, len(MUSE_LEADS)), 7)
    _muse_waveform(root, "Median", median, units, per_bit)
    _muse_waveform(root, rhythm_kind, rhythm, units, per_bit)
    ET.ElementTree(root).write(path, encoding="ISO-8859-1", xml_declaration=True)
    return path


@pytest.fixture
def rhythm():
    return np.random.default_rng(1).integers(-32768, 32767, size=(5000, 8), endpoint=True)


def test_muse_rhythm_in_microvolts(tmp_path, rhythm):
    record = read_muse_xml(_write_muse(tmp_path / "ecg.xml", rhythm))
    assert record.name == "ecg"
    assert record.leads == ["DI", "DII", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert record.sampling_rate == 500
    assert record.signal.shape == (5000, 8)
    np.testing.assert_allclose(record.signal, rhythm * 4.88 / 1000)
    assert record.metadata == {"age": 63, "age_units": "YEARS", "sex": "FEMALE"}


def test_muse_millivolts_and_unlabelled_waveforms(tmp_path, rhythm):
    path = _write_muse(tmp_path / "mv.xml", rhythm, units="MILLIVOLTS", per_bit="0.005",
                       rhythm_kind=None)
    record = read_record(path)
    np.testing.assert_allclose(record.signal, rhythm * 0.005)


@pytest.mark.parametrize("corrupt", [
    lambda text: text.replace("<LeadSampleCountTotal>5000<", "<LeadSampleCountTotal>4999<"),
    lambda text: text.replace("MICROVOLTS", "NANOVOLTS"),
    lambda text: text[: len(text) // 2],
])
def test_bad_muse_raises(tmp_path, rhythm, corrupt):
    path = _write_muse(tmp_path / "bad.xml", rhythm)
    path.write_text(corrupt(path.read_text(encoding="latin-1")), encoding="latin-1")
    with pytest.raises(RecordError, match="^bad"):
        read_muse_xml(path)


# --- TNMG JSON -------------------------------------------------------------------------------

@pytest.fixture
def tnmg():
    """Seven leads (no V3) of different integers, and the dict of the JSON record."""
    leads = ["V1", "V2", "V4", "V5", "V6", "DI", "DII"]
    data = {lead: np.arange(100) * (i + 1) - 50 for i, lead in enumerate(leads)}
    content = {"id": 987, "age": 57, "sex": "M", "resolution": 4.88, "sampling": 500}
    content |= {lead: ";".join(str(v) for v in values) + ";" for lead, values in data.items()}
    return data, content


def _check_tnmg(record, data):
    assert record.leads == ["DI", "DII", "V1", "V2", "V4", "V5", "V6"]
    assert record.sampling_rate == 500
    for lead, values in data.items():
        np.testing.assert_allclose(record.signal[:, record.leads.index(lead)],
                                   values / 1000 * 4.88)
    assert record.metadata == {"id": 987, "age": 57, "sex": "M"}


def test_tnmg_json_file_with_missing_lead(tmp_path, tnmg):
    data, content = tnmg
    path = tmp_path / "exam.json"
    path.write_text(json.dumps(content))
    record = read_record(path)
    assert record.name == "exam"
    _check_tnmg(record, data)


def test_tnmg_json_string(tnmg):
    data, content = tnmg
    record = read_tnmg_json(json.dumps(content))
    assert record.name == "987"
    _check_tnmg(record, data)


@pytest.mark.parametrize("change", [
    {"V2": "1;2;3"},  # unequal lengths
    {"V2": "1;x;3"},
    {"resolution": None},
    {"sampling": "fast"},
])
def test_bad_tnmg_raises(tnmg, change):
    _, content = tnmg
    with pytest.raises(RecordError, match="^987: "):
        read_tnmg_json(json.dumps(content | change), name="987")


def test_tnmg_missing_file_and_bad_json(tmp_path):
    with pytest.raises(RecordError, match="^gone: "):
        read_tnmg_json(tmp_path / "gone.json")
    with pytest.raises(RecordError):
        read_tnmg_json("{not json")


def test_unknown_suffix_raises(tmp_path):
    with pytest.raises(RecordError, match="^scan: unknown record format"):
        read_record(tmp_path / "scan.pdf")
