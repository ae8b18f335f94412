"""Record collections: which raw records a folder or a RECORDS file holds, and their exam ids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

RECORD_SUFFIXES = (".hea", ".xml", ".json")
ID_RULES = ("index", "name")


def list_records(input_path: str | Path, key: str = "input") -> tuple[Path, list[str]]:
    """The root folder and the record names (paths relative to it, WFDB names without
    ``.hea``) of a folder (searched recursively, sorted), of a ``RECORDS`` file, or of a single
    record (a ``.hea``, ``.xml`` or ``.json`` file, or a WFDB record path without its
    ``.hea``); ``key`` is the config key named in errors."""
    path = Path(input_path)
    if path.suffix == ".hea" and path.is_file():
        return path.parent, [path.stem]
    if path.suffix in (".xml", ".json") and path.is_file():
        return path.parent, [path.name]
    if not path.exists() and path.with_name(path.name + ".hea").is_file():
        return path.parent, [path.name]
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

    ``index``: the position in the record list. ``name``: the record's file name: an integer
    exam id when every name is one (the Challenge's CODE-15% records are named by exam id),
    else the names as strings (``E07500``, ``00001_hr``); later duplicates are rejected.
    """
    if rule not in ID_RULES:
        raise ValueError(f"ids: '{rule}' is not one of {ID_RULES}")
    if rule == "index":
        return np.arange(len(names), dtype=np.int64), {}
    stems = [Path(name).stem for name in names]
    numeric = all(stem.isdigit() for stem in stems)
    ids = np.array([int(s) for s in stems] if numeric else stems,
                   dtype=np.int64 if numeric else object)
    rejected, seen = {}, {}
    for position, (exam_id, name) in enumerate(zip(ids, names)):
        if exam_id in seen:
            rejected[position] = f"duplicate exam_id {exam_id} (also {seen[exam_id]})"
        else:
            seen[exam_id] = name
    return ids, rejected
