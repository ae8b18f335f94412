"""``ecgexp-evaluate``: a run folder (or several, as a mean ensemble, or prediction files made
elsewhere) -> its task's report: the metrics of its objective, and the analyses the objective
names (:mod:`ecgexp.evaluation.analyses`: bootstrap intervals, calibration, strata, survival,
figures), written to ``report/`` as CSV, Markdown and PNG; optionally agreement with other
readers and the PhysioNet Challenge export.

It reads predictions tables and the run's resolved config; it never trains or predicts.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from ecgexp.columns import score_of, scored_names, target_of
from ecgexp.data.labels import read_csv_table
from ecgexp.errors import UserError
from ecgexp.evaluation.agreement import agreement_analyses
from ecgexp.evaluation.analyses import ANALYSES, OPTIONAL, ReportInputs
from ecgexp.evaluation.binary import binary_report
from ecgexp.evaluation.inputs import (
    check_same_exams,
    exam_attributes,
    load_run,
    mean_ensemble,
    member_spread,
    predicted_table,
    prediction_files,
    read_external,
)
from ecgexp.evaluation.outputs import (
    challenge_export,
    check_export_folder,
    write_table,
)
from ecgexp.evaluation.report import flatten_report, print_report, report_json
from ecgexp.evaluation.tables import binary_column, require_columns
from ecgexp.files import (
    check_new_folder,
    distinct_file_names,
    staged_folder,
    writable_folder,
    write_text_atomic,
)
from ecgexp.progress import counting
from ecgexp.run_folder import RunFolder, check_links_inside
from ecgexp.tasks.objectives import MultiLabel

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Writes the report of the inputs ``cfg`` names; returns the flattened task metrics."""
    out, run_config, predictions, members, run_folder = _inputs(cfg)
    if run_config is not None:
        objective = instantiate(run_config.task.objective)
        label_key = "task.objective"
    else:  # prediction files: binary labels
        objective = MultiLabel(_score_labels(predictions))
        label_key = "label_columns"
    distinct_file_names(objective.target_columns, label_key, "the label list")  # one figure each
    check_new_folder(out, "output_dir", "report")
    export_split = _export_split(cfg, objective, predictions) if cfg.challenge_export else None
    attributes = (exam_attributes(run_config, run_folder, cfg.get("data_root"))
                  if run_config is not None and cfg.dataset_attributes else None)
    with staged_folder(out, "output_dir", "report") as staging:
        report, thresholds = _write_report(cfg, objective, run_config, predictions, members,
                                           attributes, staging)
        if export_split is not None:
            _export(cfg, predictions[export_split], objective, thresholds, attributes)
    metrics = flatten_report(report)
    print_report(report, title="evaluation")
    print(f"Report folder: {out.resolve()}")
    if cfg.report_logger == "wandb":
        _log_to_wandb(cfg, metrics, out)
    return metrics


def _write_report(cfg: DictConfig, objective, run_config: DictConfig | None,
                  predictions: dict[str, pd.DataFrame], members: list, attributes,
                  out: Path) -> tuple[dict, dict]:
    """The report's files, written into ``out``; returns the report and the thresholds."""
    tables: dict[str, pd.DataFrame] = {}
    if run_config is not None:
        report = objective.evaluate(predictions)
        if members:
            tables["ensemble_members"] = member_spread([objective.evaluate(m) for m in members])
            for split, table in predictions.items():
                write_text_atomic(RunFolder(out).predictions(split), table.to_csv(index=False),
                                  "output_dir")
    thresholds = _thresholds(cfg, objective, report if run_config is not None else None)
    if run_config is None:
        report = binary_report(predictions, objective.target_columns, thresholds)
    inputs = ReportInputs(predictions, objective, thresholds, attributes, cfg, out)
    tables.update(run_analyses(objective.analyses, inputs))
    if objective.thresholded_labels and cfg.compare:
        tables.update(_compare(cfg, predictions["test"], thresholds))
    write_text_atomic(RunFolder(out).metrics, report_json(report), "output_dir")
    write_table(pd.Series(flatten_report(report), name="value").rename_axis("metric")
                .reset_index(), out / "metrics")
    for name, table in tables.items():
        write_table(table, out / name)
    return report, thresholds


