"""What ``ecgexp-compare`` compares: run folders, the members of a sweep, or prediction files,
each read as one predictions table, aligned on the exams they share, with the thresholds
each entry's labels are taken at.

A ``runs=`` entry is a run folder (its ``predictions_<split>.csv``, its task and the
thresholds chosen on its validation split) or a file:

- with ``labels_csv=``, an ``.npy`` (N, labels) or CSV of scores in the row order of that
  labels table (outputs made elsewhere, e.g. the published CODE-test predictions);
- without, a predictions table as ecgexp writes it: an ``ecgexp-predict`` CSV or a run's
  ``predictions_<split>.csv``, of the task of the run folders beside it, or of binary labels
  (``score_<label>`` with ``target_<label>``) when no run folder is compared.

A file carries no validation split: its labels are thresholded at ``thresholds=`` (one per
label, which then holds for every entry), else they are not thresholded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig

from ecgexp.columns import TARGET, names_with, score_of, scored_names, target_of
from ecgexp.errors import UserError
from ecgexp.evaluation.inputs import (
    load_run,
    predicted_table,
    prediction_files,
    read_external,
)
from ecgexp.evaluation.report import flatten_report
from ecgexp.run_folder import RunFolder

log = logging.getLogger(__name__)


@dataclass
class Compared:
    """The compared entries, in the order given: ``names`` (their paths), ``tables`` (one
    predictions table each, restricted to the shared exams, in one exam order) and
    ``thresholds`` (``{label: threshold}`` each, empty where labels are not thresholded);
    ``validation``: a run's own validation predictions (None for a file); ``objective`` is
    the task's (or binary labels' for prediction files alone)."""

    names: list[str]
    tables: list[pd.DataFrame]
    thresholds: list[dict]
    validation: list[pd.DataFrame | None]
    objective: object


def compared_entries(cfg: DictConfig, entries: list[Path], key: str,
                     labels_objective) -> Compared:
    """Every entry of ``runs=`` (or ``multirun=``) read (:func:`entry_kind`), checked for
    one task and one label set, and aligned (:func:`aligned`). ``labels_objective(labels)``
    is the objective of prediction files compared without a run (binary labels)."""
    kinds = [entry_kind(entry, key) for entry in entries]
    loaded = {i: load_run(entry, key, cfg.allow_modules) for i, entry in enumerate(entries)
              if kinds[i] == "run"}
    tasks = {config.task.name for config, _ in loaded.values()}
    if len(tasks) > 1:
        raise UserError(f"{key}: the runs are of different tasks ({', '.join(sorted(tasks))}); "
                        f"compare runs of one task")
    objective = instantiate(next(iter(loaded.values()))[0].task.objective) if loaded else None
    tables = []
    for i, entry in enumerate(entries):
        if kinds[i] == "run":
            tables.append(_split_table(entry, loaded[i][1], cfg.compared_split))
        else:
            tables.append(_file_table(entry, cfg, objective, loaded, key))
            objective = objective or labels_objective(_score_labels(tables[-1]))
    _check_columns(tables, entries, objective, key)
    thresholds = [_thresholds(cfg, objective, loaded[i][1] if i in loaded else None, entries[i])
                  for i in range(len(entries))]
    validation = [loaded[i][1].get("val") if i in loaded else None for i in range(len(entries))]
    tables = aligned(tables, entries, bool(cfg.allow_partial), key)
    check_same_targets(tables, entries, key)
    return Compared([str(entry) for entry in entries], tables, thresholds, validation,
                    objective)


def entry_kind(entry: Path, key: str) -> str:
    """``run`` for a folder, ``file`` for a file, else one line naming the entry."""
    if entry.is_dir():
        return "run"
    if entry.is_file():
        return "file"
    raise UserError(f"{key}: '{entry}' is neither a run folder nor a predictions file")


def _split_table(folder: Path, predictions: dict[str, pd.DataFrame], split: str):
    if split not in predictions:
        raise UserError(f"compared_split: '{folder}' has no "
                        f"{RunFolder(folder).predictions(split).name} (splits: "
                        f"{', '.join(predictions)})")
    return predictions[split]


def _file_table(path: Path, cfg: DictConfig, objective, loaded: dict, key: str):
    """A prediction file as a predictions table (the module docstring's kinds)."""
    if cfg.labels_csv:
        labels = list(cfg.label_columns) if cfg.label_columns else None
        return prediction_files(path, cfg.labels_csv, labels, key)["test"]
    if objective is not None:
        task = next(iter(loaded.values()))[0].task.name
        return read_external(path, objective, task, key)
    return predicted_table(path, key)


def _score_labels(table: pd.DataFrame) -> list[str]:
    return scored_names(table.columns)


def _check_columns(tables: list[pd.DataFrame], entries: list[Path], objective,
                   key: str) -> None:
    """Every entry holds the prediction and target columns of the first one's task."""
    needed = [*objective.prediction_columns,
              *(target_of(name) for name in objective.target_columns)]
    for entry, table in zip(entries, tables):
        missing = [column for column in needed if column not in table]
        if missing:
            raise UserError(f"{key}: '{entry}' has no {', '.join(missing)}; the compared "
                            f"entries must predict the same labels (those of '{entries[0]}')")


def _thresholds(cfg: DictConfig, objective, predictions: dict | None, entry: Path) -> dict:
    """``thresholds=`` when given (one per label), else a run's validation thresholds, else
    (a file) none."""
    if cfg.thresholds is not None:
        values = list(cfg.thresholds)
        if len(values) != len(objective.target_columns):
            raise UserError(f"thresholds: {len(values)} values for the "
                            f"{len(objective.target_columns)} labels "
                            f"{list(objective.target_columns)}; give one per label")
        return dict(zip(objective.target_columns, values))
    if predictions is None:
        log.info("compare: '%s' is a file without thresholds=; its labels are not "
                 "thresholded (no McNemar test)", entry)
        return {}
    if "val" not in predictions:
        return {}
    return objective.thresholds(objective.evaluate(predictions))


def run_folders(cfg: DictConfig) -> tuple[list[Path], str]:
    """The compared entries (``runs=``, else the members of ``multirun=``) and the key that
    named them."""
    if cfg.runs and cfg.multirun:
        raise UserError("runs: give runs=[<A>,<B>] or multirun=<sweep folder>, not both")
    key = "multirun" if cfg.multirun else "runs"
    try:
        runs = (RunFolder.sweep_members(cfg.multirun) if cfg.multirun
                else [Path(r) for r in cfg.runs])
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    if len(runs) < 2:
        raise UserError(f"{key}: give two or more run folders or prediction files to compare, "
                        f"runs=[<A>,<B>], or a sweep folder with two or more finished members, "
                        f"multirun=<folder>"
                        + (f" ('{cfg.multirun}' has {len(runs)})" if cfg.multirun else ""))
    return runs, key


def best_first(entries: list[Path], key: str) -> list[Path]:
    """``entries`` with the best run first (``reference=best``): the best validation value of
    the runs' ``optimized_metric`` (their ``config.yaml``, e.g. ``val/macro/auroc``, higher
    better unless ``optimized_direction`` is ``minimize``), from each ``metrics.json``."""
    values, settings = [], set()
    for entry in entries:
        if not entry.is_dir():
            raise UserError(f"reference: '{entry}' is a file; reference=best ranks run folders "
                            f"by their validation metric: compare run folders, or "
                            f"reference=first")
        folder = RunFolder(entry)
        config = yaml.safe_load(folder.config.read_text()) or {}
        metric, direction = config.get("optimized_metric"), config.get("optimized_direction")
        if not metric or not str(metric).startswith("val/"):
            raise UserError(f"reference: the run '{entry}' has no validation optimized_metric "
                            f"({folder.config.name}: {metric!r}); reference=best needs one "
                            f"(task.optimized_metric, e.g. val/macro/auroc), or reference=first")
        settings.add((metric, direction))
        value = flatten_report(member_metrics(entry)).get(metric, float("nan"))
        values.append(-value if direction == "minimize" else value)
    if len(settings) > 1:
        raise UserError(f"reference: the {key} optimise different metrics "
                        f"({', '.join(sorted(m for m, _ in settings))}); reference=best ranks "
                        f"runs of one task")
    if np.all(np.isnan(values)):
        raise UserError(f"reference: no run of {key} has a finite {settings.pop()[0]} in its "
                        f"{RunFolder(entries[0]).metrics.name}; reference=first")
    best = int(np.nanargmax(values))
    log.info("reference=best: %s (%s %.4f)", entries[best], settings.pop()[0],
             abs(values[best]))
    return [entries[best], *entries[:best], *entries[best + 1:]]


def aligned(tables: list[pd.DataFrame], entries: list[Path], allow_partial: bool,
            key: str = "runs") -> list[pd.DataFrame]:
    """The tables restricted to their shared exams, in one exam order; refused with the
    counts when the entries predicted different exams (unless ``allow_partial``)."""
    shared = set(tables[0].exam_id)
    for table in tables[1:]:
        shared &= set(table.exam_id)
    for entry, table in zip(entries, tables):
        unusable = table.attrs.get("unusable", 0)
        if unusable and not allow_partial:
            raise UserError(f"{key}: '{entry}' has {unusable} exams without a score or a target "
                            f"(NaN) of its {len(table) + unusable}; compare entries that "
                            f"predicted every exam, or set allow_partial=true to compare the "
                            f"exams all of them predicted")
    for entry, table in zip(entries, tables):
        if len(shared) < len(table) and not allow_partial:
            raise UserError(f"{key}: the runs share {len(shared)} exams, but '{entry}' "
                            f"predicted {len(table)} (different splits or datasets); compare "
                            f"runs of one split, or set allow_partial=true to compare the "
                            f"shared exams only")
    if not shared:
        raise UserError(f"{key}: the runs share no exam; they predicted different datasets")
    order = sorted(shared, key=str)
    return [t.set_index("exam_id").loc[order].reset_index() for t in tables]


def check_same_targets(tables: list[pd.DataFrame], entries: list[Path], key: str) -> None:
    """The aligned entries agree on the target of every shared exam: runs scored against
    different labels (flipped labels, another label table, changed events) are not compared."""
    first = tables[0]
    for entry, table in zip(entries[1:], tables[1:]):
        for column in [target_of(n) for n in names_with(first.columns, TARGET)
                       if target_of(n) in table]:
            a, b = first[column].to_numpy(), table[column].to_numpy()
            differ = ~((a == b) | (pd.isna(a) & pd.isna(b)))
            if differ.any():
                i = int(np.flatnonzero(differ)[0])
                raise UserError(
                    f"{key}: '{entry}' and '{entries[0]}' disagree on {column} for "
                    f"{int(differ.sum())} of their {len(first)} shared exams (exam_id "
                    f"{first.exam_id.iloc[i]}: {b[i]} vs {a[i]}); they were scored against "
                    f"different labels: compare runs evaluated on the same labels")


def check_probabilities(compared: Compared, labels: list[str], split: str, key: str) -> None:
    """The binary labels' scores are probabilities (calibration and net benefit need them)."""
    for name, table in zip(compared.names, compared.tables):
        where = RunFolder(name).predictions(split) if Path(name).is_dir() else name
        for label in labels:
            scores = table[score_of(label)]
            outside = (scores < 0) | (scores > 1)
            if outside.any():
                raise UserError(f"{key}: '{where}' holds {scores[outside].iloc[0]} in "
                                f"{score_of(label)} ({int(outside.sum())} such values); scores of "
                                f"a binary label must be probabilities in [0, 1], as ecgexp "
                                f"writes them")


# ----------------------------------------------------------------------------- sweeps
def member_table(members: list[Path], split: str) -> pd.DataFrame:
    """One row per member of a sweep: its folder, the overrides whose values differ between
    the members (``.hydra/overrides.yaml``; empty where a member has none of a key) and its
    metrics of ``split`` (``metrics.json``, flattened: ``<split>/<row>/<metric>``)."""
    overrides = [member_overrides(member) for member in members]
    keys = list(dict.fromkeys(k for values in overrides for k in values))
    differing = [k for k in keys if len({values.get(k) for values in overrides}) > 1]
    rows = []
    for member, values in zip(members, overrides):
        metrics = member_metrics(member)
        rows.append({"run": str(member), **{k: values.get(k) for k in differing},
                     **flatten_report({split: metrics.get(split, {})})})
    return pd.DataFrame(rows)


def member_overrides(member: Path) -> dict[str, str]:
    """``{key: value}`` of the command-line overrides Hydra saved for a sweep member
    (``+key=value`` as ``key``; a deletion ``~key`` has the value ``""``)."""
    path = member / ".hydra" / "overrides.yaml"
    if not path.is_file():
        raise UserError(f"multirun: '{member}' has no .hydra/overrides.yaml, so its "
                        f"hyperparameters are unknown; give the folder of a sweep ecgexp ran "
                        f"(ecgexp -m ...), or compare the runs with runs=[<A>,<B>]")
    try:
        items = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"multirun: '{path}' is not readable YAML "
                        f"({str(error).splitlines()[0]})") from None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise UserError(f"multirun: '{path}' is not a list of overrides (key=value), as Hydra "
                        f"writes it")
    pairs = (item.partition("=") for item in items)
    return {key.lstrip("+"): value for key, _, value in pairs}


def member_metrics(member: Path) -> dict:
    """A sweep member's ``metrics.json``."""
    path = RunFolder(member).metrics
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"multirun: '{path}' is not readable JSON ({error})") from None
    if not isinstance(metrics, dict):
        raise UserError(f"multirun: '{path}' holds no metrics mapping, as ecgexp writes it")
    return metrics
