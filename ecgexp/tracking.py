"""Experiment tracking: the loggers of a run (``logger`` group: CSV, TensorBoard, W&B), what
they receive at the start (the full resolved config, flattened, and the training statistics)
and at the end (the metrics; for W&B also the report plots, the test predictions table and,
when enabled, the best checkpoint).

``wandb`` is imported only when a W&B logger publishes its results.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import loggers as pl_loggers

from ecgexp.evaluation.report import flatten
from ecgexp.run_folder import RunFolder

log = logging.getLogger(__name__)


class WandbLogger(pl_loggers.WandbLogger):
    """Lightning's W&B logger with what ecgexp publishes at the end of a run.

    Args:
        checkpoint_artifact: upload the best checkpoint as a W&B artifact of type ``model``.
        table_rows: rows of ``predictions_test.csv`` logged as a W&B table (None: all).
        **kwargs: :class:`pytorch_lightning.loggers.WandbLogger` and ``wandb.init`` arguments.
    """

    def __init__(self, *, checkpoint_artifact: bool = False, table_rows: int | None = 1000,
                 **kwargs):
        super().__init__(**kwargs)
        self.checkpoint_artifact = checkpoint_artifact
        self.table_rows = table_rows


def run_identity(cfg: DictConfig) -> dict:
    """A W&B run's ``name``, ``group`` and ``tags`` derived from the run's config and, when Hydra
    runs the job, the chosen experiment and model and the sweep.

    name: ``<experiment or task>-<dataset>-seed<seed>`` (``-<job number>`` in a multirun);
    group: ``<experiment or task>`` (``-<sweep folder>`` in a multirun, so the runs of one sweep,
    e.g. ``-m seed=0,1,2``, form one group); tags: task, dataset, model and experiment.
    """
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    choices = hydra.runtime.choices if hydra else {}
    experiment = choices.get("experiment")
    label = experiment or cfg.task.name
    name, group = f"{label}-{cfg.dataset.name}-seed{cfg.seed}", label
    if hydra and hydra.mode == RunMode.MULTIRUN:
        name, group = f"{name}-{hydra.job.num}", f"{label}-{Path(hydra.sweep.dir).name}"
    tags = [cfg.task.name, cfg.dataset.name, choices.get("model"), experiment]
    return {"name": name, "group": group, "tags": [t for t in tags if t]}


def instantiate_loggers(cfg: DictConfig) -> list[pl_loggers.Logger]:
    """Every logger of the ``logger`` group; a W&B logger's ``name`` and ``group`` left null are
    derived (:func:`run_identity`) and its ``tags`` are added to the derived ones."""
    loggers = []
    for entry in (cfg.get("logger") or {}).values():
        if entry is None:
            continue
        if issubclass(get_class(entry._target_), pl_loggers.WandbLogger):
            identity = run_identity(cfg)
            loggers.append(instantiate(
                entry, name=entry.get("name") or identity["name"],
                group=entry.get("group") or identity["group"],
                tags=list(dict.fromkeys([*identity["tags"], *(entry.get("tags") or [])]))))
        else:
            loggers.append(instantiate(entry))
    return loggers


def keep_history(loggers: list[pl_loggers.Logger], through_epoch: int) -> None:
    """For a run continued from the checkpoint of epoch ``through_epoch``: Lightning's CSV
    logger deletes ``metrics.csv`` when it starts, so the rows of the epochs up to that one
    are read first and written back at once (the rows of later, lost epochs are dropped:
    those epochs run again)."""
    for logger in loggers:
        if not isinstance(logger, pl_loggers.CSVLogger):
            continue
        path = Path(logger.log_dir) / "metrics.csv"
        if not path.is_file():
            continue
        with open(path, newline="") as handle:
            rows = [{k: v for k, v in row.items() if v not in ("", None)}
                    for row in csv.DictReader(handle)
                    if row.get("epoch") and float(row["epoch"]) <= through_epoch]
        writer = logger.experiment  # deletes the file
        writer.metrics[:0] = rows
        writer.save()
        log.info("history: kept %d rows of epochs 0-%d in %s", len(rows), through_epoch, path)


def flat_config(cfg: DictConfig) -> dict:
    """The resolved config as ``{"optimizer.lr": 0.001, "model.blocks": [[64, 4096], ...]}``:
    nested keys joined by dots, lists kept as values, nothing left out."""
    return flatten(OmegaConf.to_container(cfg, resolve=True), ".")


def log_config(loggers: list[pl_loggers.Logger], cfg: DictConfig, statistics: dict) -> None:
    """Logs the flattened config and the training statistics (``training_statistics.*``) as
    hyperparameters to every logger."""
    params = {**flat_config(cfg), **flatten({"training_statistics": statistics}, ".")}
    for logger in loggers:
        logger.log_hyperparams(params)


def wants_report(loggers: list[pl_loggers.Logger]) -> bool:
    """Whether a logger publishes the report plots (W&B does)."""
    return any(isinstance(logger, WandbLogger) for logger in loggers)


def publish_results(loggers: list[pl_loggers.Logger], metrics: dict[str, float],
                    output_dir: Path, report_folder: Path | None,
                    best_checkpoint: str | None) -> None:
    """End of a run. The flattened val/test ``metrics`` go to the W&B run summary (one value per
    run, what the W&B runs table compares) and as final metrics to the other loggers. W&B also
    receives the plots of ``report_folder``, the test predictions table and, with
    ``checkpoint_artifact``, the best checkpoint; its run is then finished, so that the next
    job of a multirun starts a new one."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            predictions = RunFolder(output_dir).predictions("test")
            publish_to_wandb(logger.experiment, metrics, report_folder,
                             predictions if predictions.is_file() else None, logger.table_rows,
                             best_checkpoint if logger.checkpoint_artifact else None)
        else:
            logger.log_metrics(metrics)
            logger.save()


def publish_to_wandb(run, metrics: dict[str, float], report_folder: Path | None,
                     predictions: Path | None = None, table_rows: int | None = 1000,
                     checkpoint: str | None = None) -> None:
    """The one W&B publishing path (training runs and ``ecgexp-evaluate report_logger=wandb``):
    ``metrics`` into the run summary, the report's PNG plots as ``plots/<name>``, the first
    ``table_rows`` rows of a predictions table, the checkpoint as a ``model`` artifact; then
    the run is finished."""
    import wandb

    run.summary.update(metrics)
    media = {f"plots/{path.stem}": wandb.Image(str(path))
             for path in sorted(Path(report_folder).glob("*.png"))} if report_folder else {}
    if predictions is not None:
        media["predictions_test"] = wandb.Table(dataframe=pd.read_csv(predictions,
                                                                      nrows=table_rows))
    if media:
        run.log(media)
    if checkpoint:
        artifact = wandb.Artifact(f"model-{run.id}", type="model")
        artifact.add_file(checkpoint, name=Path(checkpoint).name)
        run.log_artifact(artifact, aliases=["best"])
    run.finish()
