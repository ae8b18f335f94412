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

from ecgexp.data.dataset import integer_ids
from ecgexp.data.label_maps import LabelMap
from ecgexp.data.labels import check_columns, check_label_values, read_label_table
from ecgexp.data.splits import SPLITS, random_split, with_task_strata
from ecgexp.errors import UserError
from ecgexp.signal.pipeline import RecordRejected, SignalPipeline
from ecgexp.signal.quality import (
    QUALITY_COLUMNS,
    Finding,
    QualityRules,
    apply_actions,
    content_hash,
    record_findings,
    shortest_samples,
)
from ecgexp.signal.readers import RecordError, read_record, read_wfdb_header, with_is_male
from ecgexp.signal.record_lists import exam_ids, list_records

log = logging.getLogger(__name__)


class RecordReader:
    """Reads one record per call and runs the signal steps: ``(n_samples, leads)`` float32."""

    def __init__(self, root: Path, names: Sequence[str], pipeline: SignalPipeline,
                 quality: QualityRules | None = None):
        self.root = root
        self.names = list(names)
        self.pipeline = pipeline
        self.quality = quality

    @property
    def files(self) -> list[Path]:
        """The record files (WFDB: the header), for messages and provenance."""
        paths = [self.root / name for name in self.names]
        return [p if p.suffix in (".xml", ".json") else p.with_name(p.name + ".hea")
                for p in paths]

    def read(self, file_index: int, row: int = 0) -> np.ndarray:
        """The record's tracing; with ``quality``, after its actions (a lead set to 0, a gap
        interpolated; :class:`RecordRejected` when one rejects it)."""
        record = read_record(self.root / self.names[file_index])
        signal = record.signal
        if self.quality is not None and self.quality.repairs:
            findings = record_findings(signal, record.leads, self.quality)
            signal, reason = apply_actions(signal, record.leads, findings, self.quality)
            if signal is None:
                raise RecordRejected(reason)
        return self.pipeline(signal, record.sampling_rate, record.leads)


