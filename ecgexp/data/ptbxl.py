"""PTB-XL (PhysioNet, Wagner et al. 2020) as an exam source: ``ptbxl_database.csv`` (one row
per ECG: ``ecg_id``, ``patient_id``, ``age``, ``sex`` 0 male / 1 female, ``scp_codes`` as a
dict of SCP-ECG statement -> likelihood %, ``strat_fold`` 1-10, ``filename_lr`` /
``filename_hr``) and ``scp_statements.csv`` (per statement: ``diagnostic``, ``form``,
``rhythm`` flags, ``diagnostic_subclass`` and ``diagnostic_class``) beside the WFDB records.

The label sets are those of the PTB-XL benchmark (Strodthoff et al., IEEE JBHI 2021,
``compute_label_aggregations``): ``all`` (every statement), ``diagnostic``, ``subdiagnostic``
(the diagnostic statements' subclasses), ``superdiagnostic`` (their classes), ``form`` and
``rhythm``; and ``code6``, the six CODE labels."""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgexp.data.labels import read_csv_table
from ecgexp.data.record_source import RecordFolderSource
from ecgexp.errors import UserError

log = logging.getLogger(__name__)

LEVELS = ("code6", "all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
# PTB-XL statements of the six CODE labels.
CODE6 = {"1dAVb": "1AVB", "RBBB": "CRBBB", "LBBB": "CLBBB", "SB": "SBRAD", "AF": "AFIB",
         "ST": "STACH"}
DATABASE_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr",
                    "filename_hr")


