"""Missing values in record metadata: the missing-value words of headers and XML (``NaN``,
``Unknown``, ``N/A``, ...) are missing values, not text; ``sex`` and ``is_male`` are one pair in
header tables and in the converter's metadata CSV; MUSE XML keeps the patient id, the acquisition
date and time and the diagnosis statements.

Real CODE-15% records in the Challenge 2025 layout (``tests/data/code15_wfdb``) are
copied and their header comments edited here; expected values come from the test's own reading
of the header lines and, for MUSE, from ``xml.etree`` directly.
"""

import base64
import json
import logging
import math
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from helpers.configs import QUARTER_LENGTHS, compose_in
from helpers.records import FIXTURES

from ecgexp.data.build import build_datamodule
from ecgexp.data.convert import convert
from ecgexp.data.record_source import header_table
from ecgexp.signal.pipeline import SignalPipeline
from ecgexp.signal.readers import read_muse_xml, read_wfdb, read_wfdb_header
from ecgexp.train import train

RECORDS = FIXTURES / "code15_wfdb"
# Words that mean "no value" in a header, as people write them.
MISSING_WORDS = ["NaN", "nan", "NAN", "", "Unknown", "unknown", "UNKNOWN", "N/A", "n/a", "NA",
                 "None", "none", "null", "-", "?"]
# The sexes as written in headers and what is_male is for them (None: missing).
SEXES = {"Male": 1, "M": 1, "male": 1, "1": 1, "Female": 0, "F": 0, "female": 0, "0": 0,
         "Unknown": None, "NaN": None, "": None}
TINY = ["model=resnet1d_small", QUARTER_LENGTHS, "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "loader.num_workers=0", "loader.batch_size=8", "callbacks.progress_bar=null",
        "logger=none", "dataset.split.val_fraction=0.3", "dataset.split.test_fraction=0.3"]


def _names(count: int) -> list[str]:
    return sorted(p.stem for p in RECORDS.glob("*.hea"))[:count]


def _copy(names, folder, changes=None):
    """Copies records to ``folder``; ``changes``: {name: {header key: new value}} rewrites
    those ``# key: value`` comments of the copies (the fixtures stay as they are)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(RECORDS / f"{name}.dat", folder)
        lines = (RECORDS / f"{name}.hea").read_text().splitlines()
        for key, value in (changes or {}).get(name, {}).items():
            lines = [f"# {key}: {value}" if line.startswith(f"# {key}:") else line
                     for line in lines]
        (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder


def _fields(path) -> dict[str, str]:
    """The ``# key: value`` comments of a header, read here without ecgexp."""
    fields = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") and ":" in line:
            key, value = line[1:].split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def _is_missing_word(text: str) -> bool:
    return text.strip().lower() in {word.lower() for word in MISSING_WORDS}


def _finite_numbers(tree) -> list[float]:
    """Every number of a nested JSON structure (raises if one is not finite)."""
    if isinstance(tree, dict):
        return [x for value in tree.values() for x in _finite_numbers(value)]
    if isinstance(tree, list):
        return [x for value in tree for x in _finite_numbers(value)]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        assert math.isfinite(tree), tree
        return [float(tree)]
    return []


# --- header values -----------------------------------------------------------------------------

def test_missing_words_in_headers_are_missing(tmp_path):
    name = _names(1)[0]
    kept = _fields(RECORDS / f"{name}.hea")
    for i, word in enumerate(MISSING_WORDS):
        folder = _copy([name], tmp_path / f"r{i}", {name: {"Age": word, "Sex": word}})
        header = read_wfdb_header(folder / name)
        assert header["age"] is None and header["sex"] is None, word
        assert read_wfdb(folder / name).metadata == header
        # the other comments are untouched
        assert header["patient_id"] == int(kept["Patient ID"])
        assert header["chagas_label"] == (kept["Chagas label"] == "True")
    # values that only contain such a word, or are zero, are values
    folder = _copy([name], tmp_path / "values", {name: {"Age": "0", "Sex": "Not known yet"}})
    header = read_wfdb_header(folder / name)
    assert header["age"] == 0 and header["sex"] == "Not known yet"


def test_header_table_has_sex_and_is_male_as_one_pair(tmp_path, caplog):
    names = _names(len(SEXES) + 1)
    written = dict(zip(names, [*SEXES, "Other"]))
    folder = _copy(names, tmp_path / "records",
                   {name: {"Sex": sex} for name, sex in written.items()})
    caplog.set_level(logging.WARNING, logger="ecgexp.data.record_source")
    table = header_table(folder, names).set_index("record")
    for name, sex in written.items():
        expected = SEXES.get(sex)
        assert (pd.isna(table.is_male[name]) if expected is None
                else table.is_male[name] == expected), (sex, table.is_male[name])
        if _is_missing_word(sex):
            assert pd.isna(table.sex[name])
        else:
            assert table.sex[name] in (sex, int(sex) if sex.isdigit() else sex)
    assert table.is_male.dropna().isin([0, 1]).all()
    assert "1 record(s)" in caplog.text and "'Other'" in caplog.text


