"""Label tables (CSV) and their join with the tracing index."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgexp.errors import UserError
from ecgexp.signal.readers import MISSING_VALUES

log = logging.getLogger(__name__)

JOIN_RULES = ("exam_id", "row_order")
MISSING_EXAM_POLICIES = ("error", "drop")


# The header words for "no value" (ecgexp.signal.readers.MISSING_VALUES), as CSV cells.
CSV_MISSING = sorted({form for word in MISSING_VALUES if word
                      for form in (word, word.upper(), word.title())})


def read_csv_table(path: str | Path, key: str, expected: str) -> pd.DataFrame:
    """``path`` read as a CSV with at least one row. A missing, empty or unreadable file, or
    one with a header but no rows, is one line naming ``key``, the file and ``expected`` (what
    the file should hold, or what to do)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{key}: no file '{path}' (working directory {Path.cwd()}); {expected}")
    try:
        table = pd.read_csv(path, dtype={"record": str},  # record names stay names ("00012")
                            na_values=CSV_MISSING)
    except pd.errors.EmptyDataError as error:
        raise UserError(f"{key}: '{path}' is empty (no header line, no rows); {expected}") \
            from error
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as error:
        reason = " ".join(str(error).split()).removeprefix("Error tokenizing data. C error: ")
        raise UserError(f"{key}: '{path}' is not a readable CSV table ({reason}); "
                        f"{expected}") from error
    if table.empty:
        raise UserError(f"{key}: '{path}' has a header ({', '.join(map(str, table.columns))}) "
                        f"but no rows; {expected}")
    return table


def read_label_table(path: str | Path, id_column: str | None, required_columns: Sequence[str],
                     rename_columns: Mapping[str, str] | None = None,
                     key: str = "dataset.labels_csv", target_columns: Sequence[str] = (),
                     metadata_columns: Sequence[str] = (),
                     binary_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Reads a label CSV; renames columns; checks that the required columns exist and that
    those of ``target_columns`` / ``metadata_columns`` it holds are numeric (``binary_columns``
    0/1), see :func:`check_label_values`.

    With ``id_column`` the table gets an ``exam_id`` column from it; without one (row-order
    datasets such as CODE-test) the table is returned as is. ``key`` is the config key that
    names the file in messages.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: no label file at '{path}' "
                                f"(working directory {Path.cwd()})")
    table = read_csv_table(path, key, f"point {key} at the label table")
    table = table.rename(columns=dict(rename_columns or {}))
    if id_column is not None:
        if id_column not in table.columns:
            raise KeyError(f"dataset.id_column: column '{id_column}' not in {path} "
                           f"(columns: {', '.join(map(str, table.columns))})")
        table = table.rename(columns={id_column: "exam_id"})
    check_columns(table, required_columns, path)
    check_label_values(table, target_columns, metadata_columns, binary_columns, path, key)
    return table


def _numeric(values: pd.Series) -> pd.Series:
    """``values`` as numbers (``True``/``False`` as 1/0); NaN where a value is not a number."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype(np.float64)
    as_numbers = values.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v)
    return pd.to_numeric(as_numbers, errors="coerce")


def _where(table: pd.DataFrame, position: int, csv_rows: bool) -> str:
    exam = (f"exam_id {table.exam_id.iloc[position]}" if "exam_id" in table.columns else None)
    if not csv_rows:
        return exam or "every exam"  # a constant column
    return f"row {position + 1}" + (f" ({exam})" if exam else "")


def _examples(values: pd.Series) -> str:
    return ", ".join(repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float)
                     else str(v) for v in values.drop_duplicates().iloc[:3])


def check_label_values(table: pd.DataFrame, target_columns: Sequence[str],
                       metadata_columns: Sequence[str], binary_columns: Sequence[str],
                       path: str | Path, key: str = "dataset.labels_csv",
                       csv_rows: bool = True) -> None:
    """The columns of ``target_columns`` and ``metadata_columns`` that ``table`` holds must be
    finite numbers (``True``/``False`` count as 1/0; empty cells are missing values, left out
    later), and those of ``binary_columns`` 0 or 1. A bad value is named by its column, its row
    (data rows counted from 1 below the header when ``csv_rows``, else its exam id) and the
    file."""
    binary = set(binary_columns)
    for column in dict.fromkeys([*target_columns, *metadata_columns]):
        if column not in table.columns:
            continue
        task_key = ("task.objective (target columns)" if column in target_columns
                    else "task.metadata_columns")
        values = table[column]
        numbers = _numeric(values)
        present = values.notna().to_numpy()
        wrong = present & ~np.isfinite(numbers.to_numpy(np.float64))  # text, inf
        if wrong.any():
            first = int(np.flatnonzero(wrong)[0])
            raise UserError(
                f"{task_key}: column '{column}' of '{path}' is not numeric: "
                f"{_where(table, first, csv_rows)} holds {_examples(values.iloc[[first]])} "
                f"({int(wrong.sum())} such values: {_examples(values[wrong])}); labels must be "
                f"numbers (binary ones 0/1 or True/False): fix the file ({key}) or choose "
                f"another column in {task_key}")
        if column in binary:
            outside = present & ~numbers.isin((0.0, 1.0)).to_numpy()
            if outside.any():
                first = int(np.flatnonzero(outside)[0])
                raise UserError(
                    f"{task_key}: binary label '{column}' of '{path}' holds "
                    f"{_examples(numbers.iloc[[first]])} at {_where(table, first, csv_rows)} "
                    f"({int(outside.sum())} values outside {{0, 1}}: "
                    f"{_examples(numbers[outside])}); binary labels must be 0/1 or True/False: "
                    f"fix the file ({key}) or leave '{column}' out of {task_key}")


def check_columns(table: pd.DataFrame, required_columns: Sequence[str], path: str | Path) -> None:
    """Raises a ``KeyError`` naming the task keys when a column the task needs is missing."""
    missing = [c for c in required_columns if c not in table.columns]
    if missing:
        raise KeyError(
            f"task.objective (target columns) / task.metadata_columns: "
            f"column{'s' if len(missing) > 1 else ''} "
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
