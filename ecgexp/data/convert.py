"""Raw ECG records -> training-ready HDF5 in the CODE layout, in parallel and resumable.

Outputs: ``<output>`` (``tracings`` (N, samples, leads) float32 and ``exam_id``),
``<output stem>.csv`` (one metadata row per HDF5 row, same order; the records' metadata with
``sex`` also as ``is_male`` 1/0, and missing values such as ``NaN`` or ``Unknown`` as empty
cells) and
``<output stem>_rejected.csv`` (record, reason). They appear as one set; nothing a user wrote is
overwritten or deleted.

Everything is first written into the folder ``<output>.partial/`` beside the output (the same
file system, so a move is a rename):

1. ``settings.sha256``: the records and settings; a partial folder is only resumed by a
   conversion with the same ones.
2. ``batch_<k>.npz``: the record list is cut into fixed batches of ``batch_size`` records and
   worker processes convert each into a batch file (written under a temporary name and renamed,
   so a batch file is complete or absent). A stopped conversion resumes at the missing batches.
3. ``assembled.h5``, ``assembled.csv``, ``assembled_rejected.csv``: the whole set, assembled
   from the batch files (rewritten from the batches if a run stopped while assembling).
4. ``commit.json`` (written under a temporary name and renamed): the final names, the counts
   and the identity (device, inode, size, mtime) of each assembled file. From this moment the
   set is complete and only has to be moved.
5. The moves, in this order: ``<stem>.csv``, ``<stem>_rejected.csv``, then ``<output>``. Each is
   a hard link to the final name (which refuses an existing file) followed by removing the
   assembled name. **The HDF5 under its final name is the commit marker**: it appears last, so
   whoever sees ``<output>`` sees both CSVs beside it, complete.
6. Clean-up: the batch files and temporaries, then ``settings.sha256``, then ``commit.json``,
   then the folder.

A kill at any moment leaves either no final name, or (during step 5) one or both CSVs without
the HDF5, or the complete set with the partial folder still there (step 6). Running the same
conversion again finishes the job: a final file whose identity is the one recorded in
``commit.json`` is this conversion's own and is kept, the remaining moves are done and the
folder is removed. A final name held by any other file is refused, never replaced. (A kill
between removing ``commit.json`` and the empty folder leaves the complete set and an empty
folder; a rerun removes the folder and, as for any finished conversion, refuses to overwrite.)

A partial folder holding a file that is not one of the above (by name) is refused at the start,
and the clean-up removes only these files (a folder that gained other files meanwhile is left,
with a warning). Worker processes end with the converter: on Linux the kernel kills them when it
dies (``PR_SET_PDEATHSIG``), and everywhere a watcher thread ends a worker whose parent is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ecgexp.data.label_maps import LabelMap
from ecgexp.errors import UserError
from ecgexp.files import writable_folder
from ecgexp.processes import end_with_parent
from ecgexp.progress import counting
from ecgexp.signal.pipeline import RecordRejected, SignalPipeline
from ecgexp.signal.quality import (
    QUALITY_COLUMNS,
    QualityRules,
    apply_actions,
    content_hash,
    record_findings,
    shortest_samples,
)
from ecgexp.signal.readers import RecordError, read_record, with_is_male
from ecgexp.signal.record_lists import ID_RULES, exam_ids, list_records

log = logging.getLogger(__name__)

SETTINGS = "settings.sha256"
COMMIT = "commit.json"
ASSEMBLED = {"metadata_csv": "assembled.csv", "report_csv": "assembled_rejected.csv",
             "quality_csv": "assembled_quality.csv",
             "output": "assembled.h5"}  # the order of the moves: the HDF5 last
# Every name the converter writes in the partial folder (temporaries included).
OWN_FILE = re.compile(r"(settings\.sha256|commit\.json|assembled\.h5|assembled\.csv"
                      r"|assembled_rejected\.csv|assembled_quality\.csv|batch_\d{6,}\.npz"
                      r"|\.settings\.sha256\.tmp|\.commit\.json\.tmp|\.batch_\d{6,}\.\d+\.npz)")


def _convert_batch(batch: int, positions: np.ndarray, root: Path, names: Sequence[str],
                   ids: np.ndarray, prerejected: dict[int, str], pipeline: SignalPipeline,
                   folder: Path, quality: QualityRules | None = None) -> int:
    """Converts one batch of records into ``batch_<k>.npz`` (with their quality findings, and
    the hash of each kept record's samples for the duplicates); returns the number of
    records."""
    tracings, kept, metadata, rejected, findings, hashes = [], [], [], [], [], []
    for position in positions:
        name = names[position]
        if position in prerejected:
            rejected.append({"record": name, "reason": prerejected[position]})
            continue
        try:
            record = read_record(root / name, name)
            signal, reason = _checked(record, quality, pipeline, findings, ids[position])
            if signal is None:
                raise RecordRejected(reason)
            tracings.append(pipeline(signal, record.sampling_rate, record.leads))
        except (RecordError, RecordRejected) as error:
            rejected.append({"record": name, "reason": getattr(error, "reason", str(error))})
            continue
        kept.append(ids[position])
        hashes.append(content_hash(record.signal))
        row_metadata = with_is_male(record.metadata)  # sex also as is_male (1/0/missing)
        header = {(f"header_{key}" if key in ("exam_id", "record") else key): value
                  for key, value in row_metadata.items()}  # the HDF5's exam_id is the key
        metadata.append({"exam_id": int(ids[position]), "record": name,
                         "sampling_rate": record.sampling_rate,
                         "original_samples": record.signal.shape[0],
                         "leads": ";".join(record.leads), **header})
    shape = (0, pipeline.n_samples, len(pipeline.leads))
    temporary = folder / f".batch_{batch:06d}.{os.getpid()}.npz"
    with open(temporary, "wb") as handle:
        np.savez(handle, tracings=np.stack(tracings) if tracings else np.zeros(shape, np.float32),
                 exam_id=np.asarray(kept, dtype=np.int64),
                 metadata=json.dumps(metadata, default=str), rejected=json.dumps(rejected),
                 quality=json.dumps(findings, default=str), hashes=json.dumps(hashes))
    os.replace(temporary, folder / f"batch_{batch:06d}.npz")
    return len(positions)


def _checked(record, quality: QualityRules | None, pipeline: SignalPipeline, findings: list,
             exam_id) -> tuple[np.ndarray | None, str]:
    """The record's signal after the quality actions (``None`` and why, when one rejects
    it); its findings are appended to ``findings`` as report rows."""
    if quality is None:
        return record.signal, ""
    shortest = shortest_samples(pipeline.n_samples, record.sampling_rate,
                                pipeline.sampling_rate)
    found = record_findings(record.signal, record.leads, quality, shortest)
    findings += [{"exam_id": int(exam_id), "record": record.name, "finding": f.kind,
                  "lead": f.lead, "count": f.count, "detail": f.detail,
                  "action": quality.actions[f.kind]} for f in found]
    return apply_actions(record.signal, record.leads, found, quality)


# -- checks before anything is written --------------------------------------------------------

def _check_count(value: object, key: str, meaning: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise UserError(f"{key}: {value!r} is not a whole number >= 1 ({meaning}); set "
                        f"{key}=<value>")
    return int(value)


def _check_output(output: Path) -> None:
    """The output's name and folder: a folder (or a folder still to be made) that is writable."""
    if output.suffix not in (".h5", ".hdf5") or not output.stem:
        raise UserError(f"output: '{output}' must be a file name ending in .h5 or .hdf5")
    writable_folder(output.parent, "output", written=output)


