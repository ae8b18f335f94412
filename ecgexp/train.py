"""Training run: fit the task on the dataset, predict val/test, evaluate, write the run folder.

A run owns its folder while it writes (:class:`ecgexp.run_folder.RunLock`) and never writes
into a folder that holds another run. A run is continued with ``resume=<run folder>`` (that
folder's own config, from its ``checkpoints/last.ckpt``, in that folder wherever it was moved
or copied) or with ``ckpt_path=last`` / ``ckpt_path=<file>`` in the same command and folder.
The checkpoint is read and checked before anything in the folder changes, and the training
history of the epochs before the restart is kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from ecgexp.checkpoints import add_to_checkpoint, read_checkpoint
from ecgexp.contract import CARD_KEY, input_contract, model_card
from ecgexp.data.build import build_datamodule
from ecgexp.data.datamodule import ExamDataModule
from ecgexp.data.labels import check_label_values
from ecgexp.errors import UserError
from ecgexp.evaluate import write_run_report
from ecgexp.evaluation.report import flatten_report, print_report, report_json
from ecgexp.files import write_text_atomic
from ecgexp.inference.inputs import dataset_for, prediction_exams
from ecgexp.inference.loop import autocast_dtype
from ecgexp.inference.model import TrainedModel, load_model
from ecgexp.inference.rows import prediction_rows
from ecgexp.inference.screening import training_amplitude
from ecgexp.inference.table import dataset_predictions, evaluable, split_predictions
from ecgexp.models.weights import read_state_dict
from ecgexp.provenance import provenance, summary
from ecgexp.registry import ALLOW_KEY, check_prefixes, check_tree
from ecgexp.run_folder import RunFolder, claim_folder, resumed, start_checkpoint
from ecgexp.tasks.build import build_module, build_objective
from ecgexp.tasks.checkpoint_io import CheckpointFiles
from ecgexp.tasks.embeddings import cache_embeddings
from ecgexp.tasks.module import ECGModule
from ecgexp.tracking import (
    instantiate_loggers,
    keep_history,
    log_config,
    publish_results,
    wants_report,
)

log = logging.getLogger(__name__)
__all__ = ["train"]


def _instantiate_group(group: DictConfig | None) -> list:
    """Instantiates every entry of a ``callbacks``/``logger`` group (empty when null)."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def _without_validation(cfg: DictConfig) -> tuple[DictConfig | None, DictConfig]:
    """The callbacks and trainer of a run without a validation split (``split=all``): no
    validation loop and no early stopping; the checkpoint kept is the last epoch's."""
    log.info("split=all: every exam trains, for trainer.max_epochs epochs; the last epoch is "
             "the run's model (no validation, no early stopping) and the thresholds are chosen "
             "on the training exams")
    cfg = cfg.copy()  # the run's config itself (config.yaml) stays as given
    with open_dict(cfg):
        if cfg.get("callbacks"):
            cfg.callbacks.pop("early_stopping", None)
            if cfg.callbacks.get("model_checkpoint") is not None:
                cfg.callbacks.model_checkpoint.monitor = None
        cfg.trainer.limit_val_batches, cfg.trainer.num_sanity_val_steps = 0, 0
    return cfg.get("callbacks"), cfg.trainer


def _report(objective, predictions: dict[str, pd.DataFrame], chosen_on: str) -> dict:
    """``objective.evaluate(predictions)`` with the thresholds chosen on
    ``predictions[chosen_on]`` (the objectives choose them on ``val``)."""
    if chosen_on == "val":
        return objective.evaluate(predictions)
    renamed = {"val" if split == chosen_on else split: table
               for split, table in predictions.items()}
    return {chosen_on if split == "val" else split: rows
            for split, rows in objective.evaluate(renamed).items()}


@rank_zero_only
def _write_once(path: Path, text: str) -> None:
    """Writes a run-folder file from rank 0 only (one writer per run, however many processes),
    under a temporary name renamed into place."""
    write_text_atomic(path, text, key="paths.output_dir", replace=True)


def _fit_training_statistics(objective, datamodule: ExamDataModule, output_dir: Path) -> dict:
    """Loss weights, target and metadata normalisation from the training split only; written
    to ``training_statistics.json`` and logged."""
    statistics = {"objective": objective.fit(datamodule.training_targets()),
                  "metadata": datamodule.metadata_statistics}
    _write_once(RunFolder(output_dir).training_statistics, json.dumps(statistics, indent=2))
    if any(statistics.values()):
        log.info("training-split statistics: %s", json.dumps(statistics))
    return statistics


