"""The DataModule a config describes: its ``dataset`` (with the split rule of the ``split``
group or of the task), the task's targets, metadata, target builder and sampler, the lead order
of ``preprocessing.leads`` and the ``loader`` settings."""

from __future__ import annotations

import copy

from hydra.utils import instantiate
from omegaconf import DictConfig

from ecgexp.data.datamodule import ExamDataModule


def dataset_config(cfg: DictConfig) -> DictConfig:
    """The ``dataset`` config with its split rule replaced by the ``split`` group when one is
    chosen (``split=age_balanced``), else by the task's own rule (``task.split``, e.g. AF risk)."""
    dataset = copy.deepcopy(cfg.dataset)
    rule = cfg.get("split") or cfg.task.get("split")
    if rule is not None:
        dataset.split = rule
    return dataset


def trains_on_every_exam(cfg: DictConfig) -> bool:
    """Whether the split rule puts every exam in training (``split=all``: a final model
    without a validation split)."""
    rule = dataset_config(cfg).get("split") or {}
    return (rule.get("_target_") == "ecgexp.data.splits.single_split"
            and rule.get("name") == "train")


def build_datamodule(cfg: DictConfig, objective=None,
                     metadata_statistics: dict | None = None) -> ExamDataModule:
    """The DataModule of a config, reading the target columns of the task's objective
    (``objective``, else the one ``cfg.task.objective`` describes); the objective's binary
    columns are checked to be 0/1 at set-up. ``metadata_statistics``: a trained model's, to
    standardise the metadata with instead of this data's training split."""
    task = cfg.task
    if objective is None:
        objective = instantiate(task.objective)
    return ExamDataModule(
        instantiate(dataset_config(cfg)), objective.target_columns, cfg.preprocessing.leads,
        seed=cfg.seed, binary_columns=objective.binary_columns,
        valid_ranges=objective.valid_ranges,
        metadata_statistics=metadata_statistics,
        metadata_columns=task.get("metadata_columns") or (),
        standardise_metadata=task.get("standardise_metadata") or (),
        target_builder=instantiate(task.targets) if task.get("targets") else None,
        sampler=instantiate(task.sampler) if task.get("sampler") else None,
        validation=not trains_on_every_exam(cfg), **cfg.loader)
