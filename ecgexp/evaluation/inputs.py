"""The inputs of ``ecgexp-evaluate``: a run folder's config and predictions tables (checked),
ensembles of runs, prediction files made elsewhere, and the exam attributes of a run's
dataset."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from ecgexp.columns import SCORE, TARGET, score_of, scored_names, target_of
from ecgexp.data.labels import read_csv_table
from ecgexp.errors import UserError
from ecgexp.evaluation.report import flatten_report
from ecgexp.evaluation.tables import binary_column, finite_column, first_line, require_columns
from ecgexp.run_folder import RunFolder, located_dataset

SPLITS = ("val", "test")
log = logging.getLogger(__name__)


def predictions_columns(objective) -> list[str]:
    """The columns a run of ``objective`` writes to ``predictions_<split>.csv``."""
    return ["exam_id", *objective.prediction_columns,
            *(target_of(name) for name in objective.target_columns)]


def read_predictions(path: Path, objective, task: str, key: str = "run") -> pd.DataFrame:
    """A run's ``predictions_<split>.csv``, checked: the task's columns, finite predictions,
    numeric targets (0/1 for a binary label)."""
    expected = predictions_columns(objective)
    what = (f"the {task} task expects a predictions table with the columns "
            f"{', '.join(expected)}, as ecgexp writes it")
    table = read_csv_table(path, key, what)
    require_columns(table, expected, path, key, what)
    return check_predictions(table, path, objective, key)


def check_predictions(table: pd.DataFrame, path: Path, objective, key: str) -> pd.DataFrame:
    """Finite predictions and numeric targets (0/1 for a binary label) in ``table``."""
    for column in objective.prediction_columns:
        finite_column(table, column, path, key)
    for name in objective.target_columns:
        column = target_of(name)
        if name in objective.binary_columns:
            binary_column(table, column, path, key)
        else:
            finite_column(table, column, path, key, "targets")
    return table


def read_external(path: Path, objective, task: str, key: str) -> pd.DataFrame:
    """An ``ecgexp-predict`` table (or a run's ``predictions_<external set>.csv``), checked as
    :func:`read_predictions`, without the exams it could not predict or that have no target."""
    table = read_csv_table(path, key, f"{key} expects a predictions table as ecgexp-predict "
                                      f"writes it")
    required = predictions_columns(objective)
    if not set(required) <= set(table.columns):
        read_predictions(path, objective, task, key)  # names what is missing
    usable = table[required[1:]].notna().all(axis=1)
    if not usable.all():
        log.warning("%s: %d of %d exams of %s without a prediction or a target are not "
                    "evaluated", key, int((~usable).sum()), len(table), path)
    table = check_predictions(table[usable].reset_index(drop=True), path, objective, key)
    table.attrs["unusable"] = int((~usable).sum())  # for those who compare exam counts
    return table


def load_run(folder: str | Path, key: str = "run", allow_modules: Sequence[str] = (),
             ) -> tuple[DictConfig, dict[str, pd.DataFrame]]:
    """A run folder's resolved config (read as data, with the command's ``allow_modules``:
    :func:`ecgexp.run_folder.config_as_data`) and its checked predictions tables per
    split."""
    folder = Path(folder)
    run_config = RunFolder(folder).load_config(key, allow_modules)
    if "task" not in run_config:
        raise UserError(f"{key}: '{RunFolder(folder).config}' has no task; it is not the "
                        f"config of an ecgexp run")
    objective = instantiate(run_config.task.objective)
    files = RunFolder(folder)
    tables = {split: read_predictions(files.predictions(split), objective,
                                      run_config.task.name, key)
              for split in SPLITS if files.predictions(split).is_file()}
    for name in run_config.get("test_datasets") or {}:  # external test sets, by name
        path = files.predictions(name)
        if path.is_file():
            tables[name] = read_external(path, objective, run_config.task.name, key)
    if not tables and files.predictions("train").is_file():
        raise UserError(f"{key}: '{folder}' trained on every exam (split=all): it has no "
                        f"validation or test predictions to evaluate; its in-sample metrics "
                        f"are in {files.metrics}")
    if not tables:
        raise FileNotFoundError(f"{key}: no {files.predictions('<split>').name} in '{folder}'")
    return run_config, tables


def check_same_exams(members: Sequence[tuple[str, dict[str, pd.DataFrame]]],
                     key: str) -> None:
    """Every member predicted the same exams of every split, each once."""
    for name, tables in members:
        for split, table in tables.items():
            twice = table.exam_id[table.exam_id.duplicated()]
            if len(twice):
                raise UserError(f"{key}: {name} predicted exam_id {twice.iloc[0]} of the {split} "
                                f"split more than once ({len(twice)} repeats); an ensemble "
                                f"averages one prediction per exam")
    first_name, first = members[0]
    for name, tables in members[1:]:
        for split in [s for s in SPLITS if s in first or s in tables]:
            a = set(first[split].exam_id) if split in first else set()
            b = set(tables[split].exam_id) if split in tables else set()
            if a != b:
                raise UserError(f"{key}: {first_name} and {name} predicted different {split} "
                                f"exams ({len(a - b)} only in the first, {len(b - a)} only in "
                                f"the second); an ensemble needs runs of the same split (same "
                                f"dataset and split_seed)")


def mean_ensemble(members: Sequence[dict[str, pd.DataFrame]], prediction_columns: list[str],
                  ) -> dict[str, pd.DataFrame]:
    """The members' prediction columns averaged per exam (members of the same exams: see
    :func:`check_same_exams`), in the first member's row order."""
    ensemble = {}
    for split in members[0]:
        tables = [m[split].set_index("exam_id") for m in members if split in m]
        common = tables[0].index
        for table in tables[1:]:
            common = common.intersection(table.index, sort=False)
        mean = sum(t.loc[common, prediction_columns] for t in tables) / len(tables)
        merged = tables[0].loc[common].copy()
        merged[prediction_columns] = mean
        ensemble[split] = merged.reset_index()
    return ensemble


