"""HDF5 tracing files: opening them, indexing exams across files, reading one exam or a run of
rows per call, and scanning the rows a run uses once (cached) for unusable exams.

The published datasets store tracings as ``(N, samples, leads)`` float arrays, optionally with
an ``exam_id`` array of the same length (CODE-15%, SaMi-Trop) or without ids (CODE-test, where
the row number is the key). CODE-15% parts end with a padding row whose ``exam_id`` is 0.

Every open and read of a tracing file goes through :func:`open_hdf5` and :func:`read_rows`,
so a file that is empty, truncated, not HDF5 or holds a corrupt chunk is named in one line
(key ``dataset.tracing_files``) instead of h5py's ``OSError``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ecgexp.errors import UserError

log = logging.getLogger(__name__)

SCAN_VERSION = 2
# An exam whose amplitude is this many times the file's typical one is not a recording in the
# file's units (a corrupt or mis-scaled exam): the scan calls it unusable.
OUTLIER_FACTOR = 100.0
SCAN_BLOCK_BYTES = 32 * 2**20  # rows read per block of the scan: about 32 MiB at a time
CACHE_ENV = "ECGEXP_CACHE_DIR"


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


def _h5_reason(error: BaseException) -> str:
    """The part of an h5py message that says what failed (inside its last parentheses)."""
    text = " ".join(str(error).split())
    match = re.search(r"\(([^()]*)\)\s*$", text)
    return match.group(1) if match else text


def open_hdf5(path: Path, key: str = "dataset.tracing_files") -> h5py.File:
    """Opens ``path`` read-only; a file h5py cannot open is named with what is wrong with it
    (empty, not HDF5, truncated, not readable) and ``key``."""
    path = Path(path)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        size = path.stat().st_size if path.is_file() else None
        reason = _h5_reason(error)
        truncated = re.search(r"eof = (\d+).*stored_eof = (\d+)", reason)
        if size == 0:
            problem = "is empty (0 bytes), not an HDF5 file"
        elif "signature not found" in reason:
            problem = f"is not an HDF5 file (no HDF5 signature in its {size} bytes)"
        elif truncated:
            problem = (f"is truncated: it has {truncated.group(1)} of the "
                       f"{truncated.group(2)} bytes its header announces (an interrupted "
                       f"download or copy)")
        elif "ermission denied" in reason:
            problem = "cannot be opened: permission denied"
        else:
            problem = f"cannot be opened as HDF5 ({reason})"
        raise UserError(f"{key}: '{path}' {problem}; replace the file or point {key} at a "
                        f"readable one") from error


def _read_problem(error: OSError) -> str:
    reason = _h5_reason(error)
    if "filter" in reason or "inflate" in reason or "decompress" in reason:
        return f"a corrupt compressed chunk: {reason}"
    return reason


def read_rows(tracings: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``tracings``; a failed read names the file and the rows."""
    try:
        return tracings[start:stop]
    except OSError as error:
        rows = f"row {start}" if stop - start == 1 else f"rows {start}-{stop - 1}"
        raise UserError(
            f"dataset.tracing_files: {rows} of '{tracings.file.filename}' cannot be read "
            f"({_read_problem(error)}); replace the file, or set dataset.nan_policy=skip so "
            f"that the set-up scan leaves such exams out") from error


