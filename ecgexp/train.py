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
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from ecgexp.checkpoints import CheckpointFiles, read_checkpoint
from ecgexp.data.build import build_datamodule
from ecgexp.data.datamodule import ExamDataModule
from ecgexp.errors import UserError
from ecgexp.evaluation.report import flatten_report, print_report
from ecgexp.files import write_text_atomic
from ecgexp.models.weights import build_model, read_state_dict
from ecgexp.provenance import provenance, summary
from ecgexp.run_folder import CHECKPOINTS, CONFIG, RunLock, load_run_config, relocated
from ecgexp.tasks.module import ECGModule
from ecgexp.tasks.predictions import predictions_table
from ecgexp.tracking import instantiate_loggers, keep_history, log_config, publish_results

log = logging.getLogger(__name__)


def _instantiate_group(group: DictConfig | None) -> list:
    """Instantiates every entry of a ``callbacks``/``logger`` group (empty when null)."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


# Overrides that may change on resume: they do not change what is learnt.
RESUME_OVERRIDES = ("trainer.max_epochs", "loader.*", "logger", "callbacks.progress_bar",
                    "trainer.enable_progress_bar", "trainer.log_every_n_steps")
RESUME_KEYS = ("resume", "ckpt_trusted")


@rank_zero_only
def write_once(path: Path, text: str) -> None:
    """Writes a run-folder file from rank 0 only (one writer per run, however many processes),
    under a temporary name renamed into place."""
    write_text_atomic(path, text, key="paths.output_dir", replace=True)


def fit_training_statistics(objective, datamodule: ExamDataModule, output_dir: Path) -> dict:
    """Loss weights, target and metadata normalisation from the training split only; written
    to ``training_statistics.json`` and logged."""
    statistics = {"objective": objective.fit(datamodule.training_targets()),
                  "metadata": datamodule.metadata_statistics}
    write_once(output_dir / "training_statistics.json", json.dumps(statistics, indent=2))
    if any(statistics.values()):
        log.info("training-split statistics: %s", json.dumps(statistics))
    return statistics


def training_checkpoint(path: Path, key: str, trusted: bool) -> dict:
    """The checkpoint at ``path``, read and checked to be one a run can continue from."""
    stored = read_checkpoint(path, key, trusted=trusted, trust_key="ckpt_trusted")
    if not isinstance(stored, dict) or not {"state_dict", "loops", "epoch"} <= set(stored):
        raise UserError(f"{key}: '{path}' is not a training checkpoint of ecgexp (no state_dict "
                        f"and loop state); to start from its weights set model.weights={path}")
    return stored


def command_overrides() -> list[str]:
    """The ``key=value`` overrides of this command (none outside a Hydra run)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _resume_safe(key: str) -> bool:
    return any(key == safe.removesuffix(".*") or key.startswith(safe.removesuffix("*"))
               for safe in RESUME_OVERRIDES)


def apply_resume_overrides(cfg: DictConfig, run_config: DictConfig) -> list[str]:
    """Copies the command's safe overrides (:data:`RESUME_OVERRIDES`) into the resumed run's
    config and returns them; any other override is refused, since the run continues with its
    own config."""
    overrides = [o for o in command_overrides() if _override_key(o) not in RESUME_KEYS]
    refused = [o for o in overrides if not _resume_safe(_override_key(o))]
    if refused:
        raise UserError(
            f"resume: {', '.join(refused)} would change the run being resumed, which continues "
            f"with its own config.yaml; only {', '.join(RESUME_OVERRIDES)} may change on "
            f"resume (start a new run, or a new run from its weights with "
            f"model.weights=<run>/checkpoints/best.ckpt)")
    for override in overrides:
        key = _override_key(override)
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        OmegaConf.update(run_config, key, value, force_add=True)
    return overrides


def resumed(cfg: DictConfig) -> tuple[DictConfig, dict | None]:
    """With ``resume=<run folder>``: that run's own config (checked: :func:`load_run_config`),
    moved to the folder given, with the command's safe overrides applied, continuing from its
    ``checkpoints/last.ckpt``; and what to record of the restart. Otherwise ``cfg`` and None.
    Nothing is written here."""
    if not cfg.get("resume"):
        return cfg, None
    folder = Path(cfg.resume).resolve()
    run_config = load_run_config(folder, key="resume")
    last = folder / CHECKPOINTS / "last.ckpt"
    if not last.is_file():
        raise UserError(f"resume: '{folder}' has no {CHECKPOINTS}/last.ckpt to continue from")
    trusted = bool(cfg.get("ckpt_trusted"))
    epoch = training_checkpoint(last, "resume", trusted)["epoch"]
    run_config = relocated(run_config, folder)
    overrides = apply_resume_overrides(cfg, run_config)
    run_config.resume, run_config.ckpt_path, run_config.ckpt_trusted = None, str(last), trusted
    log.info("resuming %s from %s (epoch %d)%s", folder, last, epoch,
             f" with {', '.join(overrides)}" if overrides else "")
    return run_config, {"checkpoint": str(last), "checkpoint_epoch": epoch,
                        "overrides": overrides}


def start_checkpoint(cfg: DictConfig) -> tuple[Path, int] | None:
    """The checkpoint ``ckpt_path`` names (``last``: the run folder's ``last.ckpt``) and its
    epoch, read and checked before the run touches its folder; None without one."""
    name = cfg.get("ckpt_path")
    if not name:
        return None
    if name == "last":
        path = Path(cfg.paths.output_dir) / CHECKPOINTS / "last.ckpt"
        if not path.is_file():
            raise UserError(f"ckpt_path: last: no {CHECKPOINTS}/last.ckpt in "
                            f"'{cfg.paths.output_dir}' (hydra.run.dir) to continue from")
    else:
        path = Path(name)
    return path, training_checkpoint(path, "ckpt_path", bool(cfg.get("ckpt_trusted")))["epoch"]