def run_analyses(names, inputs: ReportInputs) -> dict[str, pd.DataFrame]:
    """The analyses ``names`` (the objective's), then the objective's own report sections
    (``objective.report``); those of :data:`OPTIONAL` that the data cannot support (no
    events, an empty group) are skipped with a warning and listed in a ``skipped`` table."""
    tables, skipped = {}, []
    names = [name for name in names if name not in OPTIONAL or inputs.attributes is not None]
    with counting("evaluating", len(names), "analyses", interval=0) as advance:
        for name in names:
            try:
                tables.update(ANALYSES[name](inputs))
            except ValueError as error:
                if name not in OPTIONAL:
                    raise
                log.warning("%s analysis skipped: %s", name, error)
                skipped.append({"analysis": name, "reason": str(error)})
            advance(note=name)
    own = inputs.objective.report(inputs)  # the task kind's own sections
    taken = sorted(set(own) & (set(tables) | {"metrics", "skipped"}))
    if taken:
        raise UserError(f"task.objective: {type(inputs.objective).__name__}.report names the "
                        f"section {', '.join(map(repr, taken))}, which an analysis writes "
                        f"already; give it another name")
    tables.update(own)
    if skipped:
        tables["skipped"] = pd.DataFrame(skipped)
    return tables


def _score_labels(predictions: dict[str, pd.DataFrame]) -> list[str]:
    first = next(iter(predictions.values()))
    return scored_names(first.columns)


def _inputs(cfg: DictConfig):
    runs = list(cfg.runs) or (RunFolder.sweep_members(cfg.multirun) if cfg.multirun else [])
    if runs:
        key = "runs" if cfg.runs else "multirun"
        loaded = [load_run(folder, key, cfg.allow_modules) for folder in runs]
        run_config, _ = loaded[0]
        tasks = {config.task.name for config, _ in loaded}
        if len(tasks) > 1:
            raise UserError(f"{key}: an ensemble needs runs of one task, got {sorted(tasks)}")
        objective = instantiate(run_config.task.objective)
        members = [t for _, t in loaded]
        check_same_exams(list(zip(map(str, runs), members)), key)
        predictions = mean_ensemble(members, objective.prediction_columns)
        if not cfg.output_dir:  # the report goes into the sweep folder
            check_links_inside(Path(runs[0]).parent, key)
        out = Path(cfg.output_dir or Path(runs[0]).parent / "ensemble_report")
        return out, run_config, predictions, members, Path(runs[0])
    if cfg.run:
        run_config, predictions = load_run(cfg.run, "run", cfg.allow_modules)
        if not cfg.output_dir:  # the report goes into the run folder
            check_links_inside(Path(cfg.run), "run")
        out = Path(cfg.output_dir or RunFolder(cfg.run).report)
        if cfg.predictions:  # an ecgexp-predict table, at the run's validation thresholds
            path = Path(cfg.predictions)
            if path.stem in predictions:
                raise UserError(f"predictions: '{path.stem}' is already a split of the run; "
                                f"rename the file")
            objective = instantiate(run_config.task.objective)
            predictions[path.stem] = read_external(path, objective, run_config.task.name,
                                                   "predictions")
            out = Path(cfg.output_dir or path.with_name(f"{path.stem}_report"))
        return out, run_config, predictions, [], Path(cfg.run)
    if cfg.predictions and cfg.labels_csv:
        predictions = prediction_files(cfg.predictions, cfg.labels_csv, cfg.label_columns)
        return Path(cfg.output_dir or RunFolder(".").report), None, predictions, [], None
    if cfg.predictions:
        predictions = {"test": predicted_table(Path(cfg.predictions))}
        return Path(cfg.output_dir or RunFolder(".").report), None, predictions, [], None
    raise UserError("evaluate: give run=<run folder>, runs=[...], multirun=<sweep folder>, "
                    "predictions=<file> labels_csv=<csv> or predictions=<ecgexp-predict CSV>")


def _thresholds(cfg: DictConfig, objective, report: dict | None) -> dict[str, float]:
    """The thresholds of the binary labels: ``thresholds=`` when given, else those the
    objective chose on validation (0.5 for prediction files without ``thresholds``)."""
    labels = objective.thresholded_labels
    if not labels:
        return {}
    if cfg.thresholds is not None:
        values = list(cfg.thresholds)
        if len(values) != len(labels):
            raise UserError(f"thresholds: {len(values)} values for {len(labels)} labels "
                            f"{labels}")
        return dict(zip(labels, values))
    chosen = objective.thresholds(report) if report is not None else {}
    return {label: chosen.get(label, 0.5) for label in labels}


