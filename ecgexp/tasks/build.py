"""A task's objective, network and LightningModule from a config: the one place that wires
them, used by training, prediction, heatmaps and the benchmark suite alike."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from ecgexp.models.weights import build_model
from ecgexp.tasks.module import ECGModule


def build_objective(task_cfg: DictConfig):
    """The task's objective (``task.objective``), unfitted."""
    return instantiate(task_cfg.objective)


def build_network(cfg: DictConfig, objective=None, with_weights: bool = True):
    """The network of ``cfg.model`` with the output width and head the objective (built from
    ``cfg.task`` unless given) needs; started from ``model.weights`` when set (and
    ``with_weights``)."""
    objective = build_objective(cfg.task) if objective is None else objective
    return build_model(cfg.model, objective, with_weights=with_weights)


def build_module(cfg: DictConfig, objective=None, with_weights: bool = True,
                 card: dict | None = None) -> ECGModule:
    """The :class:`ECGModule` of a training config: network, objective (built from
    ``cfg.task`` unless given), optimiser, LR scheduler, monitored value and the model card
    its checkpoints carry."""
    objective = build_objective(cfg.task) if objective is None else objective
    return ECGModule(build_network(cfg, objective, with_weights), objective,
                     instantiate(cfg.optimizer),
                     instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
                     monitor=cfg.task.monitor, card=card)