def consecutive_runs(locations: np.ndarray) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each run of ``(file_index, row)`` locations that are consecutive
    rows of one file, in order: the blocks one read each can fetch."""
    start = 0
    while start < len(locations):
        file_index, row = locations[start]
        stop = start + 1
        while (stop < len(locations) and locations[stop, 0] == file_index
               and locations[stop, 1] == row + stop - start):
            stop += 1
        yield start, stop
        start = stop


def _dataset(handle: h5py.File, name: str, key: str) -> h5py.Dataset:
    if name not in handle:
        raise KeyError(
            f"{key}: HDF5 file '{handle.filename}' has no dataset '{name}' "
            f"(it has: {', '.join(handle.keys())})"
        )
    return handle[name]


def check_stored_values(tracings: h5py.Dataset, path: Path, scale: float) -> None:
    """Tracings must be stored as numbers; integers (ADC counts) only with a ``scale``."""
    kind = tracings.dtype.kind
    if kind not in "fiu":
        raise UserError(f"dataset.tracings_dataset: '{tracings.name.lstrip('/')}' in '{path}' "
                        f"holds {tracings.dtype} values, not numbers; point "
                        f"dataset.tracings_dataset at the tracing array")
    if kind in "iu" and scale == 1:
        raise UserError(
            f"dataset.scale: tracings '{tracings.name.lstrip('/')}' in '{path}' are stored as "
            f"{tracings.dtype}, which looks like ADC counts rather than mV; set dataset.scale "
            f"to 1/gain (e.g. dataset.scale=0.001 for 1000 counts per mV) or convert the file "
            f"to float mV")


def index_tracings(files: Sequence[Path], tracings_dataset: str, exam_id_dataset: str | None,
                   n_samples: int, n_leads: int, drop_padding_rows: bool,
                   scale: float = 1.0) -> pd.DataFrame:
    """One row per exam: ``exam_id``, ``file_index``, ``row``, in file then row order.

    Without ``exam_id_dataset`` the exam id is the running row number across the files.
    Shapes and stored types are checked here (integer counts need a ``scale`` other than 1),
    so a wrong file fails before training starts.
    """
    frames, offset = [], 0
    for file_index, path in enumerate(files):
        with open_hdf5(path) as handle:
            tracings = _dataset(handle, tracings_dataset, "dataset.tracings_dataset")
            if tracings.ndim != 3 or tracings.shape[1:] != (n_samples, n_leads):
                transposed = tracings.ndim == 3 and tracings.shape[1:] == (n_leads, n_samples)
                hint = (" (it looks transposed: the files must be stored as (N, samples, leads))"
                        if transposed else "")
                raise ValueError(
                    f"dataset.n_samples / dataset.leads: tracings '{tracings_dataset}' in '{path}' "
                    f"have shape {tracings.shape}, expected (N, {n_samples}, {n_leads}){hint}"
                )
            check_stored_values(tracings, path, scale)
            n_rows = tracings.shape[0]
            if exam_id_dataset is None:
                exam_ids = np.arange(offset, offset + n_rows, dtype=np.int64)
            else:
                ids = _dataset(handle, exam_id_dataset, "dataset.exam_id_dataset")
                try:
                    exam_ids = np.asarray(ids[:], dtype=np.int64).reshape(-1)
                except OSError as error:
                    raise UserError(f"dataset.tracing_files: the exam ids '{exam_id_dataset}' "
                                    f"of '{path}' cannot be read ({_read_problem(error)}); "
                                    f"replace the file") from error
                except (TypeError, ValueError) as error:
                    raise UserError(f"dataset.exam_id_dataset: '{exam_id_dataset}' in '{path}' "
                                    f"holds {ids.dtype} values, not integer exam ids") from error
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
        return read_rows(self._tracings(file_index), row, row + 1)[0]

    def read_rows(self, file_index: int, start: int, stop: int) -> np.ndarray:
        """The tracings ``(stop - start, samples, leads)`` of rows ``start:stop`` of file
        ``file_index``, in one contiguous read."""
        return read_rows(self._tracings(file_index), start, stop)

    def _tracings(self, file_index: int) -> h5py.Dataset:
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if file_index not in self._handles:
            handle = open_hdf5(self.files[file_index])
            self._handles[file_index] = handle[self.tracings_datasets[file_index]]
        return self._handles[file_index]

    def close(self) -> None:
        for tracings in self._handles.values():
            tracings.file.close()
        self._handles = {}


# --------------------------------------------------------------------------------------------
# The set-up scan: every row a run uses, read once in blocks, cached by the file's fingerprint.


@dataclass
class FileScan:
    """What the scan found in the scanned rows of one file.

    ``amplitude`` is the median, over the usable exams, of each exam's median per-lead
    peak-to-peak amplitude (max - min over time), in the stored units (before
    ``dataset.scale``); ``None`` when no exam is usable. ``outlier``: the rows whose amplitude
    is more than :data:`OUTLIER_FACTOR` times that.
    """

    path: Path
    n_rows: int
    nonfinite: list[int] = field(default_factory=list)
    unreadable: dict[int, str] = field(default_factory=dict)
    zero: list[int] = field(default_factory=list)
    amplitude: float | None = None
    outlier: list[int] = field(default_factory=list)
    cached: bool = False

    def to_json(self) -> dict:
        return {"n_rows": self.n_rows, "nonfinite": self.nonfinite,
                "unreadable": {str(row): reason for row, reason in self.unreadable.items()},
                "zero": self.zero, "amplitude": self.amplitude, "outlier": self.outlier}

    @classmethod
    def from_json(cls, path: Path, data: dict) -> FileScan:
        return cls(path, int(data["n_rows"]), [int(r) for r in data["nonfinite"]],
                   {int(row): str(reason) for row, reason in data["unreadable"].items()},
                   [int(r) for r in data["zero"]],
                   None if data["amplitude"] is None else float(data["amplitude"]),
                   [int(r) for r in data["outlier"]], cached=True)


def cache_dir() -> Path:
    """``$ECGEXP_CACHE_DIR``, else ``$XDG_CACHE_HOME/ecgexp``, else ``~/.cache/ecgexp``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ecgexp"


def _fingerprint(path: Path, tracings_dataset: str, rows: np.ndarray) -> dict:
    status = path.stat()
    # ctime: every write changes it and no user can set it (an edit that keeps the mtime, or
    # a file put back with its old mtime, is scanned again); inode: a replaced file.
    return {"version": SCAN_VERSION, "path": str(path.resolve()), "dataset": tracings_dataset,
            "size": status.st_size, "mtime_ns": status.st_mtime_ns,
            "ctime_ns": status.st_ctime_ns, "inode": status.st_ino,
            "rows": hashlib.sha256(np.asarray(rows, "<i8").tobytes()).hexdigest()}


