"""Label tables (CSV) and their join with the tracing index."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

JOIN_RULES = ("exam_id", "row_order")
MISSING_EXAM_POLICIES = ("error", "drop")


def read_label_table(path: str | Path, id_column: str | None, required_columns: Sequence[str],
                     rename_columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Reads a label CSV; renames columns; checks that the required columns exist.

    With ``id_column`` the table gets an ``exam_id`` column from it; without one (row-order
    datasets such as CODE-test) the table is returned as is.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset.labels_csv: no label file at '{path}' "
                                f"(working directory {Path.cwd()})")
    table = pd.read_csv(path).rename(columns=dict(rename_columns or {}))
    if id_column is not None:
        if id_column not in table.columns:
            raise KeyError(f"dataset.id_column: column '{id_column}' not in {path} "
                           f"(columns: {', '.join(map(str, table.columns))})")
        table = table.rename(columns={id_column: "exam_id"})
    check_columns(table, required_columns, path)
    return table


def check_columns(table: pd.DataFrame, required_columns: Sequence[str], path: str | Path) -> None:
    """Raises a ``KeyError`` naming the task keys when a column the task needs is missing."""
    missing = [c for c in required_columns if c not in table.columns]
    if missing:
        raise KeyError(
            f"task.target_columns / task.metadata_columns: column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} not in {path} "
            f"(columns: {', '.join(map(str, table.columns))}); "
            f"map CSV names with dataset.rename_columns"
        )


def join_labels(index: pd.DataFrame, labels: pd.DataFrame, join: str, labels_path: str | Path,
                missing_exams: str = "error") -> pd.DataFrame:
    """Attaches labels to the tracing index; returns one row per labelled exam, in index order.

    ``join="exam_id"`` joins on ``exam_id``; labels whose exam is not in the tracings raise
    (``missing_exams="error"``) or are dropped with a warning (``"drop"``).
    ``join="row_order"`` pairs label row i with tracing i and requires equal lengths; the exam
    id is then the label table's id column if it has one, else the tracing row number.
    """
    if join not in JOIN_RULES:
        raise ValueError(f"dataset.join: '{join}' is not one of {JOIN_RULES}")
    if missing_exams not in MISSING_EXAM_POLICIES:
        raise ValueError(f"dataset.missing_exams: '{missing_exams}' is not one of "
                         f"{MISSING_EXAM_POLICIES}")
    if "exam_id" in labels.columns:
        duplicated = labels.exam_id.duplicated()
        if duplicated.any():
            example = labels.exam_id[duplicated].iloc[0]
            raise ValueError(f"dataset.labels_csv: {int(duplicated.sum())} exam_ids occur more "
                             f"than once in {labels_path} (e.g. {example})")
    if join == "row_order":
        if len(labels) != len(index):
            raise ValueError(
                f"dataset.join=row_order: {labels_path} has {len(labels)} rows but the tracings "
                f"have {len(index)}; row-order labels must match the tracings one to one"
            )
        index, labels = index.reset_index(drop=True), labels.reset_index(drop=True)
        if "exam_id" in labels.columns:  # ids come from the label table (SaMi-Trop)
            index = index.drop(columns="exam_id")
        return pd.concat([index, labels], axis=1)

    unmatched = ~labels.exam_id.isin(index.exam_id)
    if unmatched.any():
        message = (f"{int(unmatched.sum())} of {len(labels)} exam_ids in {labels_path} are not in "
                   f"the tracings (e.g. {labels.exam_id[unmatched].iloc[0]})")
        if missing_exams == "error":
            raise ValueError(f"dataset.tracing_files / dataset.labels_csv: {message}; check that "
                             f"all tracing files are listed, or set dataset.missing_exams=drop")
        log.warning("%s; dropped (dataset.missing_exams=drop)", message)
    return index.merge(labels, on="exam_id", how="inner", sort=False)
