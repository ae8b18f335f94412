"""A folder of raw ECG records (WFDB, GE MUSE XML, TNMG JSON) used directly as a dataset.

Labels come from the records' headers (the PhysioNet Challenge 2025 layout: ``# Age:``,
``# Sex:``, ``# Chagas label:``, ``# Source:``) and optionally from a label CSV; tracings go
through the signal steps (``preprocessing``) on the fly, so records of any rate and length
(sub-folders included) train without a conversion step.

Patients: a ``# Patient ID:`` header comment becomes the column ``patient_id``. A random split
without a group column (``dataset.split.group_column: null``, the default here) then keeps all
exams of one patient in one split; without patient ids it splits exams independently, and says
so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgexp.data.labels import check_columns, check_label_values, read_label_table
from ecgexp.data.splits import SPLITS, random_split
from ecgexp.signal.pipeline import SignalPipeline
from ecgexp.signal.readers import RecordError, read_record, read_wfdb_header
from ecgexp.signal.record_lists import exam_ids, list_records

log = logging.getLogger(__name__)

SEX_IS_MALE = {"male": 1, "m": 1, "female": 0, "f": 0}


class RecordReader:
    """Reads one record per call and runs the signal steps: ``(n_samples, leads)`` float32."""

    def __init__(self, root: Path, names: Sequence[str], pipeline: SignalPipeline):
        self.root = root
        self.names = list(names)
        self.pipeline = pipeline

    @property
    def files(self) -> list[Path]:
        """The record files (WFDB: the header), for messages and provenance."""
        paths = [self.root / name for name in self.names]
        return [p if p.suffix in (".xml", ".json") else p.with_name(p.name + ".hea")
                for p in paths]

    def read(self, file_index: int, row: int = 0) -> np.ndarray:
        record = read_record(self.root / self.names[file_index])
        return self.pipeline(record.signal, record.sampling_rate, record.leads)


def header_table(root: Path, names: Sequence[str]) -> pd.DataFrame:
    """One row per record: its header metadata (WFDB headers only are read; other formats are
    read whole), with ``sex`` also as ``is_male`` and booleans as 0/1."""
    rows = []
    for name in names:
        path = root / name
        try:
            metadata = (read_wfdb_header(path) if path.suffix not in (".xml", ".json")
                        else read_record(path).metadata)
        except RecordError as error:
            raise ValueError(f"dataset.path: {error}") from error
        rows.append({"record": name, **metadata})
    table = pd.DataFrame(rows)
    if "sex" in table.columns:
        table["is_male"] = table["sex"].astype(str).str.strip().str.lower().map(SEX_IS_MALE)
    for column in table.columns:
        if table[column].map(lambda v: isinstance(v, bool)).any():
            table[column] = table[column].map(lambda v: int(v) if isinstance(v, bool) else v)
    return table


class RecordFolderSource:
    """Raw records under ``path`` as an exam source (the ``dataset=wfdb_folder`` config).

    Args:
        name: dataset name.
        path: a folder (searched recursively) or a ``RECORDS`` file.
        split: a split rule (``ecgexp.data.splits``).
        pipeline: the signal steps (the ``preprocessing`` config).
        ids: ``index`` (position in the sorted record list) or ``name`` (integer file names).
        labels_csv: an optional label table joined on ``exam_id``.
        id_column: its exam-id column.
        rename_columns: header or CSV name -> task name (``{chagas_label: chagas}``).
        nan_policy: ``error`` or ``skip`` records the signal steps reject while training.
        n_samples: the tracing length the model is built for; must match the pipeline's.
    """

    def __init__(self, name: str, path: str, split: Callable[[pd.DataFrame], pd.Series],
                 pipeline: SignalPipeline, ids: str = "index", labels_csv: str | None = None,
                 id_column: str = "exam_id", rename_columns: Mapping[str, str] | None = None,
                 nan_policy: str = "error", n_samples: int | None = None):
        if n_samples is not None and n_samples != pipeline.n_samples:
            raise ValueError(f"dataset.n_samples: {n_samples}, but the signal steps produce "
                             f"{pipeline.n_samples} samples (preprocessing.n_samples)")
        self.name = name
        self.path = Path(path)
        self.split = split
        self.pipeline = pipeline
        self.ids = ids
        self.labels_csv = Path(labels_csv) if labels_csv else None
        self.id_column = id_column
        self.rename_columns = dict(rename_columns or {})
        self.nan_policy = nan_policy
        self.leads = list(pipeline.leads)
        self.scale = 1.0
        self.n_samples = pipeline.n_samples

    @property
    def label_files(self) -> list[Path]:
        return [self.labels_csv] if self.labels_csv else []

    def load(self, target_columns: Sequence[str], metadata_columns: Sequence[str] = (),
             target_builder: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
             binary_columns: Sequence[str] = (),
             ) -> tuple[pd.DataFrame, RecordReader]:
        """As ``HDF5Source.load``: the exam table (``exam_id``, ``file_index``, ``row``,
        ``record``, ``split``, header columns) and a reader; target and metadata values are
        checked as there (numbers, ``binary_columns`` 0/1), named by exam id."""
        root, names = list_records(self.path, key="dataset.path")
        table = self.exam_table(root, names)
        if target_builder is not None:
            table = target_builder(table)
        check_columns(table, [*target_columns, *metadata_columns],
                      self.labels_csv or f"the record headers under {self.path}")
        check_label_values(table, target_columns, metadata_columns, binary_columns,
                           self.labels_csv or self.path,
                           key="dataset.labels_csv" if self.labels_csv else "dataset.path",
                           csv_rows=False)
        table["split"] = self._split(table).to_numpy()
        needed = [*target_columns, *metadata_columns]
        usable = table[needed].notna().all(axis=1) & table.split.isin(SPLITS)
        if not usable.all():
            log.warning("%s: %d records without %s or outside the splits left out", self.name,
                        int((~usable).sum()), needed)
        table = table[usable].reset_index(drop=True)
        if table.empty:
            raise ValueError(f"dataset.path: no usable records under '{self.path}'")
        log.info("%s: %d records under %s", self.name, len(table), root)
        return table, RecordReader(root, names, self.pipeline)

    def exam_table(self, root: Path, names: Sequence[str]) -> pd.DataFrame:
        """The records ``names`` under ``root`` that have an exam id: ``exam_id``,
        ``file_index`` (the position in ``names``), ``row`` 0, their header columns (renamed
        by ``rename_columns``) and, with ``labels_csv``, its columns joined by exam id."""
        ids, rejected = exam_ids(names, self.ids)
        for position, reason in rejected.items():
            log.warning("%s: record %s left out: %s", self.name, names[position], reason)
        table = header_table(root, names).assign(exam_id=ids, file_index=np.arange(len(names)),
                                                 row=0)
        table = table.drop(index=list(rejected)).rename(columns=self.rename_columns)
        if self.labels_csv is not None:
            labels = read_label_table(self.labels_csv, self.id_column, (), self.rename_columns)
            table = table.merge(labels, on="exam_id", how="left", suffixes=("", "_csv"))
        return table.reset_index(drop=True)

    def _split(self, table: pd.DataFrame) -> pd.Series:
        """The split rule on ``table``; a random split without a group column groups the
        exams by the headers' ``patient_id`` when they carry one."""
        keywords = getattr(self.split, "keywords", None) or {}
        ungrouped = (getattr(self.split, "func", None) is random_split
                     and "group_column" in keywords and keywords["group_column"] is None)
        if not ungrouped:
            return self.split(table)
        patients = table["patient_id"] if "patient_id" in table.columns else None
        if patients is None or patients.isna().all():
            log.warning("%s: the record headers under %s carry no '# Patient ID:'; the exams "
                        "are split independently, so exams of one patient may fall into "
                        "different splits (set dataset.split.group_column to a column that "
                        "names the patient)", self.name, self.path)
            return self.split(table)
        missing = patients.isna()
        log.info("%s: split by patient: %d exams of %d patients (column patient_id, from "
                 "'# Patient ID:'; dataset.split.group_column=exam_id splits exams "
                 "independently)", self.name, len(table), patients[~missing].nunique())
        if not missing.any():
            return self.split(table, group_column="patient_id")
        log.warning("%s: %d of %d records have no '# Patient ID:'; each is split as a patient "
                    "of its own", self.name, int(missing.sum()), len(table))
        own = pd.Series([f"<no patient id: record {i}>" for i in table.index], index=table.index)
        groups = patients.astype(object).where(~missing, own)
        return self.split(table.assign(_patient_group=groups), group_column="_patient_group")
