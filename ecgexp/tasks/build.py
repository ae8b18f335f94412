"""A task's objective, network and LightningModule from a config: the one place that wires
them, used by training, prediction, heatmaps and the benchmark suite alike."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ecgexp.models.finetune import FineTuning
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
    net = build_model(cfg.model, objective, with_weights=with_weights)
    if not cfg.model.get("weights"):
        initialise_output_bias(net, objective)
    return net


def initialise_output_bias(net: torch.nn.Module, objective) -> None:
    """Sets the biases of the network's ``output_layer`` (when it has one) to the objective's
    ``output_bias()`` (when it gives one: the discrete-time survival objective's training
    hazards), so that training starts from the training split's base rates."""
    bias = objective.output_bias()
    layer = getattr(net, "output_layer", None)
    if bias is None or layer is None or layer.bias is None:
        return
    with torch.no_grad():
        layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))


def build_module(cfg: DictConfig, objective=None, with_weights: bool = True,
                 card: dict | None = None) -> ECGModule:
    """The :class:`ECGModule` of a training config: network, objective (built from
    ``cfg.task`` unless given), optimiser, LR scheduler, monitored value and the model card
    its checkpoints carry."""
    objective = build_objective(cfg.task) if objective is None else objective
    finetune = FineTuning.from_config(cfg.get("finetune"))
    return ECGModule(build_network(cfg, objective, with_weights and not finetune.random_encoder),
                     objective, instantiate(cfg.optimizer),
                     instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
                     monitor=cfg.task.monitor, card=card, finetune=finetune)
