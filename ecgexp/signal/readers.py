"""Readers for raw ECG files: WFDB, GE MUSE XML and TNMG JSON, all returning a :class:`Record`.

Every reader returns the signal as a float64 array of shape ``(samples, leads)`` in millivolts,
with lead names normalised by :func:`ecgexp.signal.leads.normalise_lead_name` (``I`` -> ``DI``,
``aVL`` -> ``AVL``, anything else upper-cased). Any problem with a file (missing, truncated,
malformed, empty) raises :class:`RecordError` naming the record; NaN samples are kept as they are.

Metadata values that say "no value" (:data:`MISSING_VALUES`: ``NaN``, ``Unknown``, ``N/A``, empty,
...) become None in every reader, so that tables hold them as missing values (NaN) and not as
text. :func:`is_male` is the one mapping of a written sex to ``is_male`` (1 male, 0 female).
"""

from __future__ import annotations

import base64
import json
import numbers
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import wfdb

from ecgexp.signal.leads import CANONICAL_LEADS, normalise_lead_name

# Physical units (lower-cased) -> factor to millivolts; empty or unknown units are taken as mV.
_TO_MILLIVOLTS = {"uv": 1e-3, "\u00b5v": 1e-3, "\u03bcv": 1e-3, "mv": 1.0, "v": 1e3}
_MUSE_TO_MILLIVOLTS = {"MICROVOLTS": 1e-3, "MILLIVOLTS": 1.0}
_WFDB_SUFFIXES = (".hea", ".dat")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
# Metadata text (stripped, lower-cased) that means "no value": read as None.
MISSING_VALUES = frozenset({
    "", "nan", "na", "n/a", "n.a.", "none", "null", "nil", "unknown", "unk", "missing",
    "not available", "not known", "-", "--", "?",
})
# Sex as written (stripped, lower-cased) -> is_male; anything else (missing, unknown) is missing.
SEX_IS_MALE = {"male": 1, "m": 1, "1": 1, "female": 0, "f": 0, "0": 0}


class RecordError(ValueError):
    """A record that cannot be read; ``record`` names it and ``reason`` says why."""

    def __init__(self, record: str, reason: str):
        super().__init__(f"{record}: {reason}")
        self.record = record
        self.reason = reason


@dataclass
class Record:
    """One raw ECG: signal (samples, leads) float64 in millivolts, normalised lead names, Hz.

    Construction checks that ``signal`` is 2-D, has one column per lead name and is not empty
    (zero samples or zero leads raise :class:`RecordError`).
    """

    name: str  # record name (file stem, or relative path for folders)
    signal: np.ndarray  # (samples, leads) float64, mV
    leads: list[str]  # normalised names: DI, DII, DIII, AVR, AVL, AVF, V1..V6, others upper-cased
    sampling_rate: float  # Hz
    metadata: dict[str, object] = field(default_factory=dict)  # age, sex, chagas_label, ...;
    # None where the file says there is no value (see MISSING_VALUES)

    def __post_init__(self):
        self.signal = np.asarray(self.signal, dtype=np.float64)
        if self.signal.ndim != 2 or self.signal.shape[1] != len(self.leads):
            raise RecordError(self.name, f"signal of shape {self.signal.shape} does not match "
                                         f"{len(self.leads)} lead names")
        if self.signal.size == 0:
            raise RecordError(self.name, f"empty ({self.signal.shape[0]} samples, "
                                         f"{self.signal.shape[1]} leads)")
        if not self.sampling_rate > 0:
            raise RecordError(self.name, f"invalid sampling rate {self.sampling_rate!r}")


