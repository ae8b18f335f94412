"""Objectives for a continuous target (age, serum potassium): regression, Gaussian, and the
bucketed classification and ordinal (CORAL) variants of the electrolyte study.

All of them report the same regression metrics in the target's own units (years, mmol/L):
the class variants map each predicted class to its bucket's value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC
from torchmetrics.regression import (
    MeanAbsoluteError,
    MeanSquaredError,
    PearsonCorrCoef,
    R2Score,
)

from ecgexp.columns import mean_of, predicted_of, probability_of, std_of, target_of
from ecgexp.errors import UserError
from ecgexp.evaluation.regression import regression_report
from ecgexp.tasks.loss_weights import (
    check_weight_option,
    class_weights_option,
    inverse_frequency_weights,
)
from ecgexp.tasks.objectives import Objective

WEIGHTINGS = (None, "exact_value", "buckets")


class Buckets:
    """Bucket edges ``e_0 < ... < e_{K-2}`` split a value into K classes: class ``i`` holds
    ``e_{i-1} <= y < e_i`` (``np.digitize(y, edges)``, right=False, as the published classes).

    A class stands for the mid-point of its bucket; the two outer classes for their edge.
    """

    def __init__(self, edges: Sequence[float], key: str = "task.objective.buckets"):
        edges = [float(e) for e in edges or ()]
        if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"{key}: at least one bucket edge is needed, in increasing order "
                             f"(got {edges})")
        self.edges = edges
        self.n_classes = len(edges) + 1
        inner = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
        self.values = [edges[0], *inner, edges[-1]]

    def classes(self, values: torch.Tensor) -> torch.Tensor:
        return torch.bucketize(values, values.new_tensor(self.edges), right=True)

    def value_of(self, classes: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.values, dtype=torch.float32, device=classes.device)[classes]


class ContinuousTarget(Objective):
    """One continuous target column; the first prediction column is its predicted value.

    Args:
        target_column: the exam-table column (e.g. ``age``, ``potassium``).
        events: clinical events detected from the predicted value, e.g.
            ``{hyperkalaemia: {above: 5.5}, hypokalaemia: {below: 3.5}}`` (AUROC, AP).
        units: the target's units (plot axes, figure titles), e.g. ``years``, ``mmol/L``.
    """

    analyses = ("regression", "strata")

    def __init__(self, target_column: str,
                 events: Mapping[str, Mapping[str, float]] | None = None, units: str = "",
                 valid_range: Sequence[float] | None = None):
        super().__init__([target_column])
        if valid_range is not None and (len(valid_range) != 2
                                        or not float(valid_range[0]) < float(valid_range[1])):
            raise UserError(f"task.objective.valid_range: [low, high] with low < high is "
                            f"needed, got {list(valid_range)}")
        self.valid_range = None if valid_range is None else tuple(map(float, valid_range))
        self.target_column = target_column
        self.units = units
        self.events = {name: dict(rule) for name, rule in (events or {}).items()}

    @property
    def valid_ranges(self) -> dict[str, tuple[float, float, str]]:
        if self.valid_range is None:
            return {}
        return {self.target_column: (*self.valid_range, "task.objective.valid_range")}

    @property
    def predicted_column(self) -> str:
        return predicted_of(self.target_column)

    def evaluate(self, predictions: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
        return regression_report(predictions, self.target_column, self.events or None)


class Regression(ContinuousTarget):
    """Squared-error regression (ECG-age; electrolyte regression).

    The loss is the mean of ``w_i (z_i - output_i)^2`` where ``z`` is the target after the
    optional log transform and z-scoring with training statistics; predictions are reported
    back in the target's units. (The published code summed over the batch; with Adam the
    scale of the loss does not change the updates, and the mean is what it logged.)

    Args:
        log_transform: regress ``log(y)``.
        standardise: z-score the (log-)target with the training mean and standard deviation.
        weighting: ``null``; ``exact_value`` (ECG-age: ``1 / count`` of the exact target value
            in the training split, mean 1; a value unseen in training takes the weight of the
            closest training value); or ``buckets`` (inverse bucket frequency, mean 1).
        buckets: bucket edges for ``weighting=buckets``.
        max_weight: clip the weights at this value and rescale to mean 1 again.
        gap_column: name of an added predictions column ``predicted - target`` (``age_gap``);
            with it the report adds the gap-vs-mortality analysis.
    """

    def __init__(self, target_column: str, log_transform: bool = False,
                 standardise: bool = False, weighting: str | None = None,
                 buckets: Sequence[float] | None = None, max_weight: float | None = None,
                 gap_column: str | None = None,
                 events: Mapping[str, Mapping[str, float]] | None = None, units: str = "",
                 valid_range: Sequence[float] | None = None):
        super().__init__(target_column, events, units, valid_range)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"task.objective.weighting: '{weighting}' is not one of "
                             f"{WEIGHTINGS}")
        self.buckets = Buckets(buckets) if weighting == "buckets" else None
        self.log_transform = log_transform
        self.standardise = standardise
        self.weighting = weighting
        self.max_weight = max_weight
        self.gap_column = gap_column
        if gap_column:
            self.analyses = (*self.analyses, "mortality")

    n_outputs = 1

    @property
    def prediction_columns(self) -> list[str]:
        return [self.predicted_column]

    def _log(self, values):
        return np.log(values) if self.log_transform else values

    def training_statistics(self, targets: np.ndarray) -> dict:
        values = targets[:, 0]
        if self.log_transform and (values <= 0).any():
            raise ValueError(f"task.objective.log_transform: '{self.target_column}' has "
                             f"values <= 0 in the training split")
        state = {}
        if self.standardise:
            transformed = self._log(values)
            state.update(mean=float(transformed.mean()), std=float(transformed.std()))
        if self.weighting == "exact_value":
            distinct, weights = inverse_frequency_weights(values, self.max_weight)
            state["sample_weights"] = {"values": distinct.tolist(), "weights": weights.tolist()}
        elif self.weighting == "buckets":
            classes = self.buckets.classes(torch.as_tensor(values)).numpy()
            present, weights = inverse_frequency_weights(classes, self.max_weight)
            table = np.ones(self.buckets.n_classes)
            table[present.astype(int)] = weights
            state["bucket_weights"] = table.tolist()
        return state

    def transform(self, targets: torch.Tensor) -> torch.Tensor:
        """Target -> the scale the network regresses (log, z-scored)."""
        values = torch.log(targets) if self.log_transform else targets
        if self.standardise:
            values = (values - self.fitted("mean")) / self.fitted("std")
        return values

    def untransform_scale(self, outputs: torch.Tensor) -> torch.Tensor:
        """Undoes the z-scoring only (log scale stays log)."""
        if self.standardise:
            return outputs * self.fitted("std") + self.fitted("mean")
        return outputs

    def sample_weights(self, targets: torch.Tensor) -> torch.Tensor | None:
        """Per-exam loss weights for ``(batch,)`` raw targets, or ``None``."""
        if self.weighting == "exact_value":
            table = self.fitted("sample_weights")
            values = targets.new_tensor(table["values"])
            closest = torch.argmin((targets[:, None] - values[None, :]).abs(), dim=1)
            return targets.new_tensor(table["weights"])[closest]
        if self.weighting == "buckets":
            return targets.new_tensor(self.fitted("bucket_weights"))[self.buckets.classes(targets)]
        return None

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        squared_error = (outputs[:, 0] - self.transform(targets[:, 0])) ** 2
        weights = self.sample_weights(targets[:, 0])
        return (squared_error if weights is None else weights * squared_error).mean()

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        values = self.untransform_scale(outputs[:, :1])
        return torch.exp(values) if self.log_transform else values

    def metric_inputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple:
        return self.predict(outputs)[:, 0], targets[:, 0]

    def metrics(self) -> MetricCollection:
        return MetricCollection({"mae": MeanAbsoluteError(),
                                 "rmse": MeanSquaredError(squared=False),
                                 "r2": R2Score(), "pearson": PearsonCorrCoef()})

    def add_derived_columns(self, table: pd.DataFrame) -> pd.DataFrame:
        if self.gap_column:
            table[self.gap_column] = (table[self.predicted_column]
                                      - table[target_of(self.target_column)])
        return table


class GaussianRegression(Regression):
    """Mean and log-variance heads with the Gaussian negative log-likelihood (electrolytes).

    The network outputs ``[mean, log_variance]`` (``model.head=gaussian``) on the transformed
    target scale. The loss is the published ``exp(-logvar) (z - mean)^2 + logvar``, averaged
    over the batch, without the published ``clamp(loss, 10000)`` that set a *minimum* of 10000
    and stopped all learning (docs/studies.md §6.11). Predictions: the predicted value (the
    median in the target's units) and ``mean_*``/``std_*`` of the Gaussian on the log scale when
    ``log_transform`` is on, else in the target's units.

    Args:
        interval_level: the central predictive interval whose coverage is reported.
    """

    head = "gaussian"

    def __init__(self, target_column: str, log_transform: bool = False,
                 standardise: bool = True, interval_level: float = 0.9,
                 events: Mapping[str, Mapping[str, float]] | None = None, units: str = "",
                 valid_range: Sequence[float] | None = None):
        super().__init__(target_column, log_transform, standardise, events=events, units=units,
                         valid_range=valid_range)
        self.interval_level = interval_level

    @property
    def prediction_columns(self) -> list[str]:
        return [self.predicted_column, mean_of(self.target_column), std_of(self.target_column)]

    @property
    def output_names(self) -> list[str]:
        return [mean_of(self.target_column), f"log_variance_{self.target_column}"]

    @property
    def output_columns(self) -> list[str]:
        return [self.predicted_column, std_of(self.target_column)]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        mean, log_variance = outputs[:, 0], outputs[:, 1]
        squared_error = (self.transform(targets[:, 0]) - mean) ** 2
        return (torch.exp(-log_variance) * squared_error + log_variance).mean()

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        mean = self.untransform_scale(outputs[:, :1])
        std = torch.exp(outputs[:, 1:2] / 2) * (self.fitted("std") if self.standardise else 1)
        value = torch.exp(mean) if self.log_transform else mean
        return torch.cat([value, mean, std], dim=1)

    def evaluate(self, predictions: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
        gaussian = {"level": self.interval_level, "log_target": self.log_transform}
        return regression_report(predictions, self.target_column, self.events or None, gaussian)


class BucketClassification(ContinuousTarget):
    """The target's bucket as a class: softmax cross-entropy over ``len(buckets) + 1`` classes;
    a single edge gives the binary task (one output, BCE), as published.

    Predictions: ``prob_bucket<k>`` per class and the value of the most probable bucket.

    Args:
        buckets: increasing bucket edges (e.g. ``[3.5, 5.5]`` mmol/L).
        class_weights: ``null``, ``auto`` (``n_max / n_c`` of the training split) or a list.
    """

    def __init__(self, target_column: str, buckets: Sequence[float],
                 class_weights: str | Sequence[float] | None = None,
                 events: Mapping[str, Mapping[str, float]] | None = None, units: str = "",
                 valid_range: Sequence[float] | None = None):
        super().__init__(target_column, events, units, valid_range)
        self.buckets = Buckets(buckets)
        check_weight_option(class_weights, "class_weights")
        self.class_weights = class_weights

    @property
    def n_outputs(self) -> int:
        return 1 if self.buckets.n_classes == 2 else self.buckets.n_classes

    @property
    def prediction_columns(self) -> list[str]:
        return [self.predicted_column,
                *(probability_of(f"bucket{k}") for k in range(self.buckets.n_classes))]

    @property
    def output_columns(self) -> list[str]:
        """The logit of each class (binary: of the upper bucket) shows as its probability."""
        return self.prediction_columns[1:][-self.n_outputs:]

    def training_statistics(self, targets: np.ndarray) -> dict:
        if self.class_weights is None:
            return {}
        classes = self.buckets.classes(torch.as_tensor(targets[:, 0])).numpy()
        return {"class_weights": class_weights_option(self.class_weights, classes,
                                                      self.buckets.n_classes)}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        classes = self.buckets.classes(targets[:, 0])
        weights = (outputs.new_tensor(self.fitted("class_weights"))
                   if self.class_weights is not None else None)
        if self.n_outputs == 1:
            pos_weight = None if weights is None else weights[1] / weights[0]
            return F.binary_cross_entropy_with_logits(outputs[:, 0], classes.float(),
                                                      pos_weight=pos_weight)
        return F.cross_entropy(outputs, classes, weight=weights)

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        if self.n_outputs == 1:
            positive = torch.sigmoid(outputs[:, :1])
            return torch.cat([1 - positive, positive], dim=1)
        return torch.softmax(outputs, dim=1)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        probabilities = self.probabilities(outputs)
        value = self.buckets.value_of(probabilities.argmax(dim=1))[:, None]
        return torch.cat([value.to(probabilities.dtype), probabilities], dim=1)

    def metric_inputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple:
        return self.probabilities(outputs), self.buckets.classes(targets[:, 0])

    def metrics(self) -> MetricCollection:
        classes = self.buckets.n_classes
        return MetricCollection({"accuracy": MulticlassAccuracy(classes, average="micro"),
                                 "auroc": MulticlassAUROC(classes, average="macro")})


class Ordinal(ContinuousTarget):
    """CORAL ordinal regression over the buckets: K-1 logits sharing one weight vector with
    separate biases (``model.head=coral``); level ``k`` is 1 when the class is above ``k``.

    Loss: BCE with logits summed over the levels, averaged over the batch (the published code
    clamped sigmoids to [1e-5, 1-1e-5]; the logit form is the stable equivalent). The predicted
    class is the number of levels with sigmoid > 0.5. Predictions: the class's value and
    ``prob_above<k>`` per level.
    """

    head = "coral"

    def __init__(self, target_column: str, buckets: Sequence[float],
                 events: Mapping[str, Mapping[str, float]] | None = None, units: str = "",
                 valid_range: Sequence[float] | None = None):
        super().__init__(target_column, events, units, valid_range)
        self.buckets = Buckets(buckets)

    @property
    def n_outputs(self) -> int:
        return self.buckets.n_classes - 1

    @property
    def prediction_columns(self) -> list[str]:
        return [self.predicted_column,
                *(probability_of(f"above{k}") for k in range(self.n_outputs))]

    @property
    def output_columns(self) -> list[str]:
        return self.prediction_columns[1:]

    def levels(self, targets: torch.Tensor) -> torch.Tensor:
        """``(batch, K-1)`` CORAL encoding of the raw targets ``(batch,)``."""
        classes = self.buckets.classes(targets)
        return (torch.arange(self.n_outputs, device=targets.device) < classes[:, None]).float()

    def predicted_classes(self, outputs: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(outputs) > 0.5).sum(dim=1)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs, self.levels(targets[:, 0]),
                                                  reduction="none").sum(dim=1).mean()

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        value = self.buckets.value_of(self.predicted_classes(outputs))[:, None]
        return torch.cat([value.to(outputs.dtype), torch.sigmoid(outputs)], dim=1)

    def metric_inputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple:
        return self.predicted_classes(outputs), self.buckets.classes(targets[:, 0])

    def metrics(self) -> MetricCollection:
        return MetricCollection({"accuracy": MulticlassAccuracy(self.buckets.n_classes,
                                                                average="micro")})
