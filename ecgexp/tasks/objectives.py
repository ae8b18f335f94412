"""Task objectives: what a prediction task means for the shared network.

Every objective has the same verbs: ``target_columns`` (exam-table columns stacked into the
batch target), ``n_outputs`` (network outputs), ``prediction_columns``, ``fit`` (statistics of
the training split: weights, normalisation), ``loss``, ``activation`` (outputs -> the prediction
columns, in the target's units), ``metrics`` (tracked while training) and ``evaluate``
(predictions tables -> report). A task config names one with ``_target_``; adding a task means
adding an objective and a YAML file, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryAveragePrecision,
    MultilabelAUROC,
    MultilabelAveragePrecision,
)

from ecgexp.evaluation.binary import binary_report, single_label_report
from ecgexp.tasks.loss_weights import check_weight_option, positive_weight


class Objective:
    """Shared plumbing: the target columns and the statistics fitted on the training split.

    ``state`` holds those statistics as plain numbers; it is logged, written to the run folder
    and stored in checkpoints, so a model can be used again without its training data.
    """

    # The network head the objective's outputs come from (ecgexp.models.resnet1d.HEADS).
    head = "linear"

    def __init__(self, target_columns: Sequence[str]):
        if not target_columns:
            raise ValueError("task.target_columns: at least one target column is needed")
        self.target_columns = list(target_columns)
        self.state: dict = {}

    def fit(self, targets: np.ndarray) -> dict:
        """Fits the training statistics on the training split's ``(exams, targets)`` array."""
        self.state = self.training_statistics(np.asarray(targets, dtype=np.float64))
        return self.state

    def training_statistics(self, targets: np.ndarray) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        self.state = dict(state)

    def fitted(self, key: str):
        if key not in self.state:
            raise RuntimeError(f"{type(self).__name__}: '{key}' comes from the training split; "
                               f"call fit() (or load a checkpoint) first")
        return self.state[key]

    def metric_inputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple:
        return self.activation(outputs), targets

    @property
    def binary_columns(self) -> list[str]:
        """The target columns whose values must be 0 or 1 (checked when the data is read)."""
        return []

    def add_derived_columns(self, table: pd.DataFrame) -> pd.DataFrame:
        """Columns computed from a finished predictions table (e.g. the age gap)."""
        return table


class MultiLabel(Objective):
    """Independent binary labels (abnormality task): BCE with logits, sigmoid scores.

    Args:
        target_columns: label names, one output each.
        pos_weight: BCE weight of the positives: ``null``, a number (all labels), a list (one
            per label) or ``auto`` (negatives / positives of each label in the training split).
    """

    def __init__(self, target_columns: Sequence[str],
                 pos_weight: float | str | Sequence[float] | None = None):
        super().__init__(target_columns)
        check_weight_option(pos_weight, "pos_weight")
        self.pos_weight = pos_weight

    @property
    def n_outputs(self) -> int:
        return len(self.target_columns)

    @property
    def prediction_columns(self) -> list[str]:
        return [f"score_{name}" for name in self.target_columns]

    @property
    def binary_columns(self) -> list[str]:
        return list(self.target_columns)

    def training_statistics(self, targets: np.ndarray) -> dict:
        if self.pos_weight is None:
            return {}
        if self.pos_weight == "auto":
            weights = [positive_weight(targets[:, i]) for i in range(self.n_outputs)]
        else:
            weights = np.broadcast_to(np.asarray(self.pos_weight, dtype=float),
                                      (self.n_outputs,)).tolist()
        return {"pos_weight": dict(zip(self.target_columns, weights))}

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = logits.new_tensor(list(self.fitted("pos_weight").values()))
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def metric_inputs(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple:
        if self.n_outputs == 1:
            return self.activation(logits)[:, 0], targets[:, 0].long()
        return self.activation(logits), targets.long()

    def metrics(self) -> MetricCollection:
        """Macro metrics tracked during validation and test (fed by ``metric_inputs``)."""
        labels = self.n_outputs
        if labels == 1:
            return MetricCollection({"auroc": BinaryAUROC(), "ap": BinaryAveragePrecision()})
        return MetricCollection({"auroc": MultilabelAUROC(labels, average="macro"),
                                 "ap": MultilabelAveragePrecision(labels, average="macro")})

    def evaluate(self, predictions: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
        """Per-label and macro metrics on every split; thresholds chosen on ``val``."""
        return binary_report(predictions, self.target_columns)


class Binary(MultiLabel):
    """One binary label (Chagas): BCE with logits and optional ``pos_weight``, sigmoid score.

    Evaluation reports AUROC, AP and the challenge score (fraction of the positives ranked in
    the top ``challenge_fraction`` of scores), and the detection metrics at each threshold rule
    (``max_f1``, ``youden``, ``specificity_<pct>``), chosen on the validation split.
    """

    def __init__(self, target_column: str, pos_weight: float | str | None = None,
                 threshold_rules: Sequence[str] = ("max_f1", "youden", "specificity_90"),
                 challenge_fraction: float = 0.05):
        super().__init__([target_column], pos_weight)
        self.threshold_rules = list(threshold_rules)
        self.challenge_fraction = challenge_fraction

    def evaluate(self, predictions: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
        return single_label_report(predictions, self.target_columns[0], self.threshold_rules,
                                   self.challenge_fraction)