def _settings_key(names: Sequence[str], pipeline: SignalPipeline, batch_size: int,
                  ids: str, quality: QualityRules | None, label_map: LabelMap | None) -> str:
    """What a partial conversion must share with this one to be resumed."""
    text = json.dumps({"records": list(names), "pipeline": pipeline.as_dict(),
                       "batch_size": batch_size, "ids": ids,
                       "quality": None if quality is None else vars(quality),
                       "labels": None if label_map is None else vars(label_map)},
                      sort_keys=True, default=sorted)
    return hashlib.sha256(text.encode()).hexdigest()


# -- the partial folder -----------------------------------------------------------------------

def _inspect_partial(folder: Path, key: str) -> dict | None:
    """Checks an existing partial folder; returns its commit record (or None if the conversion
    was not yet complete)."""
    if not folder.exists() and not folder.is_symlink():
        return None
    if folder.is_symlink() or not folder.is_dir():
        raise UserError(f"output: '{folder}' is in the way of the conversion's working folder "
                        f"(it is not a folder that ecgexp-preprocess made); move it or choose "
                        f"another output")
    if not any(folder.iterdir()):  # what a kill just before the last step leaves
        folder.rmdir()
        return None
    foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()
                     if not (OWN_FILE.fullmatch(p.name) and p.is_file() and not p.is_symlink()))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5
                                          else "")
        raise UserError(f"output: '{folder}' holds files that ecgexp-preprocess did not write "
                        f"({shown}); move them out of it (or choose another output); nothing "
                        f"in it is deleted")
    commit = _read_commit(folder)
    settings = folder / SETTINGS
    found = commit["key"] if commit else settings.read_text() if settings.is_file() else None
    if found is None and any(folder.glob("batch_*.npz")):
        found = "unknown"
    if found is not None and found != key:
        raise UserError(f"output: '{folder}' holds a conversion with other records or "
                        f"settings; run that conversion again to finish it, or remove the "
                        f"folder (and any of its outputs) or choose another output")
    return commit


