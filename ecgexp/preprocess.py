"""Raw ECG records -> training-ready HDF5 in the CODE layout, in parallel and resumable.

The record list is cut into fixed batches of ``batch_size`` records. Worker processes turn each
batch into ``<output>.partial/batch_<k>.npz`` (written under a temporary name and renamed, so a
batch file is either complete or absent). A conversion that stops part-way therefore resumes
at the first missing batch when run again with the same settings. When every batch is there,
they are assembled into ``<output>`` (``tracings`` (N, samples, leads) float32 and ``exam_id``)
with ``<output stem>.csv`` (one metadata row per HDF5 row, same order) and
``<output stem>_rejected.csv`` (record, reason), each first written under a temporary name.
An existing output is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from rich.progress import Progress

from ecgexp.signal.pipeline import RecordRejected, SignalPipeline
from ecgexp.signal.readers import RecordError, read_record
from ecgexp.signal.record_lists import exam_ids, list_records


def _convert_batch(batch: int, positions: np.ndarray, root: Path, names: Sequence[str],
                   ids: np.ndarray, prerejected: dict[int, str], pipeline: SignalPipeline,
                   folder: Path) -> int:
    """Converts one batch of records into ``batch_<k>.npz``; returns the number of records."""
    tracings, kept, metadata, rejected = [], [], [], []
    for position in positions:
        name = names[position]
        if position in prerejected:
            rejected.append({"record": name, "reason": prerejected[position]})
            continue
        try:
            record = read_record(root / name, name)
            tracings.append(pipeline(record.signal, record.sampling_rate, record.leads))
        except (RecordError, RecordRejected) as error:
            rejected.append({"record": name, "reason": getattr(error, "reason", str(error))})
            continue
        kept.append(ids[position])
        metadata.append({"exam_id": int(ids[position]), "record": name,
                         "sampling_rate": record.sampling_rate,
                         "original_samples": record.signal.shape[0],
                         "leads": ";".join(record.leads), **record.metadata})
    shape = (0, pipeline.n_samples, len(pipeline.leads))
    temporary = folder / f".batch_{batch:06d}.{os.getpid()}.npz"
    with open(temporary, "wb") as handle:
        np.savez(handle, tracings=np.stack(tracings) if tracings else np.zeros(shape, np.float32),
                 exam_id=np.asarray(kept, dtype=np.int64),
                 metadata=json.dumps(metadata, default=str), rejected=json.dumps(rejected))
    temporary.rename(folder / f"batch_{batch:06d}.npz")
    return len(positions)


def _settings_key(names: Sequence[str], pipeline: SignalPipeline, batch_size: int,
                  ids: str) -> str:
    """What a partial conversion must share with this one to be resumed."""
    text = json.dumps({"records": list(names), "pipeline": pipeline.as_dict(),
                       "batch_size": batch_size, "ids": ids}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _partial_folder(output: Path, key: str) -> Path:
    folder = output.with_name(output.name + ".partial")
    settings = folder / "settings.sha256"
    if folder.exists() and settings.is_file() and settings.read_text() != key:
        raise ValueError(f"output: '{folder}' holds a conversion with other records or settings; "
                         f"remove it or choose another output")
    folder.mkdir(parents=True, exist_ok=True)
    settings.write_text(key)
    return folder


def convert(input_path: str | Path, output: str | Path, pipeline: SignalPipeline,
            workers: int = 2, batch_size: int = 64, ids: str = "index") -> dict:
    """Converts every record under ``input_path`` into ``output`` (see the module docstring);
    returns counts and the paths written."""
    output = Path(output)
    if output.suffix not in (".h5", ".hdf5"):
        raise ValueError(f"output: '{output}' must end in .h5 or .hdf5")
    metadata_csv = output.with_suffix(".csv")
    report_csv = output.with_name(output.stem + "_rejected.csv")
    for path in (output, metadata_csv, report_csv):
        if path.exists():
            raise FileExistsError(f"output: '{path}' exists; choose another output (nothing "
                                  f"is overwritten)")
    root, names = list_records(input_path)
    record_ids, prerejected = exam_ids(names, ids)
    folder = _partial_folder(output, _settings_key(names, pipeline, batch_size, ids))
    batches = [np.arange(start, min(start + batch_size, len(names)))
               for start in range(0, len(names), batch_size)]
    todo = [k for k in range(len(batches)) if not (folder / f"batch_{k:06d}.npz").exists()]
    work = partial(_convert_batch, root=root, names=names, ids=record_ids,
                   prerejected=prerejected, pipeline=pipeline, folder=folder)
    with Progress() as progress:
        bar = progress.add_task("converting records", total=len(names),
                                completed=len(names) - sum(len(batches[k]) for k in todo))
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                for done in pool.map(work, todo, [batches[k] for k in todo]):
                    progress.advance(bar, done)
        else:
            for k in todo:
                progress.advance(bar, work(k, batches[k]))
    counts = _assemble(folder, len(batches), output, metadata_csv, report_csv, pipeline)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    return {**counts, "output": str(output), "metadata_csv": str(metadata_csv),
            "report_csv": str(report_csv)}


def _assemble(folder: Path, n_batches: int, output: Path, metadata_csv: Path, report_csv: Path,
              pipeline: SignalPipeline) -> dict:
    """Batch files -> HDF5 + metadata CSV + rejection report, each renamed into place last."""
    temporary = output.with_name(f".{output.name}.assembling")
    metadata, rejected, n_rows = [], [], 0
    with h5py.File(temporary, "w") as handle:
        shape = (pipeline.n_samples, len(pipeline.leads))
        tracings = handle.create_dataset("tracings", (0, *shape), "float32",
                                         maxshape=(None, *shape), chunks=(1, *shape))
        exam_id = handle.create_dataset("exam_id", (0,), "int64", maxshape=(None,))
        handle.attrs["leads"] = list(pipeline.leads)
        handle.attrs["sampling_rate"] = pipeline.sampling_rate
        handle.attrs["pipeline"] = json.dumps(pipeline.as_dict(), default=str)
        for k in range(n_batches):
            with np.load(folder / f"batch_{k:06d}.npz") as batch:
                n = len(batch["exam_id"])
                tracings.resize(n_rows + n, axis=0)
                exam_id.resize(n_rows + n, axis=0)
                tracings[n_rows:n_rows + n] = batch["tracings"]
                exam_id[n_rows:n_rows + n] = batch["exam_id"]
                metadata += json.loads(str(batch["metadata"]))
                rejected += json.loads(str(batch["rejected"]))
                n_rows += n
    _write_csv(pd.DataFrame(metadata, columns=None if metadata else ["exam_id", "record"]),
               metadata_csv)
    _write_csv(pd.DataFrame(rejected, columns=["record", "reason"]), report_csv)
    temporary.rename(output)
    return {"converted": n_rows, "rejected": len(rejected)}


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.writing")
    table.to_csv(temporary, index=False)
    temporary.rename(path)
