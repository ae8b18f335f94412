"""The LightningModule shared by every prediction task: network + objective + optimiser."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn


class ECGModule(pl.LightningModule):
    """Trains ``net`` on the ``objective`` of a task.

    Args:
        net: maps ``(batch, leads, samples)`` tracings (and ``(batch, n_metadata)`` metadata
            when the batch has some) to the network outputs.
        objective: the task objective (``ecgexp.tasks.objectives``); its training statistics
            travel in the checkpoint under ``objective_state``.
        optimizer: partial optimiser, called with the parameters.
        scheduler: partial LR scheduler, called with the optimiser, or ``None``.
        monitor: logged value the scheduler follows (e.g. ``val_loss``).
    """

    def __init__(self, net: nn.Module, objective, optimizer: Callable,
                 scheduler: Callable | None = None, monitor: str = "val_loss"):
        super().__init__()
        self.net = net
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        metrics = objective.metrics()
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")

    def forward(self, tracings: torch.Tensor, metadata: torch.Tensor | None = None
                ) -> torch.Tensor:
        return self.net(tracings) if metadata is None else self.net(tracings, metadata)

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self(batch["tracing"], batch.get("metadata"))
        return self.objective.loss(outputs, batch["target"]), outputs

    def training_step(self, batch: dict | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every exam of the batch was skipped (dataset.nan_policy=skip)
            return None
        loss, _ = self.model_step(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=len(batch["exam_id"]))
        return loss

    def _evaluation_step(self, batch: dict | None, stage: str, metrics) -> None:
        if batch is None:
            return
        loss, logits = self.model_step(batch)
        metrics.update(*self.objective.metric_inputs(logits, batch["target"]))
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=len(batch["exam_id"]))
        self.log_dict(metrics, batch_size=len(batch["exam_id"]))

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        self._evaluation_step(batch, "val", self.val_metrics)

    def test_step(self, batch: dict | None, batch_idx: int) -> None:
        self._evaluation_step(batch, "test", self.test_metrics)

    def predict_step(self, batch: dict | None, batch_idx: int) -> dict | None:
        if batch is None:
            return None
        outputs = self(batch["tracing"], batch.get("metadata"))
        return {"exam_id": batch["exam_id"], "target": batch["target"],
                "score": self.objective.activation(outputs)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["objective_state"] = self.objective.state

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.objective.load_state(checkpoint.get("objective_state", {}))

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                 "monitor": self.monitor}}
