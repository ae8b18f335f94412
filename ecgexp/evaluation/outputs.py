"""The outputs of ``ecgexp-evaluate``: report tables (CSV beside Markdown) in a report
folder that holds nothing else, and the PhysioNet Challenge 2025 export."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgexp.columns import score_of
from ecgexp.errors import UserError
from ecgexp.files import (
    confined_path,
    distinct_file_names,
    make_folder,
    write_text_atomic,
)

# Marks a folder written by ecgexp-evaluate, whose files a new evaluation may replace.


def write_table(table: pd.DataFrame, path: Path) -> None:
    """CSV and Markdown side by side, each written whole (the report folder's own files)."""
    write_text_atomic(path.with_suffix(".csv"), table.to_csv(index=False), "output_dir",
                      replace=True)
    write_text_atomic(path.with_suffix(".md"), markdown_table(table), "output_dir",
                      replace=True)


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table; numbers with 3 decimals."""
    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float | np.floating) else str(value)
    lines = ["| " + " | ".join(map(str, table.columns)) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def check_export_folder(folder: Path) -> None:
    """``challenge_export`` must be a new or empty folder (no stale outputs mixed in)."""
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise UserError(f"challenge_export: '{folder}' is a file, not a folder; give a new "
                            f"or empty folder")
        entries = sorted(p.name for p in folder.iterdir())
        if entries:
            raise UserError(f"challenge_export: '{folder}' is not empty ({len(entries)} "
                            f"entries, e.g. '{entries[0]}'); give a new or empty folder so "
                            f"that no earlier output is mixed in or overwritten")


def challenge_export(table: pd.DataFrame, label: str, threshold: float, folder: Path,
                     names: Sequence | pd.Series | None = None) -> int:
    """PhysioNet Challenge 2025 outputs: ``<record>.txt`` per exam with the record name (its
    basename), ``# Chagas label: True|False`` (score >= threshold) and
    ``# Chagas probability: p``.

    ``names`` (the dataset's ``record`` column, in the table's row order; default the exam
    ids) are data: each file name is made a plain name inside ``folder`` (``../x`` gives
    ``_x.txt``), two records giving one file are refused, ``folder`` must be new or empty,
    and each file is written whole. Nothing is written unless every check passes."""
    folder = Path(folder)
    column = "record" if names is not None else "exam_id"
    records = pd.Series(list(names) if names is not None else list(table.exam_id))
    if len(records) != len(table):
        raise UserError(f"challenge_export: {len(records)} record names for {len(table)} "
                        f"predicted exams")
    if records.isna().any():
        position = int(np.argmax(records.isna().to_numpy()))
        raise UserError(f"challenge_export: exam_id {table.exam_id.iloc[position]} has no "
                        f"value in the dataset's column '{column}' "
                        f"({int(records.isna().sum())} exams without one)")
    records = records.astype(str).tolist()
    files = distinct_file_names(records, "challenge_export", f"the column '{column}'", ".txt",
                                ids=list(table.exam_id))
    check_export_folder(folder)
    make_folder(folder, "challenge_export")
    for record, file_name, probability in zip(records, files, table[score_of(label)]):
        path = confined_path(folder, file_name.removesuffix(".txt"), "challenge_export",
                             ".txt")
        write_text_atomic(path, f"{Path(record).name}\n# Chagas label: "
                          f"{probability >= threshold}\n# Chagas probability: "
                          f"{probability:.6f}\n", "challenge_export")
    return len(records)