def test_converted_metadata_csv_has_is_male_and_missing_ages(tmp_path):
    names = _names(len(SEXES))
    sexes = dict(zip(names, SEXES))
    ages = {names[0]: "NaN", names[1]: "Unknown", names[2]: "N/A"}
    changes = {name: {"Sex": sex, **({"Age": ages[name]} if name in ages else {})}
               for name, sex in sexes.items()}
    folder = _copy(names, tmp_path / "records", changes)
    result = convert(folder, tmp_path / "out.h5", SignalPipeline(), workers=1, ids="name")
    assert (result["converted"], result["rejected"]) == (len(names), 0)
    csv = pd.read_csv(tmp_path / "out.csv", dtype={"record": str}).set_index("record")
    for name in names:
        header = _fields(folder / f"{name}.hea")
        expected_male = SEXES[header["Sex"]]
        assert (pd.isna(csv.is_male[name]) if expected_male is None
                else csv.is_male[name] == expected_male), name
        if _is_missing_word(header["Age"]):
            assert pd.isna(csv.age[name])
        else:
            assert csv.age[name] == float(header["Age"])
    assert pd.api.types.is_numeric_dtype(csv.age) and pd.api.types.is_numeric_dtype(csv.is_male)


# --- training without the missing targets -------------------------------------------------------

N_TRAINING_RECORDS = 24
LEFT_OUT = {0: "NaN", 5: "NaN", 11: "Unknown"}  # position in the record list -> written age


def _training_folder(tmp_path):
    names = _names(N_TRAINING_RECORDS)
    changes = {names[i]: {"Age": word} for i, word in LEFT_OUT.items()}
    folder = _copy(names, tmp_path / "records", changes)
    left_out = {int(_fields(folder / f"{names[i]}.hea")["Exam ID"]) for i in LEFT_OUT}
    return folder, names, left_out


def test_age_training_leaves_out_records_without_age(tmp_path, caplog):
    folder, names, left_out = _training_folder(tmp_path)
    assert left_out == {int(names[i]) for i in LEFT_OUT}  # file names are the exam ids
    caplog.set_level(logging.INFO, logger="ecgexp")
    cfg = compose_in(tmp_path, "task=age", "dataset=wfdb_folder", f"dataset.path={folder}",
                     "dataset.ids=name", *TINY, "logger=csv")
    returned = train(cfg)
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(_finite_numbers(metrics)) >= 10  # every metric written is finite
    assert returned["val/age/mae"] == metrics["val"]["age"]["mae"]
    assert all(math.isfinite(v) for v in returned.values())
    history = pd.read_csv(run / "history" / "metrics.csv")
    for column in ("train_loss", "val_loss"):
        losses = history[column].dropna()
        assert len(losses) and np.isfinite(losses).all(), column
    predicted = pd.concat([pd.read_csv(run / f"predictions_{split}.csv")
                           for split in ("val", "test")])
    assert not set(predicted.exam_id) & left_out
    assert set(predicted.exam_id) <= {int(n) for n in names} - left_out
    message = f"{len(left_out)} records without ['age'] or outside the splits left out"
    assert message in caplog.text
    used = re.search(r"(\d+) records under ", caplog.text)
    assert used and int(used.group(1)) == N_TRAINING_RECORDS - len(left_out)
    splits = re.search(r"test (\d+), train (\d+), val (\d+) exams", caplog.text)
    assert splits and sum(map(int, splits.groups())) == N_TRAINING_RECORDS - len(left_out)
    assert metrics["val"]["age"]["n"] == int(splits.group(3)) == len(
        pd.read_csv(run / "predictions_val.csv"))


def test_metadata_statistics_over_present_values_only(tmp_path):
    folder, names, left_out = _training_folder(tmp_path)
    cfg = compose_in(tmp_path, "task=chagas", "dataset=wfdb_folder", f"dataset.path={folder}",
                     "dataset.ids=name", "task.metadata_columns=[age,is_male]",
                     "+task.standardise_metadata=[age]", *TINY)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    table = datamodule.table
    assert len(table) == N_TRAINING_RECORDS - len(left_out)
    assert not set(table.exam_id) & left_out
    headers = {int(n): _fields(folder / f"{n}.hea") for n in names}
    train_ages = [float(headers[e]["Age"]) for e in table.exam_id[table.split == "train"]]
    statistics = datamodule.metadata_statistics["age"]
    assert statistics["mean"] == pytest.approx(np.mean(train_ages))
    assert statistics["std"] == pytest.approx(np.std(train_ages))
    males = {e: {"Male": 1, "Female": 0}[headers[e]["Sex"]] for e in table.exam_id}
    assert table.is_male.tolist() == [males[e] for e in table.exam_id]