def member_spread(reports: Sequence[dict]) -> pd.DataFrame:
    """Mean, standard deviation, min and max of every flattened metric over the members."""
    flat = pd.DataFrame([flatten_report(r) for r in reports])
    return flat.agg(["mean", "std", "min", "max"]).T.rename_axis("metric").reset_index()


def _load_scores(path: Path, names: list[str], n_rows: int, labels: Path,
                 key: str = "predictions") -> np.ndarray:
    """The scores of ``predictions=`` (or ``key``): an ``.npy`` (N, labels) or a CSV with one
    column per label, checked against the labels table's shape and for finite values."""
    expected = (f"{key} expects an .npy of shape ({n_rows}, {len(names)}) or a CSV with "
                f"the score columns {', '.join(names)} (label_columns, default the columns of "
                f"{labels}) in the row order of {labels}")
    if path.suffix == ".npy":
        if not path.is_file():
            raise UserError(f"{key}: no file '{path}'; {expected}")
        try:
            scores = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise UserError(f"{key}: '{path}' is not a NumPy .npy array "
                            f"({first_line(error)}); {expected}") from error
        if not isinstance(scores, np.ndarray) or not np.issubdtype(scores.dtype, np.number):
            raise UserError(f"{key}: '{path}' does not hold a numeric array; {expected}")
        if scores.ndim == 1 and len(names) == 1:
            scores = scores[:, None]
        where = "array"
    else:
        table = read_csv_table(path, key, expected)
        require_columns(table, names, path, key, expected)
        scores = np.column_stack([finite_column(table, n, path, key) for n in names])
        where = "table"
    if scores.shape != (n_rows, len(names)):
        raise UserError(f"{key}: '{path}' has shape {scores.shape}, but {labels} has "
                        f"{n_rows} rows and {len(names)} label columns; {expected}")
    bad = ~np.isfinite(scores.astype(np.float64))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise UserError(f"{key}: '{path}' holds {scores[row, column]} at row {row + 1}, "
                        f"column {column + 1} (label {names[column]}) of the {where} "
                        f"({int(bad.sum())} such values); scores must be finite numbers")
    return scores.astype(np.float64)


def prediction_files(predictions: str | Path, labels: str | Path,
                     label_columns: Sequence[str] | None = None,
                     key: str = "predictions") -> dict[str, pd.DataFrame]:
    """Outputs made elsewhere as a ``test`` predictions table: an ``.npy`` (N, labels) or a
    CSV of scores in the row order of a labels CSV (e.g. CODE-test ``gold_standard.csv``)."""
    labels = Path(labels)
    labels_table = read_csv_table(labels, "labels_csv", "labels_csv expects a CSV with one "
                                  "0/1 column per label (e.g. CODE-test "
                                  "annotations/gold_standard.csv)")
    names = [str(n) for n in (label_columns or labels_table.columns)]
    missing = [n for n in names if n not in labels_table.columns]
    if missing:
        raise UserError(f"label_columns: {missing} not in {labels} "
                        f"(columns: {', '.join(map(str, labels_table.columns))})")
    targets = {name: binary_column(labels_table, name, labels, "labels_csv") for name in names}
    scores = _load_scores(Path(predictions), names, len(labels_table), labels, key)
    table = pd.DataFrame(scores, columns=[score_of(n) for n in names])
    table.insert(0, "exam_id", np.arange(len(table)))
    for name in names:
        table[target_of(name)] = targets[name]
    return {"test": table}


def predicted_table(path: Path, key: str = "predictions") -> pd.DataFrame:
    """An ``ecgexp-predict`` table of binary labels (``score_<label>`` and ``target_<label>``
    columns, e.g. published weights on CODE-test) as a ``test`` predictions table."""
    expected = (f"{key} without labels_csv expects an ecgexp-predict CSV with {SCORE}<label> "
                f"and {TARGET}<label> columns (a dataset with labels), or give labels_csv=<csv>")
    table = read_csv_table(path, key, expected)
    names = [name for name in scored_names(table.columns) if target_of(name) in table]
    if not names:
        raise UserError(f"{key}: '{path}' has no {SCORE}<label> column with a "
                        f"{TARGET}<label> beside it; {expected}")
    columns = ["exam_id", *(column for n in names for column in (score_of(n), target_of(n)))]
    require_columns(table, ["exam_id"], path, key, expected)
    usable = table[columns].notna().all(axis=1)
    if not usable.all():
        log.warning("%s: %d of %d exams of %s without a score or a target are not "
                    "evaluated", key, int((~usable).sum()), len(table), path)
    kept = columns + (["record"] if "record" in table else [])  # names Challenge outputs
    table = table.loc[usable, kept].reset_index(drop=True)
    for name in names:
        finite_column(table, score_of(name), path, key)
        table[target_of(name)] = binary_column(table, target_of(name), path, key)
    return table


def exam_attributes(run_config: DictConfig, run_folder: str | Path | None = None,
                    data_root: str | Path | None = None) -> pd.DataFrame:
    """The exam table of the run's dataset (age, sex, death, timey, AF timelines, ...), read
    where the run found it (:func:`located_dataset`)."""
    # Imported here: the DataModule brings Lightning, which a report of a predictions file
    # alone never needs (2 s of every ecgexp-evaluate and ecgexp-compare start-up).
    from ecgexp.data.build import build_datamodule

    datamodule = build_datamodule(located_dataset(run_config, run_folder, data_root))
    datamodule.setup()
    return datamodule.table.drop(columns=["file_index", "row"], errors="ignore")
