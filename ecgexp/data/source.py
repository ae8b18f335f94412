"""An exam source: HDF5 tracings plus a label CSV, as described by one ``dataset`` config."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from ecgexp.data.hdf5 import TracingReader, index_tracings, resolve_tracing_files
from ecgexp.data.labels import check_columns, join_labels, read_label_table
from ecgexp.data.splits import SPLITS
from ecgexp.signal.leads import CANONICAL_LEADS

log = logging.getLogger(__name__)

NAN_POLICIES = ("error", "skip")


class HDF5Source:
    """HDF5 tracings ``(N, n_samples, leads)`` joined with a label table.

    Args:
        name: dataset name, used in messages and run folders.
        tracing_files: an HDF5 path, a glob (``exams_part*.hdf5``) or a list of them.
        labels_csv: the label table.
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
        nan_policy: ``error`` (stop at the first NaN/Inf tracing) or ``skip`` it.
        rename_columns: CSV column name -> name used by the task.
        split: a split rule (see ``ecgexp.data.splits``), called with the exam table.
        extra_labels_csv: more label tables keyed by the same ``id_column`` (e.g. the
            PhysioNet 2025 ``code15_chagas_labels.csv``), left-joined to ``labels_csv``.
        constant_columns: columns with one value for every exam (SaMi-Trop: ``{chagas: 1}``).
    """

    def __init__(self, name: str, tracing_files: str | Sequence[str], labels_csv: str,
                 split: Callable[[pd.DataFrame], pd.Series], tracings_dataset: str = "tracings",
                 exam_id_dataset: str | None = "exam_id", id_column: str | None = "exam_id",
                 join: str = "exam_id", leads: Sequence[str] = CANONICAL_LEADS,
                 scale: float = 1.0, sampling_rate: float = 400, n_samples: int = 4096,
                 drop_padding_rows: bool = True, missing_exams: str = "error",
                 nan_policy: str = "error", rename_columns: Mapping[str, str] | None = None,
                 extra_labels_csv: Sequence[str] = (),
                 constant_columns: Mapping[str, object] | None = None):
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"dataset.nan_policy: '{nan_policy}' is not one of {NAN_POLICIES}")
        if join == "exam_id" and id_column is None:
            raise ValueError("dataset.id_column: join=exam_id needs the label column holding "
                             "the exam id")
        self.name = name
        self.tracing_files = tracing_files
        self.labels_csv = Path(labels_csv)
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
        return [self.labels_csv, *self.extra_labels_csv]

    def read_labels(self, required_columns: Sequence[str]) -> pd.DataFrame:
        """The label table with the extra tables joined and the constant columns added."""
        labels = read_label_table(self.labels_csv, self.id_column, (), self.rename_columns)
        for path in self.extra_labels_csv:
            extra = read_label_table(path, self.id_column, (), self.rename_columns)
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
        check_columns(labels, required_columns, self.labels_csv)
        return labels

    def load(self, target_columns: Sequence[str], metadata_columns: Sequence[str] = (),
             target_builder: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
             ) -> tuple[pd.DataFrame, TracingReader]:
        """Returns the exam table and a reader.

        The table has one row per usable exam, in tracing order, with ``exam_id``,
        ``file_index``, ``row``, ``split`` and the label columns. ``target_builder`` (a task's
        derived targets, e.g. the AF-risk classes) runs on the joined table before the split.
        Exams with a missing target or input column (``metadata_columns``, e.g. age and sex fed
        to the network) or outside the three splits are left out, with a log line.
        """
        files = resolve_tracing_files(self.tracing_files)
        index = index_tracings(files, self.tracings_dataset, self.exam_id_dataset,
                               self.n_samples, len(self.leads), self.drop_padding_rows)
        required = [*target_columns, *metadata_columns] if target_builder is None else []
        labels = self.read_labels(required)
        table = join_labels(index, labels, self.join, self.labels_csv, self.missing_exams)
        if target_builder is not None:
            table = target_builder(table)
            check_columns(table, [*target_columns, *metadata_columns], self.labels_csv)
        table["split"] = self.split(table).to_numpy()
        needed = [*target_columns, *metadata_columns]
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
            for attribute in ("leads", "scale", "n_samples", "nan_policy"):
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

    @property
    def label_files(self) -> list[Path]:
        return [path for source in self.sources.values() for path in source.label_files]

    def load(self, target_columns: Sequence[str], metadata_columns: Sequence[str] = (),
             target_builder: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
             ) -> tuple[pd.DataFrame, TracingReader]:
        """As ``HDF5Source.load``, over all sources, with a ``source`` column."""
        tables, files, datasets = [], [], []
        for key, source in self.sources.items():
            table, reader = source.load(target_columns, metadata_columns, target_builder)
            tables.append(table.assign(source=key, file_index=table.file_index + len(files)))
            files += reader.files
            datasets += reader.tracings_datasets
        table = pd.concat(tables, ignore_index=True)
        duplicated = table.exam_id.duplicated()
        if duplicated.any():
            raise ValueError(f"dataset.sources: {int(duplicated.sum())} exam_ids occur in more "
                             f"than one source (e.g. {table.exam_id[duplicated].iloc[0]})")
        return table, TracingReader(files, datasets)