# --- GE MUSE XML -------------------------------------------------------------------------------

DIAGNOSIS = ["Sinus rhythm", "with 1st degree A-V block", "Left axis deviation",
             "Abnormal ECG"]


def _write_muse(path, patient_id="0012345", date="03-15-2019", time="14:22:05",
                statements=DIAGNOSIS, age="63", gender="MALE"):
    """A small MUSE XML file (one Rhythm waveform of 8 leads) with demographics, acquisition
    date and time and diagnosis statements (None: element left out)."""
    root = ET.Element("RestingECG")
    demographics = ET.SubElement(root, "PatientDemographics")
    for tag, text in (("PatientID", patient_id), ("PatientAge", age), ("AgeUnits", "YEARS"),
                      ("Gender", gender)):
        if text is not None:
            ET.SubElement(demographics, tag).text = text
    test = ET.SubElement(root, "TestDemographics")
    for tag, text in (("AcquisitionDate", date), ("AcquisitionTime", time)):
        if text is not None:
            ET.SubElement(test, tag).text = text
    if statements is not None:
        diagnosis = ET.SubElement(root, "Diagnosis")
        ET.SubElement(diagnosis, "Modality").text = "RESTING"
        for i, text in enumerate(statements):
            statement = ET.SubElement(diagnosis, "DiagnosisStatement")
            if i != 0:  # the first statement continues on the line of the second
                ET.SubElement(statement, "StmtFlag").text = "ENDSLINE"
            ET.SubElement(statement, "StmtText").text = text
    waveform = ET.SubElement(root, "Waveform")
    ET.SubElement(waveform, "WaveformType").text = "Rhythm"
    ET.SubElement(waveform, "SampleBase").text = "500"
    data = np.arange(500 * 8).reshape(500, 8) % 300 - 150
    for lead_id, column in zip(["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"], data.T):
        lead = ET.SubElement(waveform, "LeadData")
        ET.SubElement(lead, "LeadSampleCountTotal").text = str(len(column))
        ET.SubElement(lead, "LeadAmplitudeUnitsPerBit").text = "4.88"
        ET.SubElement(lead, "LeadAmplitudeUnits").text = "MICROVOLTS"
        ET.SubElement(lead, "LeadID").text = lead_id
        ET.SubElement(lead, "WaveFormData").text = base64.b64encode(
            column.astype("<i2").tobytes()).decode()
    ET.ElementTree(root).write(path, encoding="ISO-8859-1", xml_declaration=True)
    return path


def test_muse_keeps_patient_acquisition_and_diagnosis(tmp_path):
    path = _write_muse(tmp_path / "ecg.xml")
    root = ET.parse(path).getroot()
    metadata = read_muse_xml(path).metadata
    assert metadata["patient_id"] == root.findtext("PatientDemographics/PatientID") == "0012345"
    assert metadata["acquisition_date"] == root.findtext("TestDemographics/AcquisitionDate")
    assert metadata["acquisition_time"] == root.findtext("TestDemographics/AcquisitionTime")
    texts = [s.findtext("StmtText") for s in root.iter("DiagnosisStatement")]
    assert metadata["diagnosis"] == "; ".join(texts)
    assert all(text in metadata["diagnosis"] for text in DIAGNOSIS)
    assert (metadata["age"], metadata["age_units"], metadata["sex"]) == (63, "YEARS", "MALE")


def test_muse_missing_words_and_absent_elements(tmp_path):
    path = _write_muse(tmp_path / "blank.xml", patient_id="Unknown", date=None, time="",
                       statements=["Normal sinus rhythm", "", "Normal ECG"], age="NaN",
                       gender="UNKNOWN")
    metadata = read_muse_xml(path).metadata
    assert metadata["patient_id"] is None and metadata["acquisition_time"] is None
    assert "acquisition_date" not in metadata  # absent element: absent key
    assert metadata["age"] is None and metadata["sex"] is None
    assert metadata["diagnosis"] == "Normal sinus rhythm; Normal ECG"
    _write_muse(tmp_path / "male.xml")
    table = header_table(tmp_path, ["blank.xml", "male.xml"]).set_index("record")
    assert pd.isna(table.is_male["blank.xml"]) and table.is_male["male.xml"] == 1
    assert pd.isna(table.age["blank.xml"]) and table.age["male.xml"] == 63
