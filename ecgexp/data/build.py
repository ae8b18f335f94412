"""The DataModule a config describes: its ``dataset`` (with the split rule of the ``split``
group or of the task), the task's targets, metadata, target builder and sampler, the lead order
of ``preprocessing.leads`` and the ``loader`` settings."""

from __future__ import annotations

import copy
from collections.abc import Sequence

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


def build_datamodule(cfg: DictConfig, binary_columns: Sequence[str] = ()) -> ExamDataModule:
    """The DataModule of a config; ``binary_columns``: targets checked to be 0/1 at set-up."""
    task = cfg.task
    return ExamDataModule(
        instantiate(dataset_config(cfg)), task.target_columns, cfg.preprocessing.leads,
        seed=cfg.seed, binary_columns=binary_columns,
        metadata_columns=task.get("metadata_columns") or (),
        standardise_metadata=task.get("standardise_metadata") or (),
        target_builder=instantiate(task.targets) if task.get("targets") else None,
        sampler=instantiate(task.sampler) if task.get("sampler") else None, **cfg.loader)
