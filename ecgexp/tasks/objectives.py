"""Task objectives: what a prediction task means for the shared network.

An objective has ``n_outputs``, ``loss``, ``activation``, ``prediction_columns``, ``metrics``
and ``evaluate``; a task config names one with ``_target_``. Adding a task means adding an
objective and a YAML file, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MultilabelAUROC, MultilabelAveragePrecision

from ecgexp.evaluation.binary import binary_report


class MultiLabel:
    """Independent binary labels (abnormality task): BCE with logits, sigmoid scores.

    Args:
        target_columns: label names, one output each.
    """

    def __init__(self, target_columns: Sequence[str]):
        if not target_columns:
            raise ValueError("task.objective.target_columns: at least one label is needed")
        self.target_columns = list(target_columns)

    @property
    def n_outputs(self) -> int:
        return len(self.target_columns)

    @property
    def prediction_columns(self) -> list[str]:
        return [f"score_{name}" for name in self.target_columns]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets)

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def metric_inputs(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple:
        return self.activation(logits), targets.long()

    def metrics(self) -> MetricCollection:
        """Macro metrics tracked during validation and test (fed by ``metric_inputs``)."""
        labels = self.n_outputs
        return MetricCollection({"auroc": MultilabelAUROC(labels, average="macro"),
                                 "ap": MultilabelAveragePrecision(labels, average="macro")})

    def evaluate(self, predictions: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
        """Per-label and macro metrics on every split; thresholds chosen on ``val``."""
        return binary_report(predictions, self.target_columns)
