"""Single-label multi-class objectives (AF risk: 1 no AF, 2 AF now, 3 AF later)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAUROC, MulticlassAveragePrecision

from ecgexp.evaluation.multiclass import af_risk_report
from ecgexp.tasks.objectives import Objective
from ecgexp.tasks.loss_weights import check_weight_option, class_weights_option

AF_RISK_CLASSES = (1, 2, 3)


class AFRisk(Objective):
    """Softmax cross-entropy over the AF-risk classes 1, 2, 3 (the target holds the class
    number, as in ``exam_class``), with optional class weights ``n_max / n_c``.

    Predictions: ``prob_class1..3``. Evaluation: one-vs-rest AUROC/AP per class, class 3 vs 1
    on ``p3 / (p1 + p3)`` with class-2 exams removed, and the detection metrics at the
    validation max-F1 threshold of that score (docs/studies.md §3.4).

    Args:
        target_column: the class column (``exam_class`` from ``af_risk_classes``).
        class_weights: ``null`` (as the released model), ``auto`` or a list of 3.
    """

    def __init__(self, target_column: str = "exam_class",
                 class_weights: str | Sequence[float] | None = None):
        super().__init__([target_column])
        check_weight_option(class_weights, "class_weights")
        self.class_weights = class_weights

    n_outputs = len(AF_RISK_CLASSES)

    @property
    def prediction_columns(self) -> list[str]:
        return [f"prob_class{c}" for c in AF_RISK_CLASSES]

    def class_index(self, targets: torch.Tensor) -> torch.Tensor:
        """Class numbers 1..3 ``(batch, 1)`` -> indices 0..2 ``(batch,)``."""
        index = targets[:, 0].round().long() - AF_RISK_CLASSES[0]
        if ((index < 0) | (index >= self.n_outputs)).any():
            raise ValueError(f"task.target_columns: '{self.target_columns[0]}' must hold the "
                             f"classes {AF_RISK_CLASSES}, got {targets[:, 0].unique().tolist()}")
        return index

    def training_statistics(self, targets: np.ndarray) -> dict:
        if self.class_weights is None:
            return {}
        index = self.class_index(torch.as_tensor(targets)).numpy()
        return {"class_weights": class_weights_option(self.class_weights, index,
                                                      self.n_outputs)}

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weights = (logits.new_tensor(self.fitted("class_weights"))
                   if self.class_weights is not None else None)
        return F.cross_entropy(logits, self.class_index(targets), weight=weights)

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)

    def metric_inputs(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple:
        return self.activation(logits), self.class_index(targets)

    def metrics(self) -> MetricCollection:
        return MetricCollection({
            "auroc": MulticlassAUROC(self.n_outputs, average="macro"),
            "ap": MulticlassAveragePrecision(self.n_outputs, average="macro")})

    def evaluate(self, predictions: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
        return af_risk_report(predictions, self.target_columns[0])