def header_table(root: Path, names: Sequence[str]) -> pd.DataFrame:
    """One row per record: its header metadata (WFDB headers only are read; other formats are
    read whole), with ``sex`` also as ``is_male`` (``ecgexp.signal.readers.is_male``: 1, 0, or
    missing for a missing, unknown or other sex, with a warning for the others) and booleans as
    0/1. Missing values (``NaN``, ``Unknown``, ... in a header: None) are NaN."""
    rows = []
    for name in names:
        path = root / name
        try:
            metadata = (read_wfdb_header(path) if path.suffix not in (".xml", ".json")
                        else read_record(path).metadata)
        except RecordError as error:
            raise ValueError(f"dataset.path: {error}") from error
        rows.append({"record": name, **with_is_male(metadata)})
    table = pd.DataFrame(rows)
    if "sex" in table.columns:
        other = table["sex"].notna() & table["is_male"].isna()
        if other.any():
            log.warning("%d record(s) under %s with a sex that is neither male nor female "
                        "(%s): is_male is missing for them", int(other.sum()), root,
                        ", ".join(sorted(map(repr, table["sex"][other].unique()))[:5]))
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
        label_map: label columns from the headers' diagnosis codes (the ``labels`` group).
        quality: signal quality rules (the ``quality`` group): every record is read once at
            set-up; its findings go to ``quality_report``, records an action rejects are left
            out, and duplicates get a ``duplicate_of`` column the split keeps together.
    """

    def __init__(self, name: str, path: str, split: Callable[[pd.DataFrame], pd.Series],
                 pipeline: SignalPipeline, ids: str = "index", labels_csv: str | None = None,
                 id_column: str = "exam_id", rename_columns: Mapping[str, str] | None = None,
                 nan_policy: str = "error", n_samples: int | None = None,
                 label_map: LabelMap | None = None, quality: QualityRules | None = None):
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
        self.label_map = label_map
        self.quality = quality
        self.quality_report: pd.DataFrame | None = None
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
        root, names = self.records()
        table = self.exam_table(root, names)
        if self.quality is not None:
            table = self._screened(root, names, table)
        if target_builder is not None:
            table = target_builder(table)
        missing = [c for c in target_columns if c not in table.columns]
        if missing and self.label_map is None and "dx" in table.columns:
            raise UserError(f"task.objective: columns {', '.join(missing)} are not in the record "
                            f"headers under '{self.path}', which carry diagnosis codes "
                            f"(# Dx:); choose a label map: labels=snomed_code6 (the six CODE "
                            f"labels), labels=cinc2021_scored, or a YAML file of your own in "
                            f"the labels config group")
        check_columns(table, [*target_columns, *metadata_columns],
                      self.labels_csv or f"the record headers under {self.path}")
        check_label_values(table, target_columns, metadata_columns, binary_columns,
                           self.labels_csv or self.path,
                           key="dataset.labels_csv" if self.labels_csv else "dataset.path",
                           csv_rows=False)
        table["split"] = self._split(table, binary_columns).to_numpy()
        needed = [*target_columns, *metadata_columns]
        usable = table[needed].notna().all(axis=1) & table.split.isin(SPLITS)
        if not usable.all():
            log.warning("%s: %d records without %s or outside the splits left out", self.name,
                        int((~usable).sum()), needed)
        table = table[usable].reset_index(drop=True)
        if table.empty:
            raise ValueError(f"dataset.path: no usable records under '{self.path}'")
        log.info("%s: %d records under %s", self.name, len(table), root)
        return table, RecordReader(root, names, self.pipeline, self.quality)

    def _screened(self, root: Path, names: Sequence[str], table: pd.DataFrame) -> pd.DataFrame:
        """``table`` without the records the quality actions reject, with ``duplicate_of``
        (the exam id of a record's first byte-identical copy); the findings, one row per
        record and finding, in ``quality_report``."""
        rules, rows, first_of, rejected = self.quality, [], {}, []
        duplicate_of = pd.Series(None, index=table.index, dtype=object)
        target_rate, target_samples = self.pipeline.sampling_rate, self.pipeline.n_samples
        for position in table.index:
            exam_id, name = table.exam_id[position], names[table.file_index[position]]
            try:
                record = read_record(root / name)
            except RecordError:
                continue  # unreadable: reported when it is read (dataset.nan_policy)
            shortest = shortest_samples(target_samples, record.sampling_rate, target_rate)
            findings = record_findings(record.signal, record.leads, rules, shortest)
            digest = content_hash(record.signal)
            if digest in first_of:
                duplicate_of[position] = first_of[digest][0]
                findings.append(Finding("duplicate", "", 1, f"the same samples as record "
                                                            f"{first_of[digest][1]}"))
            else:
                first_of[digest] = (exam_id, name)
            _, reason = apply_actions(record.signal, record.leads, findings, rules)
            if reason:
                rejected.append(position)
            rows += [{"exam_id": exam_id, "record": name, "finding": f.kind, "lead": f.lead,
                      "count": f.count, "detail": f.detail, "action": rules.actions[f.kind]}
                     for f in findings]
        self.quality_report = pd.DataFrame(rows, columns=QUALITY_COLUMNS)
        _log_quality(self.name, self.quality_report, len(table), len(rejected))
        table = table.assign(duplicate_of=duplicate_of).drop(index=rejected)
        return table.reset_index(drop=True)

    def records(self) -> tuple[Path, list[str]]:
        """The root folder and the record names under ``path``: a folder, a ``RECORDS`` file
        or a single record (a ``.hea``, ``.xml`` or ``.json`` file, or a WFDB record path
        without its ``.hea``)."""
        return list_records(self.path, key="dataset.path")

    def exam_table(self, root: Path, names: Sequence[str]) -> pd.DataFrame:
        """The records ``names`` under ``root`` that have an exam id: ``exam_id``,
        ``file_index`` (the position in ``names``), ``row`` 0, their header columns (renamed
        by ``rename_columns``) and, with ``labels_csv``, its columns joined by exam id."""
        headers = header_table(root, names)
        ids, rejected = self._exam_ids(names, headers)
        for position, reason in rejected.items():
            log.warning("%s: record %s left out: %s", self.name, names[position], reason)
        table = headers.assign(exam_id=ids, file_index=np.arange(len(names)), row=0)
        table = table.drop(index=list(rejected)).rename(columns=self.rename_columns)
        if self.label_map is not None:
            table = self.label_map.apply(table, f"'{self.path}'")
        if self.labels_csv is not None:
            labels = read_label_table(self.labels_csv, self.id_column, (), self.rename_columns)
            labels["exam_id"] = self._csv_ids(labels.exam_id, table.exam_id)
            table = table.merge(labels, on="exam_id", how="left", suffixes=("", "_csv"))
        table = table.reset_index(drop=True)
        table.attrs["left_out"] = {int(p): (ids[p], reason) for p, reason in rejected.items()}
        return table

    def _exam_ids(self, names: Sequence[str], headers: pd.DataFrame
                  ) -> tuple[np.ndarray, dict[int, str]]:
        """The records' exam ids by ``ids``: ``header`` takes ``# Exam ID:`` when every header
        has one, else the record names (as ``name``)."""
        if self.ids != "header":
            return exam_ids(names, self.ids)
        if "exam_id" not in headers.columns or headers.exam_id.isna().any():
            log.info("%s: not every header under %s has '# Exam ID:'; the record names are the "
                     "exam ids (dataset.ids=header)", self.name, self.path)
            return exam_ids(names, "name")
        ids = integer_ids(headers.exam_id)
        first = pd.Series(names).groupby(ids).transform("first")
        rejected = {i: f"duplicate exam_id {ids[i]} (# Exam ID:, also {first[i]})"
                    for i in np.flatnonzero(pd.Series(ids).duplicated().to_numpy())}
        return ids, rejected

    def _csv_ids(self, csv_ids: pd.Series, record_ids: pd.Series) -> pd.Series:
        """The label CSV's ids in the records' kind: names as text; integer exam ids as
        integers, refused with the first value that is not one."""
        if not pd.api.types.is_integer_dtype(record_ids):
            return csv_ids.astype(str)
        numbers = pd.to_numeric(csv_ids, errors="coerce")
        bad = numbers.isna() | (numbers != numbers.round())
        if bad.any():
            position = int(np.argmax(bad.to_numpy()))
            raise UserError(
                f"dataset.labels_csv: row {position + 2} of '{self.labels_csv}' has "
                f"{self.id_column} {csv_ids.iloc[position]!r}, but the records' exam ids are "
                f"integers (dataset.ids={self.ids}); set dataset.ids=name to join on record "
                f"names, or dataset.id_column to the CSV's column of exam ids")
        return numbers.astype(np.int64)

    def _split(self, table: pd.DataFrame, labels: Sequence[str]) -> pd.Series:
        """The split rule on ``table`` (stratified by ``labels``, the task's 0/1 targets, where
        it says ``stratify: true``); a random split without a group column groups the
        exams by the headers' ``patient_id`` when they carry one, and keeps duplicate
        records (``duplicate_of``) with the exams of their first copy."""
        keywords = getattr(self.split, "keywords", None) or {}
        ungrouped = (getattr(self.split, "func", None) is random_split
                     and "group_column" in keywords and keywords["group_column"] is None)
        rule = with_task_strata(self.split, labels)
        if not ungrouped:
            return rule(table)
        own = pd.Series([f"<record {i}>" for i in table.index], index=table.index)
        patients = table["patient_id"] if "patient_id" in table.columns else None
        if patients is None or patients.isna().all():
            log.warning("%s: the record headers under %s carry no '# Patient ID:'; the exams "
                        "are split independently, so exams of one patient may fall into "
                        "different splits (set dataset.split.group_column to a column that "
                        "names the patient)", self.name, self.path)
            groups = own
        else:
            missing = patients.isna()
            log.info("%s: split by patient: %d exams of %d patients (column patient_id, from "
                     "'# Patient ID:'; dataset.split.group_column=exam_id splits exams "
                     "independently)", self.name, len(table), patients[~missing].nunique())
            if missing.any():
                log.warning("%s: %d of %d records have no '# Patient ID:'; each is split as a "
                            "patient of its own", self.name, int(missing.sum()), len(table))
            groups = patients.astype(object).where(~missing, own)
        if "duplicate_of" in table.columns and table.duplicate_of.notna().any():
            groups = _with_duplicates(groups, table)
        return rule(table.assign(_split_group=groups), group_column="_split_group")


def _with_duplicates(groups: pd.Series, table: pd.DataFrame) -> pd.Series:
    """``groups`` with each duplicate record's group merged into its first copy's (and so
    every exam of either patient), so that no duplicate falls on both sides of a split."""
    parent = {group: group for group in groups.unique()}

    def root(group):
        while parent[group] != group:
            parent[group] = parent[parent[group]]
            group = parent[group]
        return group

    group_of = dict(zip(table.exam_id, groups))
    for original in table.duplicate_of[table.duplicate_of.notna()].index:
        first = group_of.get(table.duplicate_of[original])
        if first is not None:
            parent[root(groups[original])] = root(first)
    return groups.map(root)


def _log_quality(name: str, report: pd.DataFrame, n_records: int, n_rejected: int) -> None:
    """One summary line: the records with each finding, and how many were left out."""
    if report.empty:
        log.info("%s: quality: no findings in %d records", name, n_records)
        return
    counts = report.groupby("finding", sort=False).record.nunique()
    found = ", ".join(f"{kind} {count}" for kind, count in counts.items())
    level = logging.INFO if set(counts.index) == {"short_record"} else logging.WARNING
    log.log(level, "%s: quality of %d records: %s (records per finding); %d left out by "
            "quality.actions; the findings are in the run folder's quality table", name,
            n_records, found, n_rejected)
