"""Record collections: which raw records a folder or a RECORDS file holds, and their exam ids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

RECORD_SUFFIXES = (".hea", ".xml", ".json")
ID_RULES = ("index", "name")


def list_records(input_path: str | Path, key: str = "input") -> tuple[Path, list[str]]:
    """The root folder and the record names (paths relative to it, WFDB names without
    ``.hea``) of a folder (searched recursively, sorted) or of a ``RECORDS`` file; ``key`` is
    the config key named in errors."""
    path = Path(input_path)
    if path.is_dir():
        names = sorted(str(p.relative_to(path).with_suffix("") if p.suffix == ".hea"
                           else p.relative_to(path))
                       for p in path.rglob("*") if p.suffix in RECORD_SUFFIXES)
        root = path
    elif path.is_file():
        root = path.parent
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        raise FileNotFoundError(f"{key}: no folder or RECORDS file at '{path}'")
    if not names:
        raise FileNotFoundError(f"{key}: no records ({', '.join(RECORD_SUFFIXES)}) in '{path}'")
    return root, names


def exam_ids(names: Sequence[str], rule: str) -> tuple[np.ndarray, dict[int, str]]:
    """One exam id per record and the records rejected before reading (position -> reason).

    ``index``: the position in the record list. ``name``: the record's file name as an integer
    (the Challenge's CODE-15% records are named by exam id); later duplicates are rejected.
    """
    if rule not in ID_RULES:
        raise ValueError(f"ids: '{rule}' is not one of {ID_RULES}")
    if rule == "index":
        return np.arange(len(names), dtype=np.int64), {}
    ids = np.full(len(names), -1, dtype=np.int64)
    rejected, seen = {}, {}
    for position, name in enumerate(names):
        stem = Path(name).stem
        if not stem.isdigit():
            rejected[position] = f"record name '{stem}' is not an integer exam id (ids=name)"
        elif int(stem) in seen:
            rejected[position] = f"duplicate exam_id {stem} (also {seen[int(stem)]})"
        else:
            seen[int(stem)] = name
            ids[position] = int(stem)
    return ids, rejected
