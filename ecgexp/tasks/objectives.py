"""Task objectives: what a prediction task means for the shared network.

A task is one objective (named by ``task.objective._target_``) plus its YAML file. The
objective is the single owner of the task's contract (:class:`Objective`): which exam-table
columns are the targets, how many outputs the network has and which head gives them, the loss,
how outputs become predictions in the target's units, the metrics tracked while training, the
report of a finished run and the analyses ``ecgexp-evaluate`` runs on it, and the thresholds a
run carries to new data. Training, evaluation, prediction and heatmaps all ask the objective;
none of them reads task keys of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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

from ecgexp.columns import score_of
from ecgexp.errors import UserError
from ecgexp.evaluation.binary import binary_report, single_label_report
from ecgexp.tasks.loss_weights import check_weight_option, positive_weight


class Objective(ABC):
    """The contract of a task. Shapes: ``outputs`` are the network's ``(batch, width)``
    outputs (``width = len(output_names)``, no activation applied); ``targets`` the
    ``(batch, len(target_columns))`` float target columns of the exam table, in their units.

    - ``target_columns``: exam-table columns stacked into the batch target (declared once, as
      the objective's arguments); ``binary_columns``: those that must hold 0/1.
    - ``n_outputs`` and ``head``: the network's head (every network takes ``n_outputs`` and
      ``head``: :mod:`ecgexp.models.heads`).
    - ``output_names``: one name per network output (e.g. ``mean_k``, ``log_variance_k``);
      ``output_columns``: the prediction column that shows each output in the task's units.
    - ``fit(targets)``: statistics of the training split (``state``: plain numbers, stored in
      checkpoints; ``load_state`` restores them).
    - ``loss(outputs, targets)``: a scalar tensor.
    - ``predict(outputs)``: ``(batch, len(prediction_columns))`` predictions in the target's
      units (probabilities, years, mmol/L).
    - ``metrics()`` and ``metric_inputs(outputs, targets)``: torchmetrics tracked while
      training (logged as ``val_<name>``, ``test_<name>``).
    - ``evaluate(predictions)``: ``{split: {row: {metric: value}}}`` from predictions tables
      (``exam_id``, the prediction columns, ``target_<column>``).
    - ``thresholds(report)``: the decision thresholds chosen on validation, ``{label: t}``;
      ``thresholded_labels``: the labels that take one (binary probabilities), none for
      other kinds.
    - ``analyses``: the report analyses that apply (:mod:`ecgexp.evaluation.analyses`);
      ``report(inputs)``: the task kind's own report sections besides them.
    - ``units``: the target's units (plot axes, figure titles), ``""`` for probabilities.
    """

    # The network head the objective's outputs come from (ecgexp.models.heads.HEADS).
    head = "linear"
    # The analyses of ecgexp.evaluation.analyses that ecgexp-evaluate runs for this task.
    analyses: tuple[str, ...] = ("strata",)
    units = ""

    def __init__(self, target_columns: Sequence[str]):
        if not target_columns:
            raise UserError("task.objective: at least one target column is needed")
        self.target_columns = [str(c) for c in target_columns]
        self.state: dict = {}

    # ------------------------------------------------------------------ shape of the task
    @property
    @abstractmethod
    def n_outputs(self) -> int:
        """Outputs per head branch, as every network takes ``n_outputs``."""

    @property
    @abstractmethod
    def prediction_columns(self) -> list[str]:
        """The predictions-table columns ``predict`` returns, in order."""

    @property
    def output_names(self) -> list[str]:
        """One name per network output (the columns of ``outputs``)."""
        return list(self.output_columns)

    @property
    def output_columns(self) -> list[str]:
        """For each network output, the prediction column that shows it in the task's
        units (the first prediction columns, one per output, unless an objective says
        otherwise)."""
        return self.prediction_columns[:self.n_outputs]

    @property
    def binary_columns(self) -> list[str]:
        """The target columns whose values must be 0 or 1 (checked when the data is read)."""
        return []

    @property
    def thresholded_labels(self) -> list[str]:
        """The labels whose scores are probabilities with a decision threshold (a report's
        binary analyses, Challenge exports, McNemar and accuracy in comparisons)."""
        return []

    @property
    def valid_ranges(self) -> dict[str, tuple[float, float, str]]:
        """Target column -> ``(low, high, config key)``: the plausible values; exams outside
        are left out when the data is read, with a warning naming them."""
        return {}

    # ------------------------------------------------------------------ training statistics
    def fit(self, targets: np.ndarray) -> dict:
        """Fits the training statistics on the training split's ``(exams, targets)`` array."""
        self.state = self.training_statistics(np.asarray(targets, dtype=np.float64))
        return self.state

    def training_statistics(self, targets: np.ndarray) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        self.state = dict(state)

    def output_bias(self) -> list[float] | None:
        """Initial biases of the network's outputs, from the training statistics; None (the
        default): the network's own initialisation."""
        return None

    def fitted(self, key: str):
        if key not in self.state:
            raise RuntimeError(f"{type(self).__name__}: '{key}' comes from the training split; "
                               f"call fit() (or load a checkpoint) first")
        return self.state[key]

    # ------------------------------------------------------------------ the verbs
    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch (a scalar)."""

    @abstractmethod
    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Network outputs -> ``(batch, len(prediction_columns))`` in the target's units."""

    @abstractmethod
    def metrics(self) -> MetricCollection:
        """The metrics tracked during validation and test (fed by ``metric_inputs``)."""

    def metric_inputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple:
        return self.predict(outputs), targets

    @abstractmethod
    def evaluate(self, predictions: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
        """The report of predictions tables per split (thresholds chosen on ``val``)."""

    def thresholds(self, report: dict) -> dict[str, float]:
        """The decision thresholds of a report, ``{label: threshold}`` (none by default)."""
        return {}

    def add_derived_columns(self, table: pd.DataFrame) -> pd.DataFrame:
        """Columns computed from a finished predictions table (e.g. the age gap)."""
        return table

    def report(self, inputs) -> dict[str, pd.DataFrame]:
        """The task kind's own report sections, ``{name: table}`` (written as
        ``<name>.csv``/``.md`` in the report folder beside those of the named ``analyses``):
        ``inputs`` is what every analysis receives
        (:class:`ecgexp.evaluation.analyses.ReportInputs`: the predictions per split, the
        thresholds, the exam attributes, the settings, the report folder for figures). A new
        task kind defined outside ecgexp adds its section here; none by default."""
        return {}


class MultiLabel(Objective):
    """Independent binary labels (abnormality task): BCE with logits, sigmoid scores.

    Args:
        target_columns: label names, one output each.
        pos_weight: BCE weight of the positives: ``null``, a number (all labels), a list (one
            per label) or ``auto`` (negatives / positives of each label in the training split).
    """

    analyses = ("binary", "strata")

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
        return [score_of(name) for name in self.target_columns]

    @property
    def binary_columns(self) -> list[str]:
        return list(self.target_columns)

    @property
    def thresholded_labels(self) -> list[str]:
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

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def metric_inputs(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple:
        if self.n_outputs == 1:
            return self.predict(logits)[:, 0], targets[:, 0].long()
        return self.predict(logits), targets.long()

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

    def thresholds(self, report: dict) -> dict[str, float]:
        """Each label's threshold (max F1 on validation), as the report holds it: NaN for a
        label whose validation exams are all positive or all negative (none is chosen)."""
        rows = next(iter(report.values()))
        return {label: rows[label]["threshold"] for label in self.target_columns
                if "threshold" in rows.get(label, {})}


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

    def thresholds(self, report: dict) -> dict[str, float]:
        """The label's threshold by the first threshold rule (``max_f1`` by default)."""
        rows = next(iter(report.values()))
        rule = self.threshold_rules[0] if self.threshold_rules else None
        return {self.target_columns[0]: rows[rule]["threshold"]} if rule in rows else {}