def claim_folder(output_dir: Path, continuing: bool) -> RunLock | None:
    """Locks the run folder (rank 0) and refuses one that holds another run, unless this run
    continues it."""
    if rank_zero_only.rank != 0:
        return None
    lock = RunLock(output_dir, key="hydra.run.dir").acquire()
    if not continuing and (output_dir / CONFIG).exists():
        lock.release()
        raise UserError(f"hydra.run.dir: '{output_dir}' already holds a run ({CONFIG}); "
                        f"choose another folder, or continue that run with "
                        f"resume={output_dir}")
    return lock


def record_provenance(output_dir: Path, datamodule: ExamDataModule,
                      restart: dict | None) -> None:
    """``provenance.json`` of a new run; a restart is added to its ``resumes`` list instead,
    keeping the record of the run's first start."""
    record = provenance(datamodule.reader.files, datamodule.source.label_files)
    log.info(summary(record))
    path = output_dir / "provenance.json"
    if restart is not None and path.is_file():
        first = json.loads(path.read_text())
        first.setdefault("resumes", []).append({**record, **restart})
        record = first
    write_once(path, json.dumps(record, indent=2))


def check_optimized_metric(module: ECGModule, datamodule: ExamDataModule,
                           name: str | None) -> None:
    """Refuses an ``optimized_metric`` the task does not report, before any training: the
    objective evaluates placeholder outputs (random, of the network's output width) on the
    validation exams to list its metrics. The run's own random state is left untouched."""
    if not name:
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
    batch = {"exam_id": torch.arange(len(targets)), "target": targets,
             "score": objective.activation(outputs)}
    table = predictions_table([batch], objective)
    metrics = flatten_report(objective.evaluate({"val": table}))
    if name not in metrics:
        raise UserError(f"optimized_metric: the {objective.__class__.__name__} task reports no "
                        f"metric '{name}'; validation metrics are: {', '.join(metrics)}")


def single_process_trainer(trainer: pl.Trainer) -> pl.Trainer:
    """``trainer`` itself, or after distributed training a trainer of this process alone on
    its device, so that one process predicts every exam of a split, in order."""
    if trainer.world_size == 1:
        return trainer
    device = trainer.strategy.root_device
    return pl.Trainer(accelerator=trainer.accelerator,
                      devices=[device.index] if device.type == "cuda" else 1,
                      precision=trainer.precision, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, plugins=[CheckpointFiles()])


def train(cfg: DictConfig) -> dict[str, float] | None:
    """Runs one training job; returns the flattened metrics (``split/label/metric``), or None
    in the processes other than rank 0 of a distributed run."""
    cfg, restart = resumed(cfg)
    start = start_checkpoint(cfg)
    if cfg.model.get("weights"):  # read and checked before anything is written
        read_state_dict(cfg.model.weights, trusted=bool(cfg.model.get("weights_trusted")))
    pl.seed_everything(cfg.seed, workers=True)
    objective = instantiate(cfg.task.objective)
    if cfg.task.n_outputs != objective.n_outputs:
        raise UserError(f"task.n_outputs: {cfg.task.n_outputs}, but the {cfg.task.name} "
                        f"objective has {objective.n_outputs} outputs; set "
                        f"task.n_outputs={objective.n_outputs}")
    binary = [c for c in objective.binary_columns if c in cfg.task.target_columns]
    datamodule = build_datamodule(cfg, binary_columns=binary)
    datamodule.setup()  # bad data fails here, before the run folder is written
    output_dir = Path(cfg.paths.output_dir)
    lock = claim_folder(output_dir, continuing=start is not None)
    try:
        return _train(cfg, output_dir, start, restart, objective, datamodule)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: DictConfig, output_dir: Path, start: tuple[Path, int] | None,
           restart: dict | None, objective, datamodule: ExamDataModule
           ) -> dict[str, float] | None:
    write_once(output_dir / CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
    record_provenance(output_dir, datamodule, restart)
    statistics = fit_training_statistics(objective, datamodule, output_dir)
    module = ECGModule(build_model(cfg.model), objective, instantiate(cfg.optimizer),
                       instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
                       monitor=cfg.task.monitor)
    check_optimized_metric(module, datamodule, cfg.get("optimized_metric"))
    loggers = instantiate_loggers(cfg)
    if start is not None:
        keep_history(loggers, through_epoch=start[1])
    log_config(loggers, cfg, statistics)
    trusted = (start[0],) if start is not None and cfg.get("ckpt_trusted") else ()
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False,
                                      callbacks=_instantiate_group(cfg.get("callbacks")),
                                      plugins=[CheckpointFiles(trusted=trusted)])
    trainer.fit(module, datamodule=datamodule,
                ckpt_path=str(start[0]) if start is not None else None)
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
        write_once(output_dir / f"predictions_{split}.csv",
                   predictions[split].to_csv(index=False))

    report = objective.evaluate(predictions)
    write_once(output_dir / "metrics.json", json.dumps(report, indent=2))
    metrics = flatten_report(report)
    publish_results(loggers, output_dir, metrics, best)
    print_report(report, title=f"{cfg.task.name} on {datamodule.source.name}")
    print(f"Run folder: {output_dir.resolve()}")
    return metrics