def read_record(path: str | Path, name: str | None = None) -> Record:
    """Reads a record, choosing the reader from the suffix.

    ``.xml`` -> GE MUSE XML, ``.json`` -> TNMG JSON, ``.hea``, ``.dat`` or no suffix -> WFDB.
    ``name`` overrides the record name (default: the file stem).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return read_muse_xml(path, name=name)
    if suffix == ".json":
        return read_tnmg_json(path, name=name)
    if suffix in _WFDB_SUFFIXES or suffix == "":
        return read_wfdb(path, name=name)
    raise RecordError(name or path.stem, f"unknown record format '{path.suffix}' ({path})")


def read_wfdb(path: str | Path, name: str | None = None) -> Record:
    """Reads a WFDB record (any format wfdb reads, including multi-file records).

    ``path`` is the record path with or without ``.hea``/``.dat``. Each channel is converted from
    its physical units to mV (uV/µV: /1000, mV: as is, V: x1000; empty or unknown: taken as mV).
    Header comments ``key: value`` become metadata (see :func:`parse_header_comments`).
    """
    path, name = _wfdb_record_path(path, name)
    try:
        header = wfdb.rdheader(str(path))
        empty = header.n_sig == 0 or header.sig_len == 0  # sig_len None: inferred from the data
        raw = None if empty else wfdb.rdrecord(str(path))
    except Exception as err:  # wfdb raises many types (ValueError, OSError, IndexError, ...)
        raise RecordError(name, f"cannot read WFDB record {path}: {err}") from err
    if raw is None:
        raise RecordError(name, f"empty ({header.sig_len} samples, {header.n_sig} leads)")
    factors = [_TO_MILLIVOLTS.get(str(unit or "").strip().lower(), 1.0) for unit in raw.units]
    return Record(name=name,
                  signal=raw.p_signal * np.asarray(factors),
                  leads=[normalise_lead_name(lead) for lead in raw.sig_name],
                  sampling_rate=float(raw.fs),
                  metadata=parse_header_comments(raw.comments))


def read_wfdb_header(path: str | Path, name: str | None = None) -> dict[str, object]:
    """The metadata of a WFDB record's header comments, without reading its signal."""
    path, name = _wfdb_record_path(path, name)
    try:
        return parse_header_comments(wfdb.rdheader(str(path)).comments)
    except Exception as err:  # as in read_wfdb
        raise RecordError(name, f"cannot read WFDB header {path}: {err}") from err


def _wfdb_record_path(path: str | Path, name: str | None) -> tuple[Path, str]:
    """The record path without extension and its name; fails when the header is missing."""
    path = Path(path)
    if path.suffix.lower() in _WFDB_SUFFIXES:
        path = path.with_suffix("")
    name = name or path.name
    header_file = path.with_name(path.name + ".hea")
    if not header_file.is_file():
        raise RecordError(name, f"missing header file {header_file}")
    return path, name


def parse_header_comments(comments: list[str]) -> dict[str, object]:
    """Turns WFDB header comments ``key: value`` into a metadata dict.

    Keys are lower-cased with each run of other characters than letters and digits replaced by
    ``_`` ("Chagas label" -> ``chagas_label``). Values are stripped and converted: integers and
    decimals to numbers, true/false (any case) to bool, the missing-value words of
    :data:`MISSING_VALUES` (any case: empty, ``NaN``, ``NA``, ``N/A``, ``None``, ``Unknown``,
    ``-``, ...) to None; other text is kept as is. Comments without a colon are ignored; a
    repeated key keeps its last value.
    """
    metadata: dict[str, object] = {}
    for comment in comments:
        key, colon, value = comment.partition(":")
        key = re.sub(r"[^0-9a-z]+", "_", key.strip().lower()).strip("_")
        if colon and key:
            metadata[key] = _parse_value(value)
    return metadata


