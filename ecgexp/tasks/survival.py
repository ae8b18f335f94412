"""Time-to-event objectives: the common network trained directly on a follow-up time and an
event indicator (mortality from ``timey``/``death``, time to a first AF).

Targets are two exam-table columns: ``time_column`` (follow-up in ``time_unit``, >= 0) and
``event_column`` (1: the event at that time, 0: censored then). Exams without either are left
out by the data module, as for any task.

- :class:`CoxSurvival`: one output, the log relative hazard ``eta``, trained on Cox's partial
  likelihood over the batch (:mod:`ecgexp.tasks.cox`; the batch is the risk set).
- :class:`DiscreteTimeSurvival`: the logistic-hazard model (Gensheimer & Narasimhan 2019,
  pycox's ``LogisticHazard``): one logit per time interval, the conditional probability of the
  event in the interval given survival to its start, so survival curves come out directly.

Both predict ``risk_score`` (higher: earlier event expected); the discrete-time model adds
``survival_at_<h>``, the survival probability at each configured horizon. Reports hold Harrell's
and Uno's C, the time-dependent AUROC at the horizons and, with survival curves, the Brier
score at the horizons and its integral (:mod:`ecgexp.metrics.survival`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities import dim_zero_cat

from ecgexp.columns import RISK, survival_at
from ecgexp.errors import UserError
from ecgexp.evaluation.survival_report import survival_report
from ecgexp.metrics.survival import harrell_c
from ecgexp.tasks.cox import TIES, cox_loss
from ecgexp.tasks.objectives import Objective


class HarrellC(Metric):
    """Harrell's concordance of the risk scores over every exam seen (not per batch)."""

    higher_is_better = True
    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in ("risk", "time", "event"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> None:
        self.risk.append(risk.detach().float())
        self.time.append(time.float())
        self.event.append(event.float())

    def compute(self) -> torch.Tensor:
        risk, time, event = (dim_zero_cat(v).cpu().double().numpy()
                             for v in (self.risk, self.time, self.event))
        return torch.tensor(harrell_c(time, event, risk), dtype=torch.float32)


class Survival(Objective):
    """What the time-to-event objectives share: the two target columns, the horizons, the
    concordance tracked during validation and the report.

    Args:
        time_column: follow-up time column (``time_unit``), e.g. ``timey``.
        event_column: event column (0/1), e.g. ``death``.
        horizons: times (``time_unit``) of the time-dependent AUROC, and of the survival
            probabilities and Brier scores of models that give survival curves.
        time_unit: the unit of ``time_column`` (axes and tables), e.g. ``years``.
    """

    analyses = ("survival", "strata")

    def __init__(self, time_column: str, event_column: str,
                 horizons: Sequence[float] = (1, 2, 5), time_unit: str = ""):
        super().__init__([time_column, event_column])
        horizons = [float(h) for h in horizons or ()]
        if not horizons or any(h <= 0 for h in horizons) or horizons != sorted(set(horizons)):
            raise UserError(f"task.objective.horizons: give increasing positive times, got "
                            f"{horizons}")
        self.time_column, self.event_column = time_column, event_column
        self.horizons = horizons
        self.time_unit = self.units = time_unit

    @property
    def binary_columns(self) -> list[str]:
        return [self.event_column]

    @property
    def valid_ranges(self) -> dict[str, tuple[float, float, str]]:
        """Follow-up times are not negative."""
        return {self.time_column: (0.0, float("inf"), "task.objective.time_column")}

    @property
    def survival_columns(self) -> list[str]:
        """The ``survival_at_<h>`` prediction columns (none without survival curves)."""
        return []

    def metrics(self) -> MetricCollection:
        return MetricCollection({"cindex": HarrellC()})

    def metric_inputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple:
        return self.predict(outputs)[:, 0], targets[:, 0], targets[:, 1]

    def evaluate(self, predictions: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
        return survival_report(predictions, self.time_column, self.event_column,
                               self.horizons, self.survival_columns)


class CoxSurvival(Survival):
    """Cox proportional hazards on the network's one output ``eta`` (the log relative hazard,
    ``risk_score``); loss: minus the batch's partial log-likelihood per event, with ``ties``
    ``efron`` or ``breslow``. The risk set is the batch: the loss needs batches with events,
    and larger batches (``loader.batch_size``) estimate it better (see :mod:`ecgexp.tasks.cox`).
    """

    n_outputs = 1

    def __init__(self, time_column: str, event_column: str, ties: str = "efron",
                 horizons: Sequence[float] = (1, 2, 5), time_unit: str = ""):
        super().__init__(time_column, event_column, horizons, time_unit)
        if ties not in TIES:
            raise UserError(f"task.objective.ties: {ties!r} is not one of {', '.join(TIES)}")
        self.ties = ties

    @property
    def prediction_columns(self) -> list[str]:
        return [RISK]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return cox_loss(outputs[:, 0], targets[:, 0], targets[:, 1], self.ties).float()

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, :1]


class DiscreteTimeSurvival(Survival):
    """Logistic hazard over the intervals ``[cuts[k-1], cuts[k])`` (``time_unit``; the first
    cut is 0): output ``k`` is the logit of the hazard ``h_k``, the probability of the event in
    interval ``k`` given survival to its start; ``S(cuts[k]) = prod_{j<=k} (1 - h_j)``.

    Likelihood of an exam whose time falls in interval ``k``: survival of the intervals before
    ``k`` and, with an event, the event in ``k``; a censored exam also survives ``k`` when
    censored in its second half (the actuarial convention: on average at risk for half of the
    interval). Times at or after the last cut survive every interval. The loss is the mean
    over the batch of minus the log-likelihood. Survival between cuts interpolates with a
    constant hazard rate within the interval; ``risk_score`` is ``1 - S(horizons[-1])``, the
    probability of the event by the last horizon (the later intervals, with few exams at risk,
    are the least certain).

    Args:
        cuts: increasing interval boundaries starting at 0; the horizons must not pass the last.
    """

    def __init__(self, time_column: str, event_column: str, cuts: Sequence[float],
                 horizons: Sequence[float] = (1, 2, 5), time_unit: str = ""):
        super().__init__(time_column, event_column, horizons, time_unit)
        cuts = [float(c) for c in cuts or ()]
        if len(cuts) < 2 or cuts[0] != 0 or any(b <= a for a, b in zip(cuts, cuts[1:])):
            raise UserError(f"task.objective.cuts: give increasing interval boundaries starting "
                            f"at 0, at least two, got {cuts}")
        if self.horizons[-1] > cuts[-1]:
            raise UserError(f"task.objective.horizons: {self.horizons[-1]:g} is after the last "
                            f"interval boundary {cuts[-1]:g} (task.objective.cuts)")
        self.cuts = cuts

    @property
    def n_outputs(self) -> int:
        return len(self.cuts) - 1

    @property
    def prediction_columns(self) -> list[str]:
        return [RISK, *self.survival_columns]

    @property
    def output_names(self) -> list[str]:
        """One hazard logit per interval: ``hazard_0-1``, ``hazard_1-2``, ..."""
        return [f"hazard_{a:g}-{b:g}" for a, b in zip(self.cuts, self.cuts[1:])]

    @property
    def output_columns(self) -> list[str]:
        """The hazard logits have no prediction column of their own; each shows in the risk."""
        return [RISK] * self.n_outputs

    @property
    def survival_columns(self) -> list[str]:
        return [survival_at(h) for h in self.horizons]

    def training_statistics(self, targets: np.ndarray) -> dict:
        """The life-table hazard of each interval on the training split, the maximum of
        :meth:`loss` for one set of logits shared by every exam: its events over the exams
        entering it, less those censored in its first half."""
        time, event = targets[:, 0], targets[:, 1] == 1
        hazards = []
        for start, end in zip(self.cuts, self.cuts[1:]):
            inside = (time >= start) & (time < end)
            early = inside & ~event & (time < (start + end) / 2)
            at_risk = (time >= start).sum() - early.sum()
            hazards.append(float((inside & event).sum() / at_risk) if at_risk > 0 else 0.0)
        return {"interval_hazards": hazards}

    def output_bias(self) -> list[float] | None:
        """The logits of the training split's interval hazards (None before :meth:`fit`):
        before any training, every exam's survival curve is the life table's, not a hazard
        of 1/2 per interval."""
        if "interval_hazards" not in self.state:
            return None
        hazards = np.clip(self.state["interval_hazards"], 1e-4, 1 - 1e-4)
        return np.log(hazards / (1 - hazards)).tolist()

    def _intervals(self, time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The interval index of each time (``n_outputs`` past the last cut) and whether the
        time lies in the second half of its interval."""
        cuts = time.new_tensor(self.cuts)
        index = torch.bucketize(time, cuts, right=True) - 1
        inside = index.clamp(max=self.n_outputs - 1)
        middle = (cuts[inside] + cuts[inside + 1]) / 2
        return index.clamp(max=self.n_outputs), time >= middle

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        time, event = targets[:, 0].contiguous(), targets[:, 1]
        index, late = self._intervals(time)
        positions = torch.arange(self.n_outputs, device=outputs.device)[None, :]
        survived = positions < (index + ((event == 0) & late).long())[:, None]
        died = (positions == index[:, None]) & (event[:, None] == 1)
        # -log(1 - h) = softplus(logit), -log h = softplus(-logit)
        nll = (survived * F.softplus(outputs) + died * F.softplus(-outputs)).sum(dim=1)
        return nll.mean()

    def survival_at(self, outputs: torch.Tensor, times: Sequence[float]) -> torch.Tensor:
        """``(batch, len(times))`` survival probabilities at ``times`` (within the cuts)."""
        log_survival = -F.softplus(outputs)  # log(1 - h_k)
        cumulative = torch.cat([log_survival.new_zeros(len(outputs), 1),
                                log_survival.cumsum(dim=1)], dim=1)  # log S at each cut
        cuts = outputs.new_tensor(self.cuts)
        times = outputs.new_tensor(list(times))
        k = (torch.bucketize(times, cuts, right=True) - 1).clamp(max=self.n_outputs - 1)
        fraction = (times - cuts[k]) / (cuts[k + 1] - cuts[k])
        return torch.exp(cumulative[:, k] + fraction * log_survival[:, k])

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        survival = self.survival_at(outputs, self.horizons)
        return torch.cat([1 - survival[:, -1:], survival], dim=1)

