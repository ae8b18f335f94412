"""The predictions table of a dataset: one row per exam, as ``ecgexp-predict`` writes it and
as a run writes ``predictions_<external set>.csv``."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgexp.columns import target_of
from ecgexp.errors import UserError
from ecgexp.files import atomic_path
from ecgexp.inference.dataset import PredictionDataset, predicted_batches
from ecgexp.inference.inputs import prediction_exams
from ecgexp.inference.loop import inferred
from ecgexp.inference.rows import prediction_rows
from ecgexp.inference.screening import dataset_flag
from ecgexp.progress import counting

log = logging.getLogger(__name__)
# The rows of an ecgexp-predict in progress: <output> + this suffix.
PARTIAL = ".partial"
# Rows per chunk when a finished table is rewritten (the dataset's amplitude flagged).
REWRITE_ROWS = 10_000


class DatasetPredictions:
    """The predictions table of every exam of ``source`` by ``models`` (one, or a mean
    ensemble), built a batch of rows at a time, in the dataset's exam order.

    Columns: ``exam_id``; ``record`` for raw records; the objective's prediction columns in
    its units (for an ensemble the members' mean, and ``<column>_sd`` their standard
    deviation); ``label_<name>`` = ``score >= threshold`` for each of ``thresholds``; the
    ``target_<name>`` columns when the dataset holds the targets; ``amplitude_mv``, ``flags``
    (inputs that look wrong for the model, :mod:`~ecgexp.inference.screening`) and
    ``problem`` (why an exam has no prediction). A finding on the whole dataset (its amplitude
    far from the training data's) is known only once every exam is read:
    :meth:`dataset_finding` gives it, to be prefixed to the flags of every fed exam."""

    def __init__(self, models: Sequence, thresholds: dict[str, float], source, contract: dict):
        self.models, self.thresholds, self.name = models, thresholds, source.name
        self.objective = models[0].objective
        self.exams, inputs = prediction_exams(source, contract)
        self.metadata = None
        if models[0].metadata_columns:
            columns = models[0].metadata_columns
            missing = [c for c in columns if c not in self.exams.columns]
            if missing:
                raise ValueError(f"dataset: the model takes the metadata inputs {columns}; "
                                 f"{missing} are not in '{source.name}'")
            self.metadata = self.exams[columns].apply(pd.to_numeric, errors="coerce"
                                                      ).to_numpy(np.float64)
        self.reference_mv = contract.get("amplitude_mv")
        self.dataset = PredictionDataset(self.exams, inputs, contract["leads"], self.reference_mv)
        self.with_targets = all(n in self.exams.columns for n in self.objective.target_columns)

    def __len__(self) -> int:
        return len(self.exams)

    @property
    def exam_ids(self) -> np.ndarray:
        return self.exams.exam_id.to_numpy()

    @property
    def columns(self) -> list[str]:
        """The table's columns, in order."""
        n_columns = len(self.objective.prediction_columns)
        empty = {"index": np.zeros(0, np.int64), "amplitude_mv": np.zeros(0), "flags": [],
                 "predictions": np.zeros((len(self.models), 0, n_columns), np.float32),
                 "problem": []}
        return list(self.rows(empty).columns)

    def blocks(self, batch_size: int = 64, num_workers: int = 0, device: str = "auto",
               progress: bool = True, start: int = 0) -> Iterator[pd.DataFrame]:
        """The rows of the exams from position ``start`` on, a batch at a time."""
        for batch in predicted_batches(self.models, self.dataset, self.metadata, batch_size,
                                       num_workers, device, progress, start):
            yield self.rows(batch)

    def rows(self, batch: dict) -> pd.DataFrame:
        """The rows of one batch of :func:`~ecgexp.inference.dataset.predicted_batches`."""
        exams = self.exams.iloc[batch["index"]]
        identifiers = {"exam_id": exams.exam_id.to_numpy()}
        if "record" in exams:
            identifiers["record"] = exams.record.to_numpy()
        targets = None
        if self.with_targets:
            targets = np.column_stack([
                pd.to_numeric(exams[name], errors="coerce").astype(float).to_numpy()
                for name in self.objective.target_columns])
        out = prediction_rows(self.objective, batch["predictions"], identifiers,
                              self.thresholds, targets)
        out["amplitude_mv"] = batch["amplitude_mv"]
        out["flags"] = pd.Series(batch["flags"], dtype=object).to_numpy()
        out["problem"] = pd.Series(batch["problem"], dtype=object).to_numpy()
        return out

    def dataset_finding(self, amplitude_mv: pd.Series, problem: pd.Series) -> str:
        """The finding on the whole dataset's amplitude (over the exams fed to the model), or
        empty; logged once."""
        fed = ~problem.astype(bool)
        finding = dataset_flag(pd.to_numeric(amplitude_mv, errors="coerce").where(fed),
                               self.reference_mv)
        if finding:
            log.warning("%s: %s", self.name, finding)
        return finding


def split_predictions(model, batches: Iterable[dict | None], n_exams: int,
                      names: np.ndarray | None = None, device: str = "auto",
                      description: str = "predicting", progress: bool = True,
                      autocast=None) -> pd.DataFrame:
    """A run's own split predicted by ``model`` (its best checkpoint): ``batches`` are the
    split's loader's (``exam_id``: ids, or positions into ``names`` for exams identified by
    record names; ``tracing``; ``target``; ``metadata`` standardised as in training), ``None``
    for a batch whose exams were all left out. Columns: ``exam_id``, the objective's
    prediction columns, ``target_<name>`` and the derived columns. ``autocast``: the dtype of
    the run's mixed precision (:func:`~ecgexp.inference.loop.autocast_dtype`)."""
    objective, blocks = model.objective, []
    with counting(description, n_exams, "exams", show=progress) as advance:
        for done in inferred([model], batches, device, autocast):
            exam_ids = done.batch["exam_id"].numpy()
            targets = done.batch["target"].float().numpy()
            blocks.append(prediction_rows(
                objective, done.predictions,
                {"exam_id": exam_ids if names is None else names[exam_ids]}, targets=targets))
            advance(len(exam_ids))
    if blocks:
        return pd.concat(blocks, ignore_index=True)
    columns = ["exam_id", *objective.prediction_columns,
               *(target_of(name) for name in objective.target_columns)]
    return pd.DataFrame(columns=columns)


def with_dataset_finding(table: pd.DataFrame, finding: str) -> pd.DataFrame:
    """``table`` with ``finding`` prefixed to the flags of every exam fed to the model (an exam
    with a problem was not fed: its problem alone says what it is)."""
    if finding:
        fed = ~table["problem"].astype(bool).to_numpy()
        flags = table["flags"].copy()
        flags[fed] = flags[fed].map(lambda f: f"{finding}; {f}" if f else finding)
        table["flags"] = flags
    return table


class Findings:
    """Counts of the exams with a problem and of the flagged ones, and the first of each, over
    the blocks of a table: one log line per kind (:meth:`log`)."""

    def __init__(self):
        self.exams = 0
        self.found = {"problem": [0, None], "flags": [0, None]}

    def add(self, block: pd.DataFrame) -> None:
        self.exams += len(block)
        for column, seen in self.found.items():
            hits = block[block[column].astype(bool)]
            if len(hits) and seen[1] is None:
                seen[1] = (hits.exam_id.iloc[0], hits[column].iloc[0])
            seen[0] += len(hits)

    def count(self, column: str) -> int:
        return self.found[column][0]

    def log(self, name: str) -> None:
        for column, (count, example) in self.found.items():
            if count:
                log.warning("%s: %d of %d exams %s (e.g. exam_id %s: %s)", name, count,
                            self.exams, "could not be predicted" if column == "problem"
                            else "flagged", *example)


def dataset_predictions(models: Sequence, thresholds: dict[str, float], source, contract: dict,
                        batch_size: int = 64, num_workers: int = 0, device: str = "auto",
                        progress: bool = True) -> pd.DataFrame:
    """Every exam of ``source`` predicted by ``models``, as one table in memory
    (:class:`DatasetPredictions`; :func:`write_dataset_predictions` writes it as it goes)."""
    predictions = DatasetPredictions(models, thresholds, source, contract)
    blocks = list(predictions.blocks(batch_size, num_workers, device, progress))
    table = (pd.concat(blocks, ignore_index=True) if blocks
             else pd.DataFrame(columns=predictions.columns))
    table = with_dataset_finding(table, predictions.dataset_finding(table.amplitude_mv,
                                                                    table.problem))
    findings = Findings()
    findings.add(table)
    findings.log(source.name)
    return table


def write_dataset_predictions(models: Sequence, thresholds: dict[str, float], source,
                              contract: dict, output: Path, batch_size: int = 64,
                              num_workers: int = 0, device: str = "auto", progress: bool = True,
                              key: str = "output", identity: dict | None = None) -> Findings:
    """Every exam of ``source`` predicted by ``models`` into the CSV ``output``, written as
    the batches come: memory stays flat in the number of exams.

    The rows go to ``<output>.partial`` first, flushed after every batch; a run that is
    killed leaves them there, and the same command run again continues after the last whole
    row, when it is the same command (``identity``: the settings that decide the rows, kept
    beside it in ``<output>.partial.json``) and the same exams in the same order. The
    finished table is renamed to
    ``output`` (rewritten once, a chunk at a time, when the dataset's amplitude is flagged).
    Returns the counts of the exams without a prediction and of the flagged ones."""
    predictions = DatasetPredictions(models, thresholds, source, contract)
    partial = output.with_name(output.name + PARTIAL)
    sidecar = partial.with_name(partial.name + ".json")
    header = predictions.columns
    identity = json.dumps(identity or {}, sort_keys=True, default=str)
    with open(partial, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{key}: '{partial}' is being written by another ecgexp-predict; "
                            f"wait for it or choose another {key}") from None
        done = _rows_written(handle, partial, header, predictions.exam_ids, key)
        if done is not None and (not sidecar.is_file() or sidecar.read_text() != identity):
            raise UserError(f"{key}: '{partial}' holds the rows of a killed ecgexp-predict with "
                            f"other models, dataset or settings; remove it (and {sidecar.name}) "
                            f"or choose another {key}")
        if done is None:
            sidecar.write_text(identity)
            handle.write((",".join(header) + "\n").encode())
            done = pd.DataFrame({name: pd.Series(dtype=object) for name in header})
        findings, amplitude, problem = Findings(), [done.amplitude_mv], [done.problem]
        findings.add(done)
        for block in predictions.blocks(batch_size, num_workers, device, progress,
                                        start=len(done)):
            handle.write(block.to_csv(header=False, index=False).encode())
            handle.flush()
            findings.add(block)
            amplitude.append(block.amplitude_mv)
            problem.append(block.problem)
        finding = predictions.dataset_finding(pd.concat(amplitude, ignore_index=True),
                                              pd.concat(problem, ignore_index=True))
        with atomic_path(output, key) as temporary:
            if finding:  # known only now: added to the rows already written, a chunk at a time
                findings = Findings()
                for i, chunk in enumerate(pd.read_csv(partial, dtype=str, keep_default_na=False,
                                                      chunksize=REWRITE_ROWS)):
                    chunk = with_dataset_finding(chunk, finding)
                    chunk.to_csv(temporary, mode="a", header=i == 0, index=False)
                    findings.add(chunk)
            else:
                try:
                    os.link(partial, temporary)
                except OSError:  # a file system without hard links
                    shutil.copyfile(partial, temporary)
        partial.unlink()
        sidecar.unlink()
    findings.log(source.name)
    return findings


def _rows_written(handle, partial: Path, header: list[str], exam_ids: np.ndarray,
                  key: str) -> pd.DataFrame | None:
    """The whole rows a killed run left in ``partial``, as text (a last line cut short is
    dropped from the file); None for a new file. Rows of other columns or other exams are
    refused."""
    handle.seek(0)
    text = handle.read()
    if not text:
        return None
    whole = text.rfind(b"\n") + 1
    if whole < len(text):
        handle.truncate(whole)
    remedy = (f"it holds the rows of a killed ecgexp-predict of other exams or another model; "
              f"remove it, or choose another {key}")
    try:
        done = pd.read_csv(io.BytesIO(text[:whole]), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise UserError(f"{key}: '{partial}' is not a predictions table; {remedy}") from None
    if list(done.columns) != header:
        raise UserError(f"{key}: '{partial}' has other columns than this prediction's; {remedy}")
    expected = [str(e) for e in exam_ids[:len(done)]]
    if len(done) > len(exam_ids) or list(done.exam_id) != expected:
        raise UserError(f"{key}: '{partial}' holds other exams than the first {len(done)} of the "
                        f"dataset; {remedy}")
    log.info("%s: continuing after the %d exams of '%s'", key, len(done), partial)
    return done


def evaluable(table: pd.DataFrame, objective, key: str) -> pd.DataFrame:
    """The exams of a predictions table that can be evaluated: with a prediction and every
    target; a table without the targets is refused, naming ``key``."""
    missing = [n for n in objective.target_columns if target_of(n) not in table.columns]
    targets = [target_of(name) for name in objective.target_columns]
    if missing:
        names = ", ".join(missing)
        raise UserError(f"{key}: the dataset has no {names} "
                        f"column, so its predictions cannot be evaluated; give a dataset with "
                        f"the task's labels")
    usable = table[[*objective.prediction_columns, *targets]].notna().all(axis=1)
    if not usable.all():
        log.warning("%s: %d of %d exams without a prediction or a target are not evaluated",
                    key, int((~usable).sum()), len(table))
    return table[usable].reset_index(drop=True)
