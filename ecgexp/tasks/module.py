"""The LightningModule shared by every prediction task: network + objective + optimiser."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MeanMetric

from ecgexp.contract import CARD_KEY
from ecgexp.models.finetune import FineTuning


class ECGModule(pl.LightningModule):
    """Trains ``net`` on the ``objective`` of a task.

    Args:
        net: maps ``(batch, leads, samples)`` tracings (and ``(batch, n_metadata)`` metadata
            when the batch has some) to the network outputs.
        objective: the task objective (``ecgexp.tasks.objectives``); its training statistics
            travel in the checkpoint under ``objective_state``.
        optimizer: partial optimiser, called with the parameters.
        scheduler: partial LR scheduler, called with the optimiser, or ``None``. It is stepped
            here at the end of each validation epoch with the ``monitor`` value (and saved in
            checkpoints by us), so a checkpoint written at that point already holds the step:
            a run resumed from it continues exactly as an uninterrupted one.
        monitor: the value the scheduler follows: ``val_loss`` or a validation metric
            (``val_<metric>``).
        card: the model card (:mod:`ecgexp.contract`) every checkpoint carries, or None.
        finetune: which parameters train, at which learning rates
            (:class:`ecgexp.models.finetune.FineTuning`; None: all, at the optimiser's).
    """

    def __init__(self, net: nn.Module, objective, optimizer: Callable,
                 scheduler: Callable | None = None, monitor: str = "val_loss",
                 card: dict | None = None, finetune: FineTuning | None = None):
        super().__init__()
        self.card = card
        self.finetune = finetune or FineTuning()
        self.net = net
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        metrics = objective.metrics()
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")
        self.val_loss_mean = MeanMetric()
        self.scheduler = None
        self._scheduler_state: dict | None = None

    def forward(self, tracings: torch.Tensor, metadata: torch.Tensor | None = None
                ) -> torch.Tensor:
        return self.net(tracings) if metadata is None else self.net(tracings, metadata)

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if "features" in batch:  # a linear probe's cached embeddings: the head alone
            outputs = self.net.head_outputs(batch["features"], batch.get("metadata"))
        else:
            outputs = self(batch["tracing"], batch.get("metadata"))
        return self.objective.loss(outputs, batch["target"]), outputs

    def training_step(self, batch: dict | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every exam of the batch was skipped (dataset.nan_policy=skip)
            return None
        loss, _ = self.model_step(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=len(batch["exam_id"]), sync_dist=True)
        if batch_idx == 0:
            self.log("lr", self.trainer.optimizers[0].param_groups[-1]["lr"], on_step=False,
                     on_epoch=True, batch_size=1)
        return loss

    def _evaluation_step(self, batch: dict | None, stage: str, metrics) -> None:
        if batch is None:
            return
        loss, logits = self.model_step(batch)
        metrics.update(*self.objective.metric_inputs(logits, batch["target"]))
        if stage == "val":  # logged at the epoch end, over the exams of every process
            self.val_loss_mean.update(loss, weight=len(batch["exam_id"]))
        else:
            self.log(f"{stage}_loss", loss, batch_size=len(batch["exam_id"]), sync_dist=True)
        self.log_dict(metrics, batch_size=len(batch["exam_id"]))

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        self._evaluation_step(batch, "val", self.val_metrics)

    def test_step(self, batch: dict | None, batch_idx: int) -> None:
        self._evaluation_step(batch, "test", self.test_metrics)

    def on_validation_epoch_end(self) -> None:
        monitored = {"val_loss": self.val_loss_mean.compute()}
        self.val_loss_mean.reset()
        self.log("val_loss", monitored["val_loss"], prog_bar=True)
        if self.scheduler is None or self.trainer.sanity_checking:
            return
        if self.monitor != "val_loss":
            monitored.update(self.val_metrics.compute())
        if self.monitor not in monitored:
            raise KeyError(f"task.monitor: '{self.monitor}' is not one of {sorted(monitored)}")
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(monitored[self.monitor].item())
        else:
            self.scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["objective_state"] = self.objective.state
        if self.card is not None:
            checkpoint[CARD_KEY] = self.card
        if self.scheduler is not None:
            checkpoint["lr_scheduler_state"] = self.scheduler.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.objective.load_state(checkpoint.get("objective_state", {}))
        self._scheduler_state = checkpoint.get("lr_scheduler_state")

    def on_train_epoch_start(self) -> None:
        for module in self.finetune.frozen_modules(self.net):
            module.eval()

    def configure_optimizers(self):
        lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        optimizer = self.optimizer_factory(
            params=self.finetune.parameter_groups(self.net, lr))
        if self.scheduler_factory is not None:
            self.scheduler = self.scheduler_factory(optimizer=optimizer)
            if self._scheduler_state is not None:
                self.scheduler.load_state_dict(self._scheduler_state)
        return optimizer
