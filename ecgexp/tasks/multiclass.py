"""Single-label multi-class objective: the target column holds one of K class values.

AF risk (1 no AF, 2 AF now, 3 AF later; docs/studies.md §3.4) is a configuration of it
(``task=af_risk``): its classes and its "class 3 vs 1" contrast are config values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAUROC, MulticlassAveragePrecision

from ecgexp.columns import probability_of
from ecgexp.errors import UserError
from ecgexp.evaluation.multiclass import Contrast, multiclass_report
from ecgexp.tasks.loss_weights import check_weight_option, class_weights_option
from ecgexp.tasks.objectives import Objective


class MultiClass(Objective):
    """Softmax cross-entropy over ``classes`` (the values of ``target_column``), with
    optional class weights ``n_max / n_c``.

    Predictions: ``prob_<name>`` per class (names ``class<value>`` unless ``class_names``).
    Report: one-vs-rest AUROC/AP and support per class, macro AUROC/AP, accuracy, the
    support-weighted one-vs-rest AUROC, and each configured contrast (see
    :class:`ecgexp.evaluation.multiclass.Contrast`); analyses: bootstrap intervals and
    calibration per class, strata, and time to event per contrast that names its time columns.

    Args:
        target_column: the class column (e.g. ``exam_class`` from ``af_risk_classes``).
        classes: the class values, in output order (e.g. ``[1, 2, 3]``).
        class_names: one name per class for the prediction columns; default ``class<value>``.
        class_weights: ``null``, ``auto`` or one weight per class.
        contrasts: ``{name: {positive: value, negative: value}}`` (optionally with
            ``event_time`` and ``censor_time`` columns of the exam table for the time-to-event
            analysis), e.g. AF risk's ``class3_vs_1``.
    """

    analyses = ("classes", "strata")

    def __init__(self, target_column: str, classes: Sequence[float],
                 class_names: Sequence[str] | None = None,
                 class_weights: str | Sequence[float] | None = None,
                 contrasts: Mapping[str, Mapping] | None = None):
        super().__init__([target_column])
        given = list(classes) if classes is not None else []
        if not all(isinstance(c, int | float) and not isinstance(c, bool) for c in given):
            raise UserError(f"task.objective.classes: the class values of '{target_column}' "
                            f"must be numbers, got {given}")
        self.classes = [float(c) for c in given]
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise UserError(f"task.objective.classes: at least two distinct class values are "
                            f"needed, got {given}")
        names = [str(n) for n in class_names] if class_names is not None else [
            f"class{int(c) if c.is_integer() else c}" for c in self.classes]
        reserved = {"macro", "overall", *(contrasts or {})}
        if (len(names) != len(self.classes) or len(set(names)) != len(names)
                or reserved & set(names)):
            raise UserError(f"task.objective.class_names: one distinct name per class is "
                            f"needed ({len(self.classes)} classes), none of "
                            f"{', '.join(sorted(reserved))}; got {names}")
        self.class_names = names
        check_weight_option(class_weights, "class_weights")
        self.class_weights = class_weights
        self.contrasts = {name: Contrast.from_config(name, rule, self.classes)
                          for name, rule in (contrasts or {}).items()}
        if any(c.event_time for c in self.contrasts.values()):
            self.analyses = (*self.analyses, "contrast_survival")

    @property
    def n_outputs(self) -> int:
        return len(self.classes)

    @property
    def prediction_columns(self) -> list[str]:
        return [probability_of(name) for name in self.class_names]

    def class_index(self, targets: torch.Tensor) -> torch.Tensor:
        """Class values ``(batch, 1)`` -> class indices ``(batch,)``."""
        values = targets[:, 0]
        known = values.new_tensor(self.classes)
        match = values[:, None] == known[None, :]
        if not match.any(dim=1).all():
            unknown = values[~match.any(dim=1)].unique().tolist()
            raise UserError(f"task.objective.classes: '{self.target_columns[0]}' holds "
                            f"{unknown}, which are not among the classes {self.classes}")
        return match.int().argmax(dim=1)

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

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)

    def metric_inputs(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple:
        return self.predict(logits), self.class_index(targets)

    def metrics(self) -> MetricCollection:
        return MetricCollection({
            "auroc": MulticlassAUROC(self.n_outputs, average="macro"),
            "ap": MulticlassAveragePrecision(self.n_outputs, average="macro")})

    def evaluate(self, predictions: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
        return multiclass_report(predictions, self.target_columns[0], self.classes,
                                 self.class_names, list(self.contrasts.values()))

    def thresholds(self, report: dict) -> dict[str, float]:
        """Each contrast's threshold (max F1 on validation)."""
        rows = next(iter(report.values()))
        return {name: rows[name]["threshold"] for name in self.contrasts if name in rows}