def _record_provenance(output_dir: Path, datamodule: ExamDataModule,
                      restart: dict | None, allow_modules: Sequence[str]) -> None:
    """``provenance.json`` of a new run, with the packages the command allowed
    (``allow_modules``); a restart is added to its ``resumes`` list instead, keeping the
    record of the run's first start."""
    record = {**provenance(datamodule.reader.files, datamodule.source.label_files),
              ALLOW_KEY: list(allow_modules)}
    log.info(summary(record))
    path = RunFolder(output_dir).provenance
    if restart is not None and path.is_file():
        first = json.loads(path.read_text())
        first.setdefault("resumes", []).append({**record, **restart})
        record = first
    _write_once(path, json.dumps(record, indent=2))


def _check_monitor(monitor: str, objective) -> None:
    """Refuses a ``task.monitor`` that is neither ``val_loss`` nor a validation metric the
    objective tracks, before anything is written."""
    tracked = ["val_loss", *(f"val_{name}" for name in objective.metrics())]
    if monitor not in tracked:
        raise UserError(f"task.monitor: '{monitor}' is not tracked by the "
                        f"{type(objective).__name__} objective; choose one of "
                        f"{', '.join(tracked)}")


def _check_optimized_metric(module: ECGModule, datamodule: ExamDataModule,
                           name: str | None) -> None:
    """Refuses an ``optimized_metric`` the task does not report, before any training: the
    objective evaluates placeholder outputs (random, of the network's output width) on the
    validation exams to list its metrics (a run without them, ``split=all``, reports none).
    The run's own random state is left untouched."""
    if not name or not datamodule.validation:
        return
    objective, validation = module.objective, datamodule.datasets["val"]
    first = validation.__getitems__([0])  # a usable exam: the set-up scan left out others
    module.eval()
    with torch.no_grad():
        width = module(first["tracing"], first.get("metadata")).shape[1]
    module.train()
    targets = torch.from_numpy(validation.targets)
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(len(targets), width, generator=generator)
    scores = objective.predict(outputs).float().numpy()[None]
    table = prediction_rows(objective, scores, {"exam_id": np.arange(len(targets))},
                            targets=targets.numpy())
    metrics = flatten_report(objective.evaluate({"val": table}))
    if name not in metrics:
        raise UserError(f"optimized_metric: the {objective.__class__.__name__} task reports no "
                        f"metric '{name}'; validation metrics are: {', '.join(metrics)}")


def train(cfg: DictConfig) -> dict[str, float] | None:
    """Runs one training job; returns the flattened metrics (``split/label/metric``), or None
    in the processes other than rank 0 of a distributed run."""
    cfg, restart = resumed(cfg)
    allow_modules = check_prefixes(cfg.get(ALLOW_KEY))
    check_tree(OmegaConf.to_container(cfg, resolve=True), "the config", "train", allow_modules,
               from_file=False)  # what the run folder will name must read back
    start = start_checkpoint(cfg)
    if cfg.model.get("weights"):  # read (a state dict's layout checked) before anything is written
        trusted = bool(cfg.model.get("weights_trusted"))
        if cfg.model.get("encoder"):  # a published encoder's file: its own layout
            read_checkpoint(cfg.model.weights, "model.weights", trusted=trusted)
        else:
            read_state_dict(cfg.model.weights, trusted=trusted)
    pl.seed_everything(cfg.seed, workers=True)
    objective = build_objective(cfg.task)
    _check_monitor(cfg.task.monitor, objective)
    datamodule = build_datamodule(cfg, objective)
    datamodule.setup()  # bad data fails here, before the run folder is written
    check_external_sets(cfg, input_contract(cfg, datamodule.source), objective)
    output_dir = Path(cfg.paths.output_dir)
    lock = claim_folder(output_dir, continuing=start is not None)
    try:
        return _train(cfg, output_dir, start, restart, objective, datamodule)
    finally:
        if lock is not None:
            lock.release()


def check_external_sets(cfg: DictConfig, contract: dict, objective) -> None:
    """Each external test set of ``cfg.test_datasets`` read as it will be after training (its
    files, exam table, leads and length for ``contract``), with the task's target columns and
    their values checked, so that a bad set stops the run before it trains; errors name
    ``test_datasets.<name>``."""
    for name, dataset in (cfg.get("test_datasets") or {}).items():
        if dataset is None:
            continue
        key = f"test_datasets.{name}"
        if name in ("train", "val", "test"):
            raise UserError(f"{key}: '{name}' is a split of the training data; name the "
                            f"external test set otherwise")
        try:
            source = instantiate(dataset_for(dataset, contract, cfg))
            table, _ = prediction_exams(source, contract)
            labels_csv = getattr(source, "labels_csv", None) or key
            check_label_values(table, objective.target_columns, (), objective.binary_columns,
                               labels_csv, key=f"{key}.labels_csv", csv_rows=False)
        except (ValueError, FileNotFoundError) as error:  # ecgexp's own messages
            message = str(error)
            raise UserError(f"{key}." + message.removeprefix("dataset.") if
                            message.startswith("dataset.") else f"{key}: {message}") from None
        missing = [c for c in objective.target_columns if c not in table.columns]
        if missing:
            raise UserError(f"{key}: '{source.name}' has no {', '.join(missing)} column, so its "
                            f"predictions cannot be evaluated; give it the task's labels "
                            f"({key}.labels_csv)")
        if table.empty:
            raise UserError(f"{key}: '{source.name}' holds no exam")


