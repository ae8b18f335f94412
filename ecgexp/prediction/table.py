"""The predictions table of a dataset: one row per exam, as ``ecgexp-predict`` writes it and
as a run writes ``predictions_<external set>.csv``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ecgexp.columns import target_of
from ecgexp.errors import UserError
from ecgexp.prediction.inputs import prediction_exams
from ecgexp.prediction.predictor import PredictionDataset, predict_exams
from ecgexp.prediction.screening import dataset_flag
from ecgexp.tasks.predictions import add_threshold_labels

log = logging.getLogger(__name__)


def dataset_predictions(models: Sequence, thresholds: dict[str, float], source, contract: dict,
                        batch_size: int = 64, num_workers: int = 0, device: str = "auto",
                        progress: bool = True) -> pd.DataFrame:
    """Every exam of ``source`` predicted by ``models`` (one, or a mean ensemble).

    Columns: ``exam_id``; ``record`` for raw records; the objective's prediction columns in
    its units (for an ensemble the members' mean, and ``<column>_sd`` their standard
    deviation); ``label_<name>`` = ``score >= threshold`` for each of ``thresholds``; the
    ``target_<name>`` columns when the dataset holds the targets; ``amplitude_mv``, ``flags``
    (inputs that look wrong for the model, :mod:`~ecgexp.prediction.screening`) and
    ``problem`` (why an exam has no prediction)."""
    objective = models[0].objective
    table, inputs = prediction_exams(source, contract)
    metadata = None
    if models[0].metadata_columns:
        columns = models[0].metadata_columns
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"dataset: the model takes the metadata inputs {columns}; "
                             f"{missing} are not in '{source.name}'")
        metadata = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    dataset = PredictionDataset(table, inputs, contract["leads"], contract.get("amplitude_mv"))
    result = predict_exams(models, dataset, metadata, batch_size, num_workers, device, progress)
    members = result["predictions"]
    out = pd.DataFrame({"exam_id": table.exam_id.to_numpy()})
    if "record" in table:
        out["record"] = table.record.to_numpy()
    columns = objective.prediction_columns
    out[columns] = members.mean(axis=0)
    if len(models) > 1:
        out[[f"{c}_sd" for c in columns]] = members.std(axis=0, ddof=1)
    add_threshold_labels(out, thresholds)
    if all(name in table.columns for name in objective.target_columns):
        for name in objective.target_columns:
            values = pd.to_numeric(table[name], errors="coerce")
            out[target_of(name)] = values.astype(float).to_numpy()
        out = objective.add_derived_columns(out)
    out["amplitude_mv"] = result["amplitude_mv"]
    flags = pd.Series(result["flags"], dtype=object)
    whole = dataset_flag(out.amplitude_mv.where(~pd.Series(result["problem"]).astype(bool)),
                         contract.get("amplitude_mv"))
    if whole:  # on every exam fed to the model (a problem alone says what an unfed one is)
        log.warning("%s: %s", source.name, whole)
        fed = ~pd.Series(result["problem"]).astype(bool).to_numpy()
        flags[fed] = flags[fed].map(lambda f: f"{whole}; {f}" if f else whole)
    out["flags"] = flags.to_numpy()
    out["problem"] = result["problem"]
    _log_findings(source.name, out)
    return out


def _log_findings(name: str, table: pd.DataFrame) -> None:
    """One log line per kind of exam finding, with a count and an example."""
    for column in ("problem", "flags"):
        found = table[table[column].astype(bool)]
        if len(found):
            example = found.iloc[0]
            log.warning("%s: %d of %d exams %s (e.g. exam_id %s: %s)", name, len(found),
                        len(table), "could not be predicted" if column == "problem"
                        else "flagged", example.exam_id, example[column])


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
