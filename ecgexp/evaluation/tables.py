"""Tables a user hands to ``ecgexp-evaluate`` (predictions, labels, other readers' annotations),
read and checked: an empty file, one that is not a CSV, a missing column, NaN/Inf or text where
a number belongs, a binary label other than 0/1, each as one line naming the key, the file, the
column and the first bad row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgexp.errors import UserError


def _row(position: int) -> str:
    """A table row for messages: 1-based, with its line in the CSV file (after the header)."""
    return f"row {position + 1} (line {position + 2} of the file)"


def _cell(table: pd.DataFrame, column: str, position: int):
    """A cell as a plain Python value (``nan``, ``'yes'``, ``2``) for messages."""
    return table[column].iloc[position:position + 1].tolist()[0]


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def require_columns(table: pd.DataFrame, columns: Sequence[str], path: Path, key: str,
                    expected: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        present = ", ".join(map(str, table.columns[:12])) + (", ..." if len(table.columns) > 12
                                                             else "")
        raise UserError(f"{key}: '{path}' lacks the column(s) {', '.join(missing)}; {expected} "
                        f"(its columns: {present})")


def finite_column(table: pd.DataFrame, column: str, path: Path, key: str,
                  what: str = "scores") -> np.ndarray:
    """``table[column]`` as floats; NaN, Inf or text is one line naming the first bad row."""
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        position = int(np.argmax(bad))
        cell = _cell(table, column, position)
        raise UserError(f"{key}: '{path}' column '{column}' holds {cell!r} at {_row(position)} "
                        f"({int(bad.sum())} such rows); {what} must be finite numbers "
                        f"(no NaN, Inf or text)")
    return values


def binary_column(table: pd.DataFrame, column: str, path: Path, key: str) -> np.ndarray:
    """``table[column]`` as 0/1 integers; any other value is one line naming the first one."""
    values = pd.to_numeric(table[column], errors="coerce")
    bad = ~values.isin([0, 1]).to_numpy()
    if bad.any():
        position = int(np.argmax(bad))
        cell = _cell(table, column, position)
        raise UserError(f"{key}: '{path}' column '{column}' holds {cell!r} at {_row(position)} "
                        f"({int(bad.sum())} such rows); a binary label must be 0 or 1")
    return values.to_numpy().astype(int)