def external_predictions(cfg: DictConfig, model: TrainedModel, output_dir: Path
                         ) -> dict[str, pd.DataFrame]:
    """Each external test set of ``cfg.test_datasets`` predicted by ``model`` (the best
    checkpoint) as ``ecgexp-predict`` predicts a dataset, written to
    ``predictions_<name>.csv``; returns the exams that can be evaluated (a prediction and every
    target) per name."""
    tables = {}
    for name, dataset in cfg.test_datasets.items():
        if dataset is None:
            continue
        source = instantiate(dataset_for(dataset, model.contract, cfg))
        table = dataset_predictions([model], model.thresholds, source, model.contract,
                                    cfg.loader.eval_batch_size or cfg.loader.batch_size,
                                    cfg.loader.num_workers)
        _write_once(RunFolder(output_dir).predictions(name), table.to_csv(index=False))
        tables[name] = evaluable(table, model.objective, f"test_datasets.{name}")
        log.info("external test set %s (%s): %d of %d exams evaluated", name, source.name,
                 len(tables[name]), len(table))
    return tables


def _train(cfg: DictConfig, output_dir: Path, start: tuple[Path, int] | None,
           restart: dict | None, objective, datamodule: ExamDataModule
           ) -> dict[str, float] | None:
    _write_once(RunFolder(output_dir).config, OmegaConf.to_yaml(cfg, resolve=True))
    _record_provenance(output_dir, datamodule, restart, check_prefixes(cfg.get(ALLOW_KEY)))
    quality = getattr(datamodule.source, "quality_report", None)
    if quality is not None:  # record folders: the set-up quality findings
        _write_once(RunFolder(output_dir).quality, quality.to_csv(index=False))
    statistics = _fit_training_statistics(objective, datamodule, output_dir)
    card = model_card(cfg, datamodule.source, statistics["metadata"],
                      training_amplitude(datamodule.datasets["train"]))
    module = build_module(cfg, objective, card=card)
    cache_embeddings(cfg, module.net, datamodule, card["weights"])
    _check_optimized_metric(module, datamodule, cfg.get("optimized_metric"))
    loggers = instantiate_loggers(cfg)
    if start is not None:
        keep_history(loggers, through_epoch=start[1])
    log_config(loggers, cfg, statistics)
    trusted = (start[0],) if start is not None and cfg.get("ckpt_trusted") else ()
    callbacks, trainer_cfg = ((cfg.get("callbacks"), cfg.trainer) if datamodule.validation
                              else _without_validation(cfg))
    trainer: pl.Trainer = instantiate(trainer_cfg, logger=loggers or False,
                                      callbacks=_instantiate_group(callbacks),
                                      plugins=[CheckpointFiles(trusted=trusted)])
    trainer.fit(module, datamodule=datamodule,
                ckpt_path=str(start[0]) if start is not None else None)
    if not trainer.is_global_zero:
        return None  # the other processes of a distributed run end here

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    model = (load_model(best, allow_modules=cfg.allow_modules) if best else
             TrainedModel(module.net, objective, card, Path()))
    device = trainer.strategy.root_device
    predictions = {}
    # the thresholds are chosen on validation; with split=all, on the training exams
    chosen_on = "val" if datamodule.validation else "train"
    for split in ("val", "test") if datamodule.validation else ("train",):
        if not datamodule.has_split(split):
            log.warning("no '%s' split in %s: not predicted", split, datamodule.source.name)
            continue
        exams = datamodule.datasets[split]
        predictions[split] = split_predictions(model, datamodule.loader(split), len(exams),
                                               exams.names, device, f"predicting {split}",
                                               autocast=autocast_dtype(trainer.precision))
        _write_once(RunFolder(output_dir).predictions(split),
                   predictions[split].to_csv(index=False))

    report = _report(objective, predictions, chosen_on)
    thresholds = objective.thresholds(report) if chosen_on in predictions else {}
    if best and chosen_on in predictions:  # the model card carries the thresholds
        add_to_checkpoint(best, CARD_KEY, {"thresholds": thresholds})
    if cfg.get("test_datasets"):
        model.thresholds = thresholds
        predictions.update(external_predictions(cfg, model, output_dir))
        report = _report(objective, predictions, chosen_on)
    _write_once(RunFolder(output_dir).metrics, report_json(report))
    metrics = flatten_report(report)
    publish_results(loggers, metrics, output_dir,
                    write_run_report(output_dir) if wants_report(loggers) else None, best)
    print_report(report, title=f"{cfg.task.name} on {datamodule.source.name}")
    print(f"Run folder: {output_dir.resolve()}")
    return metrics