def read_muse_xml(path: str | Path, name: str | None = None) -> Record:
    """Reads a GE MUSE XML file: the Rhythm waveform, in mV, with the leads it stores.

    The waveform with ``WaveformType`` "Rhythm" is used (the second waveform when none is so
    labelled). Samples are base64 little-endian int16 scaled by ``LeadAmplitudeUnitsPerBit``
    (a decimal comma is accepted) in ``LeadAmplitudeUnits`` (MICROVOLTS or MILLIVOLTS).
    ``PatientDemographics`` age, age units and gender go to metadata as age, age_units, sex;
    as text (not converted to numbers): ``PatientDemographics/PatientID`` as patient_id,
    ``TestDemographics/AcquisitionDate`` and ``AcquisitionTime`` as acquisition_date and
    acquisition_time (as written, e.g. ``03-15-2019``, ``14:22:05``), and the ``StmtText`` of the
    ``Diagnosis/DiagnosisStatement`` elements, in file order, joined by ``"; "`` as diagnosis.
    A key is present when its element is; missing-value words (:data:`MISSING_VALUES`) are None.
    """
    path = Path(path)
    name = name or path.stem
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise RecordError(name, f"cannot read MUSE XML {path}: {err}") from err
    waveform = _rhythm_waveform(root, name)
    leads, columns = [], []
    for lead in waveform.findall("LeadData"):
        lead_id = _xml_text(lead, "LeadID", name)
        leads.append(normalise_lead_name(lead_id))
        columns.append(_muse_lead_millivolts(lead, f"{name}: lead {lead_id}"))
    if len({len(column) for column in columns}) > 1:
        raise RecordError(name, f"leads of unequal length {[len(c) for c in columns]}")
    signal = np.stack(columns, axis=1) if columns else np.zeros((0, 0))
    metadata = {key: parse(root.findtext(tag)) for key, tag, parse in _MUSE_METADATA
                if root.find(tag) is not None}
    if root.find("Diagnosis") is not None:
        statements = [_text_value(statement.findtext("StmtText"))
                      for statement in root.findall("Diagnosis/DiagnosisStatement")]
        metadata["diagnosis"] = "; ".join(s for s in statements if s is not None) or None
    return Record(name=name, signal=signal, leads=leads,
                  sampling_rate=_number(_xml_text(waveform, "SampleBase", name), name),
                  metadata=metadata)


def read_tnmg_json(source: str | Path, name: str | None = None) -> Record:
    """Reads a TNMG JSON record from a file path or from a JSON string (one starting with '{').

    Leads are the keys naming one of the 12 standard leads (``DI``, ``V1``, ...), each a
    ';'-separated string of integers, mapped by name and returned in the canonical order; a
    missing lead is simply absent. mV = value / 1000 * ``resolution``; ``sampling`` is in Hz.
    Other fields (age, sex, id, ...) go to metadata as given (text of :data:`MISSING_VALUES`, such
    as ``"NaN"`` or ``"unknown"``, as None). ``name`` defaults to the file stem,
    or for a JSON string to its ``id`` field.
    """
    is_path = isinstance(source, Path) or not str(source).lstrip().startswith("{")
    name = name or (Path(source).stem if is_path else "<json string>")
    try:
        content = Path(source).read_text() if is_path else str(source)
        data = json.loads(content)
    except (OSError, ValueError) as err:
        raise RecordError(name, f"cannot read TNMG JSON: {err}") from err
    if not isinstance(data, dict):
        raise RecordError(name, "TNMG JSON is not an object")
    if not is_path and "id" in data:
        name = str(data["id"])
    lead_keys = {normalise_lead_name(key): key for key in data
                 if normalise_lead_name(key) in CANONICAL_LEADS}
    leads = [lead for lead in CANONICAL_LEADS if lead in lead_keys]
    columns = [_tnmg_lead(data[lead_keys[lead]], f"{name}: lead {lead}") for lead in leads]
    if len({len(column) for column in columns}) > 1:
        raise RecordError(name, f"leads of unequal length {[len(c) for c in columns]}")
    for key in ("resolution", "sampling"):
        if key not in data:
            raise RecordError(name, f"TNMG JSON without '{key}'")
    resolution = _number(data["resolution"], name)
    signal = np.stack(columns, axis=1) / 1000 * resolution if columns else np.zeros((0, 0))
    metadata = {key: None if _is_missing(value) else value for key, value in data.items()
                if key not in {"resolution", "sampling", *lead_keys.values()}}
    return Record(name=name, signal=signal, leads=leads,
                  sampling_rate=_number(data["sampling"], name), metadata=metadata)


def is_male(sex: object) -> int | None:
    """A sex as written -> 1 (``Male``, ``M``, ``1``, any case), 0 (``Female``, ``F``, ``0``) or
    None (missing, unknown or anything else; booleans too, which say nothing about sex)."""
    if sex is None or isinstance(sex, bool):
        return None
    if isinstance(sex, numbers.Real):
        return {1: 1, 0: 0}.get(sex)  # 1.0 and numpy integers too; NaN: None
    return SEX_IS_MALE.get(str(sex).strip().lower())


