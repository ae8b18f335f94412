"""A PTB-XL folder written for the tests (PTB-XL itself cannot be downloaded here): the real
PTB-XL records among the CinC 2021 test records (``tests/data/cinc2021/HR060xx``, 500 Hz,
10 s, read here from their MATLAB files) beside noise records, in PTB-XL's layout:
``ptbxl_database.csv``, ``scp_statements.csv`` (PTB-XL's own, ``tests/data/ptbxl``),
``records500/`` and ``records100/`` (the 500 Hz signals resampled by 1/5 here)."""

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import io as sio
from scipy import signal as sps

from helpers.records import FIXTURES, header_fields

LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
# The statements of the real records' SNOMED CT codes (# Dx:), as the CinC 2021 mapping of
# PTB-XL gives them: sinus rhythm, sinus bradycardia, sinus tachycardia, incomplete RBBB,
# T-wave abnormality, ST changes.
SNOMED_STATEMENTS = {"426783006": "SR", "426177001": "SBRAD", "427084000": "STACH",
                     "713426002": "IRBBB", "164934002": "TAB_", "55930002": "NST_"}
# Statements given to the noise records in turn (rhythm, form and diagnostic ones); every
# seventh noise record gets none (left out by dataset.drop_unlabelled).
NOISE_STATEMENTS = [["SR", "NORM"], ["AFIB", "CLBBB"], ["SR", "IMI", "QWAVE"], ["STACH", "LVH"],
                    [], ["SBRAD", "1AVB"], ["AFLT", "ISC_", "NDT"]]


def real_records() -> dict[int, dict]:
    """The real PTB-XL records: ecg_id (the number of ``HR<ecg_id>``) -> {signal (5000, 12)
    mV, statements, age, sex (PTB-XL's 0 male, 1 female)}."""
    found = {}
    for header in sorted((FIXTURES / "cinc2021").glob("HR*.hea")):
        fields = header_fields(header)
        counts = sio.loadmat(header.with_suffix(".mat"))["val"]  # (12, 5000), 1000 adu/mV
        found[int(header.stem[2:])] = {
            "signal": counts.T / 1000.0,
            "statements": {SNOMED_STATEMENTS[code] for code in fields["Dx"].split(",")},
            "age": int(fields["Age"]), "sex": 0 if fields["Sex"] == "Male" else 1}
    return found


def write_ptbxl(root: Path, n_noise: int = 30, seed: int = 0, rates=(100,)) -> Path:
    """The PTB-XL folder under ``root``: the real records and ``n_noise`` noise ones, ten
    folds (the real records in folds 1, 9 and 10 too), one patient per ECG; the records at
    ``rates`` (100: ``records100/``, 500: ``records500/``)."""
    import wfdb

    rng = np.random.default_rng(seed)
    ecgs = [(ecg_id, record) for ecg_id, record in real_records().items()]
    for i in range(n_noise):
        ecgs.append((20000 + i, {"signal": rng.normal(0, 0.2, (5000, 12)),
                                 "statements": set(NOISE_STATEMENTS[i % len(NOISE_STATEMENTS)]),
                                 "age": 30 + i, "sex": i % 2}))
    rows = []
    for n, (ecg_id, record) in enumerate(ecgs):
        folder = f"{ecg_id // 1000 * 1000:05d}"
        for rate, suffix, signal in ((500, "hr", record["signal"]),
                                     (100, "lr", sps.resample_poly(record["signal"], 1, 5))):
            if rate not in rates:
                continue
            where = root / f"records{rate}" / folder
            where.mkdir(parents=True, exist_ok=True)
            wfdb.wrsamp(f"{ecg_id:05d}_{suffix}", fs=rate, units=["mV"] * 12, sig_name=LEADS,
                        p_signal=signal, fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                        baseline=[0] * 12, write_dir=str(where))
        rows.append({"ecg_id": ecg_id, "patient_id": 1000 + n, "age": record["age"],
                     "sex": record["sex"], "strat_fold": n % 10 + 1,
                     "scp_codes": str({s: 100.0 for s in sorted(record["statements"])}),
                     "filename_lr": f"records100/{folder}/{ecg_id:05d}_lr",
                     "filename_hr": f"records500/{folder}/{ecg_id:05d}_hr"})
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    (root / "scp_statements.csv").write_bytes(
        (FIXTURES / "ptbxl" / "scp_statements.csv").read_bytes())
    return root
