"""An exam source: HDF5 tracings plus a label CSV, as described by one ``dataset`` config."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgexp.data.hdf5 import (
    OUTLIER_FACTOR,
    FileScan,
    TracingReader,
    index_tracings,
    resolve_tracing_files,
    scan_tracings,
)
from ecgexp.data.labels import check_columns, check_label_values, join_labels, read_label_table
from ecgexp.data.splits import SPLITS, with_task_strata
from ecgexp.errors import UserError
from ecgexp.signal.leads import CANONICAL_LEADS

log = logging.getLogger(__name__)

NAN_POLICIES = ("error", "skip")
# The range, in mV, of a file's typical amplitude: the median over its exams of each exam's
# median per-lead peak-to-peak (bounds included). Real CODE-15% exams (no baseline removal)
# give 0.8-50 mV per exam and 2.3 mV per file, the bundled synthetic data 1.2 mV; the same
# data in uV (x 1000) or V (x 0.001) falls far outside, a 10x gain error only beyond ~13x.
AMPLITUDE_RANGE_MV = (0.1, 30.0)
TYPICAL_AMPLITUDE_MV = 2.0
SHOWN_EXAMS = 5  # bad exams named in a message


class HDF5Source:
    """HDF5 tracings ``(N, n_samples, leads)`` joined with a label table.

    Args:
        name: dataset name, used in messages and run folders.
        tracing_files: an HDF5 path, a glob (``exams_part*.hdf5``) or a list of them.
        labels_csv: the label table (``null``: none, for prediction only).
        tracings_dataset: HDF5 dataset holding the tracings.
        exam_id_dataset: HDF5 dataset holding the exam ids; ``null`` means row numbers.
        id_column: label column holding the exam id; may be ``null`` for row-order labels.
        join: ``exam_id`` or ``row_order`` (CODE-test annotations).
        leads: the lead order stored in the files.
        scale: factor applied to the stored amplitudes.
        sampling_rate: Hz.
        n_samples: samples per tracing.
        drop_padding_rows: drop rows whose exam id is 0 (CODE-15% part padding).
        missing_exams: ``error`` or ``drop`` labelled exams that are not in the tracings.
        nan_policy: exams with NaN/Inf samples, unreadable rows or all-zero tracings (found
            by the set-up scan, :func:`screen_tracings`): ``error`` stops naming them,
            ``skip`` leaves them out.
        amplitude_range: ``[low, high]`` mV that each file's typical amplitude (the median
            over its exams of their median per-lead peak-to-peak, after ``scale``) must lie
            in, else the units look wrong (uV, V, ADC counts); ``None`` turns the check off.
        rename_columns: CSV column name -> name used by the task.
        split: a split rule (see ``ecgexp.data.splits``), called with the exam table.
        extra_labels_csv: more label tables keyed by the same ``id_column`` (e.g. the
            PhysioNet 2025 ``code15_chagas_labels.csv``), left-joined to ``labels_csv``.
        constant_columns: columns with one value for every exam (SaMi-Trop: ``{chagas: 1}``).
    """

    def __init__(self, name: str, tracing_files: str | Sequence[str], labels_csv: str | None,
                 split: Callable[[pd.DataFrame], pd.Series], tracings_dataset: str = "tracings",
                 exam_id_dataset: str | None = "exam_id", id_column: str | None = "exam_id",
                 join: str = "exam_id", leads: Sequence[str] = CANONICAL_LEADS,
                 scale: float = 1.0, sampling_rate: float = 400, n_samples: int = 4096,
                 drop_padding_rows: bool = True, missing_exams: str = "error",
                 nan_policy: str = "error", rename_columns: Mapping[str, str] | None = None,
                 extra_labels_csv: Sequence[str] = (),
                 constant_columns: Mapping[str, object] | None = None,
                 amplitude_range: Sequence[float] | None = AMPLITUDE_RANGE_MV):
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"dataset.nan_policy: '{nan_policy}' is not one of {NAN_POLICIES}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise UserError(f"dataset.scale: {scale!r} is not a number > 0 (the factor from "
                            f"the stored values to mV, e.g. 0.001 for uV or 1000 counts/mV)")
        self.amplitude_range = _amplitude_range(amplitude_range)
        if join == "exam_id" and id_column is None:
            raise ValueError("dataset.id_column: join=exam_id needs the label column holding "
                             "the exam id")
        self.name = name
        self.tracing_files = tracing_files
        self.labels_csv = Path(labels_csv) if labels_csv is not None else None
        self.split = split
        self.tracings_dataset = tracings_dataset
        self.exam_id_dataset = exam_id_dataset
        self.id_column = id_column
        self.join = join
        self.leads = list(leads)
        self.scale = scale
        self.sampling_rate = sampling_rate
        self.n_samples = n_samples
        self.drop_padding_rows = drop_padding_rows
        self.missing_exams = missing_exams
        self.nan_policy = nan_policy
        self.rename_columns = dict(rename_columns or {})
        self.extra_labels_csv = [Path(p) for p in extra_labels_csv]
        self.constant_columns = dict(constant_columns or {})
        if self.extra_labels_csv and id_column is None:
            raise ValueError("dataset.extra_labels_csv: extra label tables are joined on the "
                             "exam id; set dataset.id_column")

    @property
    def label_files(self) -> list[Path]:
        return [p for p in (self.labels_csv, *self.extra_labels_csv) if p is not None]

    def read_labels(self, required_columns: Sequence[str], target_columns: Sequence[str] = (),
                    metadata_columns: Sequence[str] = (), binary_columns: Sequence[str] = (),
                    ) -> pd.DataFrame:
        """The label table with the extra tables joined and the constant columns added; the
        target and metadata columns are checked in each file (numbers; ``binary_columns``
        0/1)."""
        checks = dict(target_columns=target_columns, metadata_columns=metadata_columns,
                      binary_columns=binary_columns)
        labels = read_label_table(self.labels_csv, self.id_column, (), self.rename_columns,
                                  **checks)
        for path in self.extra_labels_csv:
            extra = read_label_table(path, self.id_column, (), self.rename_columns,
                                     key="dataset.extra_labels_csv", **checks)
            shared = sorted(set(extra.columns) & set(labels.columns) - {"exam_id"})
            if shared:
                raise ValueError(f"dataset.extra_labels_csv: columns {shared} of {path} are "
                                 f"already in {self.labels_csv}; rename one of them")
            labels = labels.merge(extra, on="exam_id", how="left", validate="one_to_one")
        for column, value in self.constant_columns.items():
            if column in labels.columns:
                raise ValueError(f"dataset.constant_columns: '{column}' is already a column of "
                                 f"{self.labels_csv}")
            labels[column] = value
        constants = list(self.constant_columns)
        check_label_values(labels[constants].iloc[:1], [c for c in target_columns
                                                        if c in constants],
                           [c for c in metadata_columns if c in constants], binary_columns,
                           "dataset.constant_columns", key="dataset.constant_columns",
                           csv_rows=False)
        check_columns(labels, required_columns, self.labels_csv)
        return labels

    def load(self, target_columns: Sequence[str], metadata_columns: Sequence[str] = (),
             target_builder: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
             binary_columns: Sequence[str] = (),
             ) -> tuple[pd.DataFrame, TracingReader]:
        """Returns the exam table and a reader.

        The table has one row per usable exam, in tracing order, with ``exam_id``,
        ``file_index``, ``row``, ``split`` and the label columns. ``target_builder`` (a task's
        derived targets, e.g. the AF-risk classes) runs on the joined table before the split.
        Exams with a missing target or input column (``metadata_columns``, e.g. age and sex fed
        to the network) or outside the three splits are left out, with a log line. Target and
        metadata values must be numbers, those of ``binary_columns`` 0/1 (a bad one is named
        by file, column and row). The samples are not read here: see :func:`screen_tracings`.
        """
        if self.labels_csv is None:
            raise UserError(f"dataset.labels_csv: '{self.name}' names no label table; training "
                            f"and evaluation need one (ecgexp-predict scores exams without)")
        files = resolve_tracing_files(self.tracing_files)
        index = index_tracings(files, self.tracings_dataset, self.exam_id_dataset,
                               self.n_samples, len(self.leads), self.drop_padding_rows,
                               self.scale)
        needed = [*target_columns, *metadata_columns]
        if target_builder is None:
            labels = self.read_labels(needed, target_columns, metadata_columns, binary_columns)
        else:  # the builder derives the targets from other columns: checked once built
            labels = self.read_labels([])
        table = join_labels(index, labels, self.join, self.labels_csv, self.missing_exams)
        if target_builder is not None:
            table = target_builder(table)
            check_columns(table, needed, self.labels_csv)
            check_label_values(table, target_columns, metadata_columns, binary_columns,
                               self.labels_csv, csv_rows=False)
        table["split"] = with_task_strata(self.split, binary_columns)(table).to_numpy()
        unlabelled = table[needed].isna().any(axis=1)
        if unlabelled.any():
            log.warning("%s: %d exams without a value in %s left out", self.name,
                        int(unlabelled.sum()), needed)
        outside = ~table.split.isin(SPLITS)
        if outside.any():
            log.info("%s: %d exams outside the train/val/test splits left out", self.name,
                     int(outside.sum()))
        table = table[~unlabelled & ~outside].reset_index(drop=True)
        if table.empty:
            raise ValueError(f"dataset: no labelled exams left in '{self.name}' after joining "
                             f"{self.labels_csv} with the tracings")
        return table, TracingReader(files, [self.tracings_dataset] * len(files))


class CombinedSource:
    """Several exam sources trained on as one (the Chagas study's SaMi-Trop + CODE).

    Each source keeps its own files, labels and split rule; the exam table gains a ``source``
    column (the source's key) that samplers can mix on. The sources must agree on the stored
    lead order, amplitude scale, length and NaN policy, and their exam ids must be distinct.

    Args:
        name: dataset name.
        sources: key -> ``HDF5Source``.
        n_samples: samples per tracing (checked against every source).
        split: when set, replaces every source's split rule (the ``split`` group).
    """

    def __init__(self, name: str, sources: Mapping[str, HDF5Source], n_samples: int = 4096,
                 split: Callable[[pd.DataFrame], pd.Series] | None = None):
        if not sources:
            raise ValueError("dataset.sources: at least one source is needed")
        self.name = name
        self.sources = dict(sources)
        first = next(iter(self.sources.values()))
        for key, source in self.sources.items():
            for attribute in ("leads", "scale", "n_samples", "nan_policy", "amplitude_range"):
                if getattr(source, attribute) != getattr(first, attribute):
                    raise ValueError(
                        f"dataset.sources.{key}.{attribute}: {getattr(source, attribute)!r} "
                        f"differs from {getattr(first, attribute)!r} of the first source; "
                        f"combined sources must share it")
            if split is not None:
                source.split = split
        if first.n_samples != n_samples:
            raise ValueError(f"dataset.n_samples: {n_samples}, but the sources hold "
                             f"{first.n_samples} samples")
        self.leads, self.scale = first.leads, first.scale
        self.n_samples, self.nan_policy = first.n_samples, first.nan_policy
        self.amplitude_range = first.amplitude_range

    @property
    def label_files(self) -> list[Path]:
        return [path for source in self.sources.values() for path in source.label_files]

    def load(self, target_columns: Sequence[str], metadata_columns: Sequence[str] = (),
             target_builder: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
             binary_columns: Sequence[str] = (),
             ) -> tuple[pd.DataFrame, TracingReader]:
        """As ``HDF5Source.load``, over all sources, with a ``source`` column."""
        tables, files, datasets = [], [], []
        for key, source in self.sources.items():
            table, reader = source.load(target_columns, metadata_columns, target_builder,
                                        binary_columns)
            tables.append(table.assign(source=key, file_index=table.file_index + len(files)))
            files += reader.files
            datasets += reader.tracings_datasets
        table = pd.concat(tables, ignore_index=True)
        duplicated = table.exam_id.duplicated()
        if duplicated.any():
            raise ValueError(f"dataset.sources: {int(duplicated.sum())} exam_ids occur in more "
                             f"than one source (e.g. {table.exam_id[duplicated].iloc[0]})")
        return table, TracingReader(files, datasets)


def _amplitude_range(amplitude_range) -> tuple[float, float] | None:
    if amplitude_range is None:
        return None
    try:
        low, high = (float(v) for v in amplitude_range)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not 0 <= low < high:
        raise UserError(f"dataset.amplitude_range: {amplitude_range!r} is not [low, high] mV "
                        f"with 0 <= low < high (null turns the amplitude check off)")
    return low, high


UNUSABLE = {"unreadable": "unreadable", "nonfinite": "NaN/Inf samples", "zero": "all zero",
            "outlier": f"amplitude over {OUTLIER_FACTOR:g}x the file's typical"}


def screen_tracings(table: pd.DataFrame, reader: TracingReader, scale: float = 1.0,
                    nan_policy: str = "error",
                    amplitude_range: Sequence[float] | None = AMPLITUDE_RANGE_MV,
                    name: str = "dataset") -> pd.DataFrame:
    """Reads every exam of ``table`` once (:func:`~ecgexp.data.hdf5.scan_tracings`, cached)
    and returns the table of the usable ones (index reset).

    Exams that cannot be read (a corrupt chunk), hold NaN/Inf samples, are all zero or have an
    amplitude over ``OUTLIER_FACTOR`` times their file's typical one stop
    the run with one line naming the first of them (``nan_policy="error"``) or are left out
    with one log line (``"skip"``). A file whose typical amplitude times ``scale`` lies
    outside ``amplitude_range`` (mV) is refused: its units look wrong.
    """
    scans = scan_tracings(reader, table)
    _check_amplitudes(scans.values(), scale, amplitude_range)
    problems = np.full(len(table), None, dtype=object)
    file_index, rows = table.file_index.to_numpy(), table.row.to_numpy()
    for index, scan in scans.items():
        in_file = file_index == index
        for kind, bad_rows in (("zero", scan.zero), ("nonfinite", scan.nonfinite),
                               ("unreadable", list(scan.unreadable)),
                               ("outlier", scan.outlier)):
            problems[in_file & np.isin(rows, bad_rows)] = kind
    bad = pd.notna(problems)
    if not bad.any():
        return table
    counts = pd.Series(problems[bad]).value_counts()
    unreadable = problems == "unreadable"
    reasons = dict.fromkeys(scans[int(index)].unreadable[int(row)]
                            for index, row in zip(file_index[unreadable], rows[unreadable]))
    details = {"unreadable": f" ({' / '.join(reasons)})"} if reasons else {}
    summary = ", ".join(f"{UNUSABLE[kind]}: {counts[kind]}{details.get(kind, '')}"
                        for kind in UNUSABLE if kind in counts)
    if nan_policy == "error":
        exams: list[tuple[int, str]] = []  # (file index, exam), named by file below
        for position in np.flatnonzero(bad)[:SHOWN_EXAMS]:
            what = f"row {rows[position]}, {UNUSABLE[problems[position]]}"
            exams.append((int(file_index[position]),
                          f"exam_id {table.exam_id.iloc[position]} ({what})"))
        shown = ", ".join(", ".join(exam for _, exam in group) + f" of '{reader.files[index]}'"
                          for index, group in itertools.groupby(exams, key=lambda e: e[0]))
        more = ", ..." if bad.sum() > SHOWN_EXAMS else ""
        raise UserError(
            f"dataset.tracing_files: {int(bad.sum())} of {len(table)} exams of '{name}' cannot "
            f"be used ({summary}): {shown}{more}; fix or replace the files, or set "
            f"dataset.nan_policy=skip to leave such exams out")
    if bad.all():
        raise UserError(f"dataset.tracing_files: none of the {len(table)} exams of '{name}' "
                        f"can be used ({summary}); fix or replace the files")
    ids = table.exam_id[bad].tolist()
    log.warning("%s: %d of %d exams left out (dataset.nan_policy=skip): %s; exam_ids %s%s",
                name, int(bad.sum()), len(table), summary,
                ", ".join(map(str, ids[:20])), ", ..." if len(ids) > 20 else "")
    return table[~bad].reset_index(drop=True)


def _check_amplitudes(scans: Iterable[FileScan], scale: float,
                      amplitude_range: Sequence[float] | None) -> None:
    if amplitude_range is None:
        return
    low, high = amplitude_range
    for scan in scans:
        if scan.amplitude is None:
            continue
        amplitude = scan.amplitude * scale
        if low <= amplitude <= high:
            continue
        if amplitude == 0:
            raise UserError(
                f"dataset.tracing_files: tracings in '{scan.path}' are flat: their samples do "
                f"not change over time (typical peak-to-peak amplitude 0, expected {low:g}-"
                f"{high:g} mV); check the file (dataset.amplitude_range=null turns this check "
                f"off)")
        factor = 10.0 ** round(np.log10(amplitude / TYPICAL_AMPLITUDE_MV))
        units = {1e3: "µV (or ADC counts at 1000 per mV)", 1e-3: "V"}.get(factor, "other units")
        suggestion = (f"set dataset.scale={scale / factor:g} or convert the file to mV"
                      if factor != 1 else "check the file")
        raise UserError(
            f"dataset.scale: tracings in '{scan.path}' look like {units}, not mV: their typical "
            f"peak-to-peak amplitude is {amplitude:.3g} with dataset.scale={scale:g}, expected "
            f"{low:g}-{high:g} mV; {suggestion} (dataset.amplitude_range=null turns this check "
            f"off)")