def _cache_file(fingerprint: dict) -> Path:
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
    return cache_dir() / "tracing_scans" / f"{digest[:32]}.json"


def _cached_scan(path: Path, fingerprint: dict) -> FileScan | None:
    cache = _cache_file(fingerprint)
    try:
        data = json.loads(cache.read_text())
        if data.get("fingerprint") == fingerprint:
            return FileScan.from_json(path, data["scan"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # no cache yet, or an unreadable one: scan again
    return None


def _store_scan(scan: FileScan, fingerprint: dict) -> None:
    cache = _cache_file(fingerprint)
    temporary = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"fingerprint": fingerprint, "scan": scan.to_json()}))
        os.replace(temporary, cache)
    except OSError as error:  # a read-only cache only costs a new scan next time
        log.warning("could not cache the scan of %s in %s (%s); set %s to a writable folder",
                    scan.path, cache.parent, error, CACHE_ENV)
        with contextlib.suppress(OSError):  # e.g. the cache "folder" is a file
            temporary.unlink(missing_ok=True)


def _blocks(tracings: h5py.Dataset, rows: np.ndarray, rows_per_block: int
            ) -> Iterator[tuple[np.ndarray, np.ndarray | None, str | None]]:
    """``(rows, tracings of those rows or None, why they cannot be read)`` over the sorted
    ``rows``, each read a block of at most ``rows_per_block`` consecutive file rows; a block
    that fails is read again row by row, so only the rows of the bad chunks are unreadable."""
    start = 0
    while start < len(rows):
        stop = int(np.searchsorted(rows, rows[start] + rows_per_block))
        wanted = rows[start:stop]
        first, last = int(wanted[0]), int(wanted[-1])
        try:
            block = tracings[first:last + 1]
        except OSError:
            for row in wanted:
                try:
                    one = tracings[row:row + 1]
                except OSError as error:
                    yield np.array([row]), None, _read_problem(error)
                else:
                    yield np.array([row]), one, None
        else:  # the block as read when every row of it is wanted, else those rows of it
            yield wanted, block if len(block) == len(wanted) else block[wanted - first], None
        start = stop


def scan_file(path: Path, tracings_dataset: str, rows: np.ndarray,
              block_bytes: int = SCAN_BLOCK_BYTES) -> FileScan:
    """Reads ``rows`` of ``path`` once, in blocks of about ``block_bytes``, and returns the
    rows that cannot be read, those with NaN/Inf samples, the all-zero ones and the typical
    amplitude; the result is cached by the file's path, size, modification and change times
    (ctime: an edit that keeps the mtime still changes it), inode and the rows scanned."""
    path = Path(path)
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    fingerprint = _fingerprint(path, tracings_dataset, rows)
    cached = _cached_scan(path, fingerprint)
    if cached is not None:
        return cached
    scan = FileScan(path, len(rows))
    amplitudes, measured_rows = [], []
    with open_hdf5(path) as handle:
        tracings = handle[tracings_dataset]
        row_bytes = max(1, int(np.prod(tracings.shape[1:])) * tracings.dtype.itemsize)
        for block_rows, block, problem in _blocks(tracings, rows,
                                                  max(1, block_bytes // row_bytes)):
            if block is None:
                scan.unreadable.update({int(r): problem for r in block_rows})
                continue
            highest = block.max(axis=1).astype(np.float64)  # (exams, leads); NaN propagates
            lowest = block.min(axis=1).astype(np.float64)
            finite = np.isfinite(highest).all(axis=1) & np.isfinite(lowest).all(axis=1)
            zero = finite & (highest == 0).all(axis=1) & (lowest == 0).all(axis=1)
            scan.nonfinite.extend(block_rows[~finite].tolist())
            scan.zero.extend(block_rows[zero].tolist())
            usable = finite & ~zero
            amplitudes.append(np.median(highest[usable] - lowest[usable], axis=1))
            measured_rows.append(block_rows[usable])
    measured = np.concatenate(amplitudes) if amplitudes else np.empty(0)
    scan.amplitude = float(np.median(measured)) if len(measured) else None
    if scan.amplitude:
        outlier = measured > OUTLIER_FACTOR * scan.amplitude
        scan.outlier = np.concatenate(measured_rows)[outlier].tolist()
    _store_scan(scan, fingerprint)
    return scan


def scan_tracings(reader: TracingReader, table: pd.DataFrame) -> dict[int, FileScan]:
    """File index -> :class:`FileScan` of the exams of ``table`` (``file_index``, ``row``) in
    that file of ``reader``."""
    began, scans = time.perf_counter(), {}
    for file_index, rows in table.groupby("file_index").row:
        scans[int(file_index)] = scan_file(reader.files[file_index],
                                           reader.tracings_datasets[file_index], rows.to_numpy())
    fresh = [s for s in scans.values() if not s.cached]
    if fresh:
        log.info("scanned %d exams of %d tracing files in %.1f s (cached in %s)",
                 sum(s.n_rows for s in fresh), len(fresh), time.perf_counter() - began,
                 cache_dir() / "tracing_scans")
    return scans
