"""The real records the tests read, in the repository (tests/data/README.md: origin, licence),
the published reference values (tests/reference), and damaged copies of exams."""

from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "data"
REFERENCE = TESTS / "reference"


def header_fields(path) -> dict[str, str]:
    """The ``# key: value`` comments of a WFDB header, read here without ecgexp or wfdb."""
    return dict(line[2:].strip().split(": ", 1) for line in Path(path).read_text().splitlines()
                if line.startswith("# ") and ": " in line)


def code15_exams(limit: int | None = None) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The real CODE-15% exams of ``FIXTURES/code15_wfdb`` (the first ``limit`` by name),
    read with wfdb as ADC counts: their header fields, and the tracings (exams, 4096, 12)
    centre-padded with zeros as int16 counts and as float32 mV (gain 1000 adu/mV, checked)."""
    import wfdb

    records = FIXTURES / "code15_wfdb"
    names = sorted(p.stem for p in records.glob("*.hea"))[:limit]
    counts = np.zeros((len(names), 4096, 12), np.int16)
    headers = []
    for i, name in enumerate(names):
        record = wfdb.rdrecord(str(records / name), physical=False)
        assert record.adc_gain == [1000.0] * 12 and record.baseline == [0] * 12
        start = (4096 - record.sig_len) // 2
        counts[i, start:start + record.sig_len] = record.d_signal
        headers.append(dict(c.split(": ", 1) for c in record.comments))
    return headers, counts, (counts / 1000.0).astype(np.float32)


def damaged(millivolts):
    """40 exams: rows 3 (one NaN), 17 (an Inf lead) and 33 (-Inf) non-finite, 8 and 25 zero."""
    tracings = millivolts[:40].copy()
    tracings[3, 2000, 4] = np.nan
    tracings[17, :, 0] = np.inf
    tracings[33, 5, 11] = -np.inf
    tracings[[8, 25]] = 0.0
    return tracings


def synthetic_tracings(data, exam_ids: np.ndarray) -> np.ndarray:
    """``(exams, leads, samples)`` float32 tracings of ``exam_ids`` from the synthetic HDF5
    files under ``data`` (CODE-15% layout: ``exam_id``, ``tracings`` (exams, samples, leads)),
    read here with h5py."""
    import h5py

    found = {}
    for path in sorted(Path(data).rglob("exams_part*.hdf5")):
        with h5py.File(path, "r") as handle:
            ids = handle["exam_id"][:]
            for row in np.flatnonzero(np.isin(ids, exam_ids)):
                found[int(ids[row])] = handle["tracings"][row].T
    return np.stack([found[int(e)] for e in exam_ids]).astype(np.float32)
