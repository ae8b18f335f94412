"""HDF5 tracing files: indexing exams across files and reading one exam or a run of rows per call.

The published datasets store tracings as ``(N, samples, leads)`` float arrays, optionally with
an ``exam_id`` array of the same length (CODE-15%, SaMi-Trop) or without ids (CODE-test, where
the row number is the key). CODE-15% parts end with a padding row whose ``exam_id`` is 0.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd


def resolve_tracing_files(tracing_files: str | Sequence[str]) -> list[Path]:
    """Expands a path, a glob pattern or a list of them into an ordered list of files."""
    patterns = [tracing_files] if isinstance(tracing_files, (str, os.PathLike)) else tracing_files
    files: list[Path] = []
    for pattern in map(str, patterns):
        matches = (sorted(glob.glob(pattern), key=_natural_key) if glob.has_magic(pattern)
                   else [pattern])
        if not matches or not all(Path(m).is_file() for m in matches):
            raise FileNotFoundError(
                f"dataset.tracing_files: no HDF5 file at '{pattern}' "
                f"(working directory {Path.cwd()}); set dataset.tracing_files or paths.data_dir"
            )
        files.extend(Path(m) for m in matches)
    return files


def _natural_key(path: str) -> list:
    """Sort key that puts exams_part2 before exams_part10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def _dataset(handle: h5py.File, name: str, key: str) -> h5py.Dataset:
    if name not in handle:
        raise KeyError(
            f"{key}: HDF5 file '{handle.filename}' has no dataset '{name}' "
            f"(it has: {', '.join(handle.keys())})"
        )
    return handle[name]


def index_tracings(files: Sequence[Path], tracings_dataset: str, exam_id_dataset: str | None,
                   n_samples: int, n_leads: int, drop_padding_rows: bool) -> pd.DataFrame:
    """One row per exam: ``exam_id``, ``file_index``, ``row``, in file then row order.

    Without ``exam_id_dataset`` the exam id is the running row number across the files.
    Shapes are checked here, so a wrong file fails before training starts.
    """
    frames, offset = [], 0
    for file_index, path in enumerate(files):
        with h5py.File(path, "r") as handle:
            tracings = _dataset(handle, tracings_dataset, "dataset.tracings_dataset")
            if tracings.ndim != 3 or tracings.shape[1:] != (n_samples, n_leads):
                transposed = tracings.ndim == 3 and tracings.shape[1:] == (n_leads, n_samples)
                hint = (" (it looks transposed: the files must be stored as (N, samples, leads))"
                        if transposed else "")
                raise ValueError(
                    f"dataset.n_samples / dataset.leads: tracings '{tracings_dataset}' in '{path}' "
                    f"have shape {tracings.shape}, expected (N, {n_samples}, {n_leads}){hint}"
                )
            n_rows = tracings.shape[0]
            if exam_id_dataset is None:
                exam_ids = np.arange(offset, offset + n_rows, dtype=np.int64)
            else:
                ids = _dataset(handle, exam_id_dataset, "dataset.exam_id_dataset")
                exam_ids = np.asarray(ids[:], dtype=np.int64).reshape(-1)
                if exam_ids.shape[0] != n_rows:
                    raise ValueError(
                        f"dataset.exam_id_dataset: '{exam_id_dataset}' in '{path}' has "
                        f"{exam_ids.shape[0]} ids for {n_rows} tracings"
                    )
        frames.append(pd.DataFrame({"exam_id": exam_ids, "file_index": file_index,
                                    "row": np.arange(n_rows)}))
        offset += n_rows
    index = pd.concat(frames, ignore_index=True)
    if drop_padding_rows:
        index = index[index.exam_id != 0]
    duplicated = index.exam_id.duplicated()
    if duplicated.any():
        raise ValueError(
            f"dataset.tracing_files: {int(duplicated.sum())} exam_ids occur more than once "
            f"across {[str(f) for f in files]} (e.g. {index.exam_id[duplicated].iloc[0]})"
        )
    return index.reset_index(drop=True)


class TracingReader:
    """Reads tracings ``(samples, leads)`` from a list of HDF5 files, one row or a run of rows.

    Each process (every data-loader worker) opens its own read-only handles on first use and
    never reads more than the requested rows, so memory does not grow with the file size.
    """

    def __init__(self, files: Sequence[Path], tracings_datasets: Sequence[str]):
        self.files = [Path(f) for f in files]
        self.tracings_datasets = list(tracings_datasets)  # one HDF5 dataset name per file
        self._handles: dict[int, h5py.Dataset] = {}
        self._pid: int | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}, "_pid": None}

    def read(self, file_index: int, row: int) -> np.ndarray:
        """The tracing ``(samples, leads)`` at ``row`` of file ``file_index``."""
        return self._tracings(file_index)[row]

    def read_rows(self, file_index: int, start: int, stop: int) -> np.ndarray:
        """The tracings ``(stop - start, samples, leads)`` of rows ``start:stop`` of file
        ``file_index``, in one contiguous read."""
        return self._tracings(file_index)[start:stop]

    def _tracings(self, file_index: int) -> h5py.Dataset:
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if file_index not in self._handles:
            handle = h5py.File(self.files[file_index], "r")
            self._handles[file_index] = handle[self.tracings_datasets[file_index]]
        return self._handles[file_index]

    def close(self) -> None:
        for tracings in self._handles.values():
            tracings.file.close()
        self._handles = {}