class PTBXLSource(RecordFolderSource):
    """PTB-XL under ``path`` (the folder of ``ptbxl_database.csv``).

    Args (besides those of :class:`RecordFolderSource`, whose ``ids`` is not used: the exam
    id is ``ecg_id``):
        sampling_rate: 500 (``filename_hr``) or 100 (``filename_lr``) Hz records.
        label_level: ``code6`` (the six CODE labels: 1AVB, CRBBB, CLBBB, SBRAD, AFIB, STACH),
            ``all`` (one column per statement), ``diagnostic``, ``form`` or ``rhythm`` (one
            per statement of that kind), ``subdiagnostic`` (one per ``diagnostic_subclass``)
            or ``superdiagnostic`` (NORM, MI, STTC, CD, HYP: ``diagnostic_class``).
        min_likelihood: a statement counts when its likelihood (%) is at least this (rhythm
            and form statements carry 0).
        folds: split -> strat_fold numbers (the recommended 1-8 / 9 / 10).
        drop_unlabelled: leave out the ECGs with no statement of the label set (the
            benchmark's ``select_data``).
    """

    def __init__(self, *args, sampling_rate: int = 500, label_level: str = "code6",
                 min_likelihood: float = 0.0,
                 folds: Mapping[str, Sequence[int]] | None = None,
                 drop_unlabelled: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if int(sampling_rate) not in (100, 500):
            raise UserError(f"dataset.sampling_rate: {sampling_rate}; PTB-XL has 500 Hz "
                            f"(filename_hr) and 100 Hz (filename_lr) records")
        if label_level not in LEVELS:
            raise UserError(f"dataset.label_level: '{label_level}' is not one of "
                            f"{', '.join(LEVELS)}")
        self.sampling_rate, self.label_level = int(sampling_rate), label_level
        self.min_likelihood = float(min_likelihood)
        self.drop_unlabelled = bool(drop_unlabelled)
        self.folds = {k: [int(f) for f in v] for k, v in
                      (folds or {"train": range(1, 9), "val": [9], "test": [10]}).items()}

    @property
    def label_files(self) -> list[Path]:
        """The tables the labels come from (``scp_statements.csv`` beyond ``code6``)."""
        files = [self.path / "ptbxl_database.csv"]
        if self.label_level != "code6":
            files.append(self.path / "scp_statements.csv")
        return files

    def _database(self) -> pd.DataFrame:
        path = self.path / "ptbxl_database.csv"
        table = read_csv_table(path, "dataset.path", "point dataset.path at the PTB-XL folder "
                                                     "(the one holding ptbxl_database.csv)")
        missing = [c for c in DATABASE_COLUMNS if c not in table.columns]
        if missing:
            raise UserError(f"dataset.path: '{path}' has no column {', '.join(missing)}; it is "
                            f"not PTB-XL's ptbxl_database.csv")
        twice = table.ecg_id[table.ecg_id.duplicated()]
        if len(twice):
            rows = table.index[table.ecg_id == twice.iloc[0]] + 2  # CSV lines (header: 1)
            raise UserError(f"dataset.path: '{path}' lists ecg_id {twice.iloc[0]} on lines "
                            f"{', '.join(map(str, rows))} ({len(twice)} ecg_ids repeated); each "
                            f"ECG is one row of ptbxl_database.csv: fix the file")
        return table

    def records(self) -> tuple[Path, list[str]]:
        """The folder and the records ``ptbxl_database.csv`` lists at ``sampling_rate``, each
        with its ``.hea`` and ``.dat`` file there (a missing one is named, with its line)."""
        column = "filename_hr" if self.sampling_rate == 500 else "filename_lr"
        database = self._database()
        names = database[column].astype(str).tolist()
        self._check_record_files(database, names, column)
        return self.path, names

    def _check_record_files(self, database: pd.DataFrame, names: Sequence[str],
                            column: str) -> None:
        missing = [(row, self.path / f"{name}{suffix}") for row, name in enumerate(names)
                   for suffix in (".hea", ".dat") if not (self.path / f"{name}{suffix}").is_file()]
        if not missing:
            return
        rows = sorted({row for row, _ in missing})
        row, first = missing[0]
        other, rate = ("filename_lr", 100) if column == "filename_hr" else ("filename_hr", 500)
        hint = "download the whole PTB-XL folder or point dataset.path at it"
        if len(rows) == len(names) and all(
                (self.path / f"{name}.hea").is_file() for name in database[other].astype(str)):
            hint = f"this folder has the {rate} Hz records ({other}): dataset.sampling_rate={rate}"
        raise UserError(f"dataset.path: {len(rows)} of the {len(names)} records "
                        f"ptbxl_database.csv lists ({column}) are missing a file under "
                        f"'{self.path}', first '{first}' (ecg_id "
                        f"{database.ecg_id.iloc[row]}, line {row + 2}); {hint}")

    def exam_table(self, root: Path, names: Sequence[str]) -> pd.DataFrame:
        """One row per ECG of the database: ``exam_id`` (``ecg_id``), ``patient_id``,
        ``age``, ``is_male``, ``strat_fold``, ``record`` and the label columns."""
        database = self._database()
        codes = database.scp_codes.map(_scp_codes)
        chosen = codes.map(lambda c: {k for k, v in c.items() if v >= self.min_likelihood})
        table = pd.DataFrame({
            "exam_id": database.ecg_id.astype(np.int64), "record": list(names),
            "file_index": np.arange(len(database)), "row": 0,
            "patient_id": database.patient_id, "strat_fold": database.strat_fold,
            "age": database.get("age"), "is_male": 1 - database.get("sex", np.nan)})
        labels = self._labels()
        for label, statements in labels.items():
            table[label] = chosen.map(lambda c, s=statements: int(bool(c & s)))
        if self.drop_unlabelled:
            labelled = table[list(labels)].any(axis=1)
            log.info("dataset.drop_unlabelled: %d of %d ECGs have no %s statement and are left "
                     "out", int((~labelled).sum()), len(table), self.label_level)
            table = table[labelled].reset_index(drop=True)
        return table.rename(columns=self.rename_columns)

    def _labels(self) -> dict[str, set[str]]:
        """Label column -> the statements that make it 1."""
        if self.label_level == "code6":
            return {label: {code} for label, code in CODE6.items()}
        path = self.path / "scp_statements.csv"
        statements = read_csv_table(path, "dataset.path", "PTB-XL's scp_statements.csv "
                                                          "belongs beside ptbxl_database.csv")
        statements = statements.set_index(statements.columns[0])
        if self.label_level == "all":
            return {code: {code} for code in statements.index}
        if self.label_level in ("subdiagnostic", "superdiagnostic"):
            column = ("diagnostic_subclass" if self.label_level == "subdiagnostic"
                      else "diagnostic_class")
            classes = statements.loc[statements.diagnostic.fillna(0) == 1, column].dropna()
            return {c: set(classes.index[classes == c]) for c in sorted(classes.unique())}
        flagged = statements.index[statements[self.label_level].fillna(0) == 1]
        return {code: {code} for code in flagged}

    def _split(self, table: pd.DataFrame, labels: Sequence[str] = ()) -> pd.Series:
        """The split of each ECG by its ``strat_fold`` (PTB-XL's folds keep each patient in
        one fold and are stratified by label already: ``labels`` is not needed); folds named
        in no split are left out."""
        split = pd.Series("unused", index=table.index)
        for name, folds in self.folds.items():
            split[table.strat_fold.isin(folds)] = name
        used = split != "unused"
        splits_of = split[used].groupby(table.patient_id[used]).unique()
        leaking = splits_of[splits_of.map(len) > 1]
        if len(leaking):
            patient = leaking.index[0]
            folds = sorted(table.strat_fold[table.patient_id == patient].unique())
            raise UserError(f"dataset.folds: patient {patient} of "
                            f"'{self.path / 'ptbxl_database.csv'}' has ECGs in strat_fold "
                            f"{', '.join(map(str, folds))}, which fall in the splits "
                            f"{', '.join(sorted(leaking.iloc[0]))} ({len(leaking)} patients "
                            f"so); PTB-XL keeps each patient in one fold: the file was edited, "
                            f"or dataset.folds splits a patient's folds")
        return split


def _scp_codes(text) -> dict[str, float]:
    """``"{'NORM': 100.0, 'SR': 0.0}"`` -> the dict (a Python literal, never evaluated)."""
    try:
        codes = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        raise UserError(f"dataset.path: scp_codes {str(text)[:60]!r} in ptbxl_database.csv is "
                        f"not a dict of statement -> likelihood") from None
    if not isinstance(codes, dict):
        raise UserError(f"dataset.path: scp_codes {str(text)[:60]!r} in ptbxl_database.csv is "
                        f"not a dict of statement -> likelihood")
    return {str(k): float(v) for k, v in codes.items()}
