"""Training run: fit the task on the dataset, predict val/test, evaluate, write the run folder."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from ecgexp.data.datamodule import ExamDataModule
from ecgexp.evaluation.report import flatten_report, print_report
from ecgexp.models.weights import build_model
from ecgexp.provenance import provenance, summary
from ecgexp.tasks.module import ECGModule
from ecgexp.tasks.predictions import predictions_table
from ecgexp.tracking import instantiate_loggers, log_config, publish_results

log = logging.getLogger(__name__)


def _instantiate_group(group: DictConfig | None) -> list:
    """Instantiates every entry of a ``callbacks``/``logger`` group (empty when null)."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def dataset_config(cfg: DictConfig) -> DictConfig:
    """The ``dataset`` config with its split rule replaced by the ``split`` group when one is
    chosen (``split=age_balanced``), else by the task's own rule (``task.split``, e.g. AF risk)."""
    dataset = copy.deepcopy(cfg.dataset)
    rule = cfg.get("split") or cfg.task.get("split")
    if rule is not None:
        dataset.split = rule
    return dataset


def build_datamodule(cfg: DictConfig) -> ExamDataModule:
    task = cfg.task
    return ExamDataModule(
        instantiate(dataset_config(cfg)), task.target_columns, cfg.preprocessing.leads,
        seed=cfg.seed, metadata_columns=task.get("metadata_columns") or (),
        standardise_metadata=task.get("standardise_metadata") or (),
        target_builder=instantiate(task.targets) if task.get("targets") else None,
        sampler=instantiate(task.sampler) if task.get("sampler") else None, **cfg.loader)


@rank_zero_only
def write_once(path: Path, text: str) -> None:
    """Writes a run-folder file from rank 0 only: one writer per run, however many processes."""
    path.write_text(text)


def fit_training_statistics(objective, datamodule: ExamDataModule, output_dir: Path) -> dict:
    """Loss weights, target and metadata normalisation from the training split only; written
    to ``training_statistics.json`` and logged."""
    statistics = {"objective": objective.fit(datamodule.training_targets()),
                  "metadata": datamodule.metadata_statistics}
    write_once(output_dir / "training_statistics.json", json.dumps(statistics, indent=2))
    if any(statistics.values()):
        log.info("training-split statistics: %s", json.dumps(statistics))
    return statistics


def resumed(cfg: DictConfig) -> DictConfig:
    """With ``resume=<run folder>``: that run's own config, writing into the same folder and
    continuing from its ``checkpoints/last.ckpt``; otherwise ``cfg`` unchanged."""
    if not cfg.get("resume"):
        return cfg
    folder = Path(cfg.resume)
    last = folder / "checkpoints" / "last.ckpt"
    if not (folder / "config.yaml").is_file() or not last.is_file():
        raise FileNotFoundError(f"resume: '{folder}' is not a run folder with "
                                f"config.yaml and checkpoints/last.ckpt")
    run_config = OmegaConf.load(folder / "config.yaml")
    run_config.resume = None
    run_config.ckpt_path = str(last)
    log.info("resuming %s from %s", folder, last)
    return run_config


def single_process_trainer(trainer: pl.Trainer) -> pl.Trainer:
    """``trainer`` itself, or after distributed training a trainer of this process alone on
    its device, so that one process predicts every exam of a split, in order."""
    if trainer.world_size == 1:
        return trainer
    device = trainer.strategy.root_device
    return pl.Trainer(accelerator=trainer.accelerator,
                      devices=[device.index] if device.type == "cuda" else 1,
                      precision=trainer.precision, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False)


def train(cfg: DictConfig) -> dict[str, float] | None:
    """Runs one training job; returns the flattened metrics (``split/label/metric``), or None
    in the processes other than rank 0 of a distributed run."""
    cfg = resumed(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_once(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    objective = instantiate(cfg.task.objective)
    if cfg.task.n_outputs != objective.n_outputs:
        raise ValueError(f"task.n_outputs: {cfg.task.n_outputs}, but the {cfg.task.name} "
                         f"objective has {objective.n_outputs} outputs; set "
                         f"task.n_outputs={objective.n_outputs}")
    datamodule = build_datamodule(cfg)
    datamodule.setup()  # bad data fails here, before any training
    record = provenance(datamodule.reader.files, datamodule.source.label_files)
    write_once(output_dir / "provenance.json", json.dumps(record, indent=2))
    log.info(summary(record))
    statistics = fit_training_statistics(objective, datamodule, output_dir)
    module = ECGModule(build_model(cfg.model), objective, instantiate(cfg.optimizer),
                       instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
                       monitor=cfg.task.monitor)
    loggers = instantiate_loggers(cfg)
    log_config(loggers, cfg, statistics)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False,
                                      callbacks=_instantiate_group(cfg.get("callbacks")))
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    if not trainer.is_global_zero:
        return None  # the other processes of a distributed run end here

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    predictor = single_process_trainer(trainer)
    predictions = {}
    for split in ("val", "test"):
        if not datamodule.has_split(split):
            log.warning("no '%s' split in %s: not predicted", split, datamodule.source.name)
            continue
        batches = predictor.predict(module, datamodule.loader(split), ckpt_path=best or None)
        predictions[split] = predictions_table(batches, objective)
        predictions[split].to_csv(output_dir / f"predictions_{split}.csv", index=False)

    report = objective.evaluate(predictions)
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    metrics = flatten_report(report)
    publish_results(loggers, output_dir, metrics, best)
    print_report(report, title=f"{cfg.task.name} on {datamodule.source.name}")
    print(f"Run folder: {output_dir.resolve()}")
    return metrics