def with_is_male(metadata: Mapping[str, object]) -> dict[str, object]:
    """``metadata`` with ``is_male`` (:func:`is_male` of its ``sex``: 1, 0 or None) right after
    ``sex``, replacing any ``is_male`` it had; as it is without a ``sex`` key."""
    if "sex" not in metadata:
        return dict(metadata)
    row: dict[str, object] = {}
    for key, value in metadata.items():
        if key != "is_male":
            row[key] = value
        if key == "sex":
            row["is_male"] = is_male(value)
    return row


def _is_missing(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() in MISSING_VALUES


def _text_value(text: str | None) -> str | None:
    """XML text -> the stripped string, or None (absent or a missing-value word)."""
    return None if text is None or _is_missing(text) else text.strip()


def _parse_value(text: str | None) -> object:
    """Header or XML text -> int, float, bool, None (:data:`MISSING_VALUES`) or the stripped
    string."""
    value = (text or "").strip()
    if _is_missing(value):
        return None
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if _INT.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    return value


# MUSE XML metadata: key, element path, how its text is read.
_MUSE_METADATA = (
    ("age", "PatientDemographics/PatientAge", _parse_value),
    ("age_units", "PatientDemographics/AgeUnits", _parse_value),
    ("sex", "PatientDemographics/Gender", _parse_value),
    ("patient_id", "PatientDemographics/PatientID", _text_value),
    ("acquisition_date", "TestDemographics/AcquisitionDate", _text_value),
    ("acquisition_time", "TestDemographics/AcquisitionTime", _text_value),
)


def _number(value: object, name: str) -> float:
    """A number from JSON or XML text (a decimal comma is accepted); RecordError otherwise."""
    try:
        return float(str(value).strip().replace(",", "."))
    except ValueError as err:
        raise RecordError(name, f"not a number: {value!r}") from err


def _xml_text(element: ET.Element, tag: str, name: str) -> str:
    text = element.findtext(tag)
    if text is None or not text.strip():
        raise RecordError(name, f"MUSE XML without <{tag}>")
    return text.strip()


def _rhythm_waveform(root: ET.Element, name: str) -> ET.Element:
    """The Rhythm ``Waveform`` element, else the second one (as the published reader took)."""
    waveforms = root.findall("Waveform")
    for waveform in waveforms:
        if (waveform.findtext("WaveformType") or "").strip().lower() == "rhythm":
            return waveform
    if len(waveforms) > 1:
        return waveforms[1]
    raise RecordError(name, f"no Rhythm waveform among {len(waveforms)} waveform(s)")


def _muse_lead_millivolts(lead: ET.Element, where: str) -> np.ndarray:
    """One MUSE ``LeadData`` element -> samples (n,) float64 in mV."""
    units = _xml_text(lead, "LeadAmplitudeUnits", where).upper()
    if units not in _MUSE_TO_MILLIVOLTS:
        raise RecordError(where, f"unknown LeadAmplitudeUnits '{units}'")
    per_bit = _number(_xml_text(lead, "LeadAmplitudeUnitsPerBit", where), where)
    try:
        raw = base64.b64decode(_xml_text(lead, "WaveFormData", where))
        samples = np.frombuffer(raw, dtype="<i2")
    except ValueError as err:
        raise RecordError(where, f"bad WaveFormData: {err}") from err
    declared = lead.findtext("LeadSampleCountTotal")
    if declared is not None and int(_number(declared, where)) != len(samples):
        raise RecordError(where, f"{len(samples)} samples decoded, {declared.strip()} declared")
    return samples * per_bit * _MUSE_TO_MILLIVOLTS[units]


def _tnmg_lead(value: object, where: str) -> np.ndarray:
    """One TNMG lead string '12;-3;...' -> integers (n,) as float64."""
    if not isinstance(value, str):
        raise RecordError(where, f"expected a ';'-separated string, got {type(value).__name__}")
    try:
        return np.array([int(item) for item in value.split(";") if item.strip()], dtype=float)
    except ValueError as err:
        raise RecordError(where, f"not an integer: {err}") from err
