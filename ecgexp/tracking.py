"""Experiment tracking: the loggers of a run (``logger`` group: CSV, TensorBoard, W&B), what
they receive at the start (the full resolved config, flattened, and the training statistics)
and at the end (the metrics; for W&B also the report plots, the test predictions table and,
when enabled, the best checkpoint).

``wandb`` is imported only when a W&B logger publishes its results.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from pathlib import Path

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import loggers as pl_loggers

log = logging.getLogger(__name__)
EVALUATE_CONFIG = Path(__file__).parent / "conf" / "evaluate.yaml"


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
    return _flatten(OmegaConf.to_container(cfg, resolve=True))


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def log_config(loggers: list[pl_loggers.Logger], cfg: DictConfig, statistics: dict) -> None:
    """Logs the flattened config and the training statistics (``training_statistics.*``) as
    hyperparameters to every logger."""
    params = {**flat_config(cfg), **_flatten({"training_statistics": statistics})}
    for logger in loggers:
        logger.log_hyperparams(params)


def publish_results(loggers: list[pl_loggers.Logger], output_dir: Path,
                    metrics: dict[str, float], best_checkpoint: str | None) -> None:
    """End of a run. The flattened val/test ``metrics`` go to the W&B run summary (one value per
    run, what the W&B runs table compares) and as final metrics to the other loggers. W&B also
    receives the report plots, the test predictions table and, with ``checkpoint_artifact``,
    the best checkpoint; its run is then finished, so that the next job of a multirun starts a
    new one."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            _publish_to_wandb(logger, Path(output_dir), metrics, best_checkpoint)
        else:
            logger.log_metrics(metrics)
            logger.save()


def _publish_to_wandb(logger: WandbLogger, output_dir: Path, metrics: dict[str, float],
                      best_checkpoint: str | None) -> None:
    import wandb

    run = logger.experiment
    run.summary.update(metrics)
    media = {f"plots/{path.stem}": wandb.Image(str(path))
             for path in sorted(write_report(output_dir).glob("*.png"))}
    predictions = output_dir / "predictions_test.csv"
    if predictions.is_file():
        media["predictions_test"] = wandb.Table(
            dataframe=pd.read_csv(predictions, nrows=logger.table_rows))
    if media:
        run.log(media)
    if logger.checkpoint_artifact and best_checkpoint:
        artifact = wandb.Artifact(f"model-{run.id}", type="model")
        artifact.add_file(best_checkpoint, name=Path(best_checkpoint).name)
        run.log_artifact(artifact, aliases=["best"])
    run.finish()


def write_report(run_folder: Path) -> Path:
    """``ecgexp-evaluate run=<run_folder> dataset_attributes=false``: metrics with bootstrap
    intervals and the task's plots (ROC/PR and reliability, or scatter and Bland–Altman) in
    ``<run_folder>/report``; returns that folder."""
    from ecgexp.evaluate import evaluate

    settings = OmegaConf.load(EVALUATE_CONFIG)  # no config groups: its keys are the settings
    settings = OmegaConf.masked_copy(settings, [k for k in settings
                                                if k not in ("defaults", "hydra")])
    settings.run, settings.dataset_attributes = str(run_folder), False
    with contextlib.redirect_stdout(io.StringIO()):  # the same tables as the run prints
        evaluate(settings)
    log.info("report: %s", run_folder / "report")
    return run_folder / "report"