def _read_commit(folder: Path) -> dict | None:
    path = folder / COMMIT
    if not path.is_file():
        return None
    try:
        commit = json.loads(path.read_text())
        if not {"key", "finals", "identities", "counts"} <= set(commit):
            raise ValueError("keys missing")
    except ValueError:
        raise UserError(f"output: '{path}' is damaged; remove '{folder}' and any of the "
                        f"outputs it lists, then convert again") from None
    return commit


def _write_own(path: Path, text: str) -> None:
    """Writes a file of the partial folder in one step (temporary name, then rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _identity(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns]


def _is_own(path: Path, identity: list[int]) -> bool:
    try:
        return _identity(path) == identity
    except OSError:
        return False


# -- conversion -------------------------------------------------------------------------------

def convert(input_path: str | Path, output: str | Path, pipeline: SignalPipeline,
            workers: int = 2, batch_size: int = 64, ids: str = "index",
            quality: QualityRules | None = None, label_map: LabelMap | None = None) -> dict:
    """Converts every record under ``input_path`` into ``output`` (see the module docstring);
    returns counts and the paths written. ``workers``: 1 converts in this process, N > 1 in N
    worker processes (0 and negative numbers are refused). ``quality``: each record's
    findings go to ``<stem>_quality.csv`` and its actions apply (rejections to the rejection
    report); ``label_map``: label columns from the header codes in the metadata CSV."""
    workers = _check_count(workers, "workers", "1 converts in this process, N > 1 starts N "
                           "worker processes")
    batch_size = _check_count(batch_size, "batch_size", "records per batch file")
    if ids not in ID_RULES:
        raise UserError(f"ids: {ids!r} is not one of {', '.join(ID_RULES)}")
    output = Path(output)
    _check_output(output)
    finals = {"metadata_csv": output.with_suffix(".csv"),
              "report_csv": output.with_name(output.stem + "_rejected.csv"),
              "quality_csv": output.with_name(output.stem + "_quality.csv"), "output": output}
    root, names = list_records(input_path)
    record_ids, prerejected = exam_ids(names, ids)
    if record_ids.dtype == object:
        example = next(n for n, i in zip(names, record_ids) if not str(i).isdigit())
        raise UserError(f"ids: ids=name needs integer record names for the HDF5 exam_id "
                        f"(e.g. '{example}' is not one); use ids=index, the names go to the "
                        f"metadata CSV's record column")
    key = _settings_key(names, pipeline, batch_size, ids, quality, label_map)
    folder = output.with_name(output.name + ".partial")
    commit = _inspect_partial(folder, key)
    if commit is None:
        for path in reversed(finals.values()):  # the HDF5 first
            if path.exists() or path.is_symlink():
                raise UserError(f"output: '{path}' exists; choose another output (nothing is "
                                f"overwritten)")
        commit = _convert_into(folder, key, finals, root, names, record_ids, prerejected,
                               pipeline, workers, batch_size, quality, label_map)
    _move_into_place(folder, commit, finals)
    _clean_up(folder)
    return {**commit["counts"], **{name: str(path) for name, path in finals.items()}}


def _convert_into(folder: Path, key: str, finals: dict[str, Path], root: Path,
                  names: Sequence[str], record_ids: np.ndarray, prerejected: dict[int, str],
                  pipeline: SignalPipeline, workers: int, batch_size: int,
                  quality: QualityRules | None, label_map: LabelMap | None) -> dict:
    """Batches, assembly and the commit record in the partial folder; returns the record."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / SETTINGS).is_file():
            _write_own(folder / SETTINGS, key)
    except OSError as error:
        raise UserError(f"output: cannot create '{folder}' beside the output "
                        f"({error.strerror or error}); choose another output") from None
    batches = [np.arange(start, min(start + batch_size, len(names)))
               for start in range(0, len(names), batch_size)]
    todo = [k for k in range(len(batches)) if not (folder / f"batch_{k:06d}.npz").exists()]
    work = partial(_convert_batch, root=root, names=names, ids=record_ids,
                   prerejected=prerejected, pipeline=pipeline, folder=folder, quality=quality)
    with counting("converting", len(names), "records",
                  completed=len(names) - sum(len(batches[k]) for k in todo)) as advance:
        if workers > 1 and todo:
            with ProcessPoolExecutor(min(workers, len(todo)), initializer=end_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                for done in pool.map(work, todo, [batches[k] for k in todo]):
                    advance(done)
        else:
            for k in todo:
                advance(work(k, batches[k]))
    counts = _assemble(folder, len(batches), pipeline, quality, label_map, root)
    for path in finals.values():  # once more, just before the moves
        if path.exists() or path.is_symlink():
            raise UserError(f"output: '{path}' appeared during the conversion; move it away "
                            f"and run the same conversion again to finish (nothing is "
                            f"overwritten)")
    commit = {"key": key, "counts": counts,
              "finals": {name: str(path) for name, path in finals.items()},
              "identities": {name: _identity(folder / ASSEMBLED[name]) for name in ASSEMBLED}}
    _write_own(folder / COMMIT, json.dumps(commit, indent=1))
    return commit


def _assemble(folder: Path, n_batches: int, pipeline: SignalPipeline,
              quality: QualityRules | None = None, label_map: LabelMap | None = None,
              root: Path | None = None) -> dict:
    """Batch files -> ``assembled.h5``, ``assembled.csv``, ``assembled_rejected.csv`` and
    ``assembled_quality.csv`` in the partial folder (rewritten if an earlier run stopped
    while assembling). A record with the same samples as an earlier one is a ``duplicate``
    finding (left out when ``quality.actions.duplicate=reject``)."""
    metadata, rejected, findings, first_of, n_rows = [], [], [], {}, 0
    reject_duplicates = quality is not None and quality.actions["duplicate"] == "reject"
    with (h5py.File(folder / ASSEMBLED["output"], "w") as handle,
          counting("assembling", n_batches, "batch files") as advance):
        shape = (pipeline.n_samples, len(pipeline.leads))
        tracings = handle.create_dataset("tracings", (0, *shape), "float32",
                                         maxshape=(None, *shape), chunks=(1, *shape))
        exam_id = handle.create_dataset("exam_id", (0,), "int64", maxshape=(None,))
        handle.attrs["leads"] = list(pipeline.leads)
        handle.attrs["sampling_rate"] = pipeline.sampling_rate
        handle.attrs["pipeline"] = json.dumps(pipeline.as_dict(), default=str)
        for k in range(n_batches):
            with np.load(folder / f"batch_{k:06d}.npz") as batch:
                rows = json.loads(str(batch["metadata"]))
                keep = np.ones(len(rows), bool)
                findings += json.loads(str(batch["quality"]))
                for i, (row, digest) in enumerate(zip(rows, json.loads(str(batch["hashes"])))):
                    if quality is None:
                        break
                    if digest not in first_of:
                        first_of[digest] = row["record"]
                        continue
                    detail = f"the same samples as record {first_of[digest]}"
                    findings.append({"exam_id": row["exam_id"], "record": row["record"],
                                     "finding": "duplicate", "lead": "", "count": 1,
                                     "detail": detail,
                                     "action": quality.actions["duplicate"]})
                    if reject_duplicates:
                        keep[i] = False
                        rejected.append({"record": row["record"], "reason": f"duplicate: "
                                         f"{detail} (quality.actions.duplicate=reject)"})
                n = int(keep.sum())
                tracings.resize(n_rows + n, axis=0)
                exam_id.resize(n_rows + n, axis=0)
                tracings[n_rows:n_rows + n] = batch["tracings"][keep]
                exam_id[n_rows:n_rows + n] = batch["exam_id"][keep]
                metadata += [row for row, kept in zip(rows, keep) if kept]
                rejected += json.loads(str(batch["rejected"]))
                n_rows += n
            advance()
    table = pd.DataFrame(metadata, columns=None if metadata else ["exam_id", "record"])
    if label_map is not None and metadata:
        table = label_map.apply(table, f"'{root}'")
    table.to_csv(folder / ASSEMBLED["metadata_csv"], index=False)
    pd.DataFrame(rejected, columns=["record", "reason"]).to_csv(
        folder / ASSEMBLED["report_csv"], index=False)
    pd.DataFrame(findings, columns=QUALITY_COLUMNS).to_csv(
        folder / ASSEMBLED["quality_csv"], index=False)
    return {"converted": n_rows, "rejected": len(rejected)}


def _move_into_place(folder: Path, commit: dict, finals: dict[str, Path]) -> None:
    """Moves the assembled files to their final names, the HDF5 last (see the module
    docstring); a final file already there must be this conversion's own."""
    for name, assembled in ASSEMBLED.items():
        source, target = folder / assembled, finals[name]
        identity = commit["identities"][name]
        if target.exists() or target.is_symlink():
            if not _is_own(target, identity):
                raise UserError(f"output: '{target}' exists and is not the file this "
                                f"conversion wrote; move it away and run the same conversion "
                                f"again to finish (nothing is overwritten)")
            source.unlink(missing_ok=True)  # a move stopped between link and unlink
            continue
        if not _is_own(source, identity):
            raise UserError(f"output: '{source}' is missing or changed since the conversion "
                            f"was complete; remove '{folder}' and the outputs it wrote, then "
                            f"convert again")
        try:
            os.link(source, target)  # refuses an existing target, unlike a rename
        except FileExistsError:
            raise UserError(f"output: '{target}' appeared while the outputs were moved into "
                            f"place; move it away and run the same conversion again to "
                            f"finish (nothing is overwritten)") from None
        except OSError:  # a file system without hard links
            if target.exists():
                raise UserError(f"output: '{target}' exists; nothing is overwritten") from None
            os.rename(source, target)
            continue
        source.unlink()


def _clean_up(folder: Path) -> None:
    """Removes the converter's own files, the record of the settings and of the commit last,
    then the folder; a folder that gained other files is left (with a warning)."""
    last = (folder / SETTINGS, folder / COMMIT)
    for path in sorted(folder.iterdir()):
        if OWN_FILE.fullmatch(path.name) and path not in last and path.is_file():
            path.unlink(missing_ok=True)
    for path in last:
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        log.warning("output: left '%s' in place: it holds files that ecgexp-preprocess did "
                    "not write (%s)", folder, ", ".join(sorted(p.name for p in folder.iterdir())))