def _export_split(cfg: DictConfig, objective, predictions: dict[str, pd.DataFrame]) -> str:
    """The split ``challenge_export`` writes, checked before the report is: the predicted
    dataset of ``predictions=`` (every exam with a prediction and a target), else the run's
    test split."""
    if not objective.thresholded_labels:
        raise UserError("challenge_export: the run's task has no binary label to export; "
                        "the Challenge outputs are those of a Chagas (binary) run")
    split = Path(cfg.predictions).stem if cfg.run and cfg.predictions else "test"
    if split not in predictions:
        raise UserError(f"challenge_export: the run has no {RunFolder('.').predictions(split)} "
                        f"to export; give predictions=<an ecgexp-predict CSV> of the records to "
                        f"export")
    check_export_folder(Path(cfg.challenge_export))
    writable_folder(cfg.challenge_export, "challenge_export")
    return split


def _export(cfg: DictConfig, table: pd.DataFrame, objective, thresholds: dict[str, float],
            attributes: pd.DataFrame | None) -> None:
    """``<record>.txt`` per exam of ``table``, named by its ``record`` column (an
    ``ecgexp-predict`` table of records), else by the run's dataset's, else by exam id."""
    label = objective.target_columns[0]
    names = None
    if "record" in table:
        names = table.record
    elif attributes is not None and "record" in attributes:
        records = attributes.drop_duplicates("exam_id").set_index("exam_id").record
        names = table.exam_id.map(records)
    count = challenge_export(table, label, thresholds[label], Path(cfg.challenge_export),
                             names)
    log.info("challenge_export: %d outputs in %s", count, cfg.challenge_export)


def _compare(cfg: DictConfig, test: pd.DataFrame, thresholds: dict[str, float]):
    labels = list(thresholds)
    predicted = pd.DataFrame({label: (test[score_of(label)] >= thresholds[label]).astype(int)
                              for label in labels})
    truth = pd.DataFrame({label: test[target_of(label)].to_numpy() for label in labels})
    others = {}
    for name, path in cfg.compare.items():
        key, path = f"compare.{name}", Path(path)
        expected = (f"{key} expects a CSV of 0/1 annotations with the columns "
                    f"{', '.join(labels)}, in the row order of the predictions")
        table = read_csv_table(path, key, expected)
        require_columns(table, labels, path, key, expected)
        if len(table) != len(test):
            raise UserError(f"compare.{name}: '{path}' has {len(table)} rows, the predictions "
                            f"have {len(test)}; {expected}")
        others[name] = pd.DataFrame({label: binary_column(table, label, path, key)
                                     for label in labels})
    return agreement_analyses(predicted, others, truth, labels)


def _log_to_wandb(cfg: DictConfig, metrics: dict[str, float], out: Path) -> None:
    """``report_logger=wandb``: the metrics and figures as a W&B run of job type
    ``evaluate``, through the one publishing path of :mod:`ecgexp.tracking`."""
    import wandb

    from ecgexp.tracking import publish_to_wandb

    run = wandb.init(project=cfg.wandb.project, dir=str(out), job_type="evaluate",
                     name=cfg.wandb.name or "evaluate")
    publish_to_wandb(run, metrics, out)


def default_settings() -> DictConfig:
    """``evaluate.yaml`` composed with its groups, as ``ecgexp-evaluate`` without overrides
    (inside a running Hydra app, such as a training run, through that app's search path)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("evaluate")
    with initialize_config_module("ecgexp.conf", version_base="1.3"):
        return compose("evaluate")


def write_run_report(run_folder: Path) -> Path:
    """``ecgexp-evaluate run=<run_folder> dataset_attributes=false`` with the default
    settings (the end of a training run whose loggers publish figures); returns the report
    folder."""
    settings = default_settings()
    settings.run, settings.dataset_attributes = str(run_folder), False
    with contextlib.redirect_stdout(io.StringIO()):  # the same tables as the run prints
        evaluate(settings)
    log.info("report: %s", RunFolder(run_folder).report)
    return RunFolder(run_folder).report
