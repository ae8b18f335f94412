"""Training run: fit the task on the dataset, predict val/test, evaluate, write the run folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ecgexp.data.datamodule import ExamDataModule
from ecgexp.evaluation.report import flatten_report, print_report
from ecgexp.provenance import provenance
from ecgexp.tasks.module import ECGModule
from ecgexp.tasks.predictions import predictions_table

log = logging.getLogger(__name__)


def _instantiate_group(group: DictConfig | None) -> list:
    """Instantiates every entry of a ``callbacks``/``logger`` group (empty when null)."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def build_datamodule(cfg: DictConfig, objective) -> ExamDataModule:
    return ExamDataModule(instantiate(cfg.dataset), objective.target_columns,
                          cfg.preprocessing.leads, seed=cfg.seed, **cfg.loader)


def train(cfg: DictConfig) -> dict[str, float]:
    """Runs one training job; returns the flattened metrics (``split/label/metric``)."""
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)

    objective = instantiate(cfg.task.objective)
    datamodule = build_datamodule(cfg, objective)
    datamodule.setup()  # bad data fails here, before any training
    (output_dir / "provenance.json").write_text(json.dumps(
        provenance(datamodule.reader.files, datamodule.source.labels_csv), indent=2))
    module = ECGModule(instantiate(cfg.model), objective, instantiate(cfg.optimizer),
                       instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
                       monitor=cfg.task.monitor)
    loggers = _instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False,
                                      callbacks=_instantiate_group(cfg.get("callbacks")))
    trainer.fit(module, datamodule=datamodule)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    predictions = {}
    for split in ("val", "test"):
        if not datamodule.has_split(split):
            log.warning("no '%s' split in %s: not predicted", split, datamodule.source.name)
            continue
        batches = trainer.predict(module, datamodule.loader(split), ckpt_path=best or None)
        predictions[split] = predictions_table(batches, objective)
        predictions[split].to_csv(output_dir / f"predictions_{split}.csv", index=False)

    report = objective.evaluate(predictions)
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    metrics = flatten_report(report)
    for logger in loggers:
        logger.log_metrics(metrics)
        logger.save()
    print_report(report, title=f"{cfg.task.name} on {datamodule.source.name}")
    print(f"Run folder: {output_dir.resolve()}")
    return metrics
