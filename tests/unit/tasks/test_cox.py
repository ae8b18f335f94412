"""Cox's partial likelihood (``ecgexp.tasks.cox``) against a hand computation on a tiny batch
with tied event times, and against lifelines' Efron fit."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter

from ecgexp.tasks.cox import cox_loss, cox_partial_log_likelihood

# times 1, 1, 2, 3 (the two at 1 both events, 2 censored, 3 an event)
ETA = [0.5, -0.2, 0.1, 0.3]
TIME = [1.0, 1.0, 2.0, 3.0]
EVENT = [1, 1, 0, 1]


def tensors():
    return (torch.tensor(ETA, dtype=torch.float64, requires_grad=True), torch.tensor(TIME),
            torch.tensor(EVENT))


def test_breslow_and_efron_by_hand():
    e = [math.exp(x) for x in ETA]
    everyone = sum(e)
    # t = 1: events 0 and 1, everyone at risk; t = 3: exam 3 alone at risk (its term is 0)
    breslow = (ETA[0] + ETA[1]) - 2 * math.log(everyone)
    efron = (ETA[0] + ETA[1]) - math.log(everyone) - math.log(everyone - 0.5 * (e[0] + e[1]))
    eta, time, event = tensors()
    assert float(cox_partial_log_likelihood(eta, time, event, "breslow")) == pytest.approx(
        breslow, rel=1e-12)
    assert float(cox_partial_log_likelihood(eta, time, event, "efron")) == pytest.approx(
        efron, rel=1e-12)
    loss = cox_loss(eta, time, event, "efron")
    assert float(loss) == pytest.approx(-efron / 3)
    loss.backward()  # differentiable in the log-risks
    assert torch.isfinite(eta.grad).all() and eta.grad.abs().sum() > 0


def test_efron_equals_lifelines_at_its_fit():
    """lifelines fits a Cox model with Efron's ties; our partial log-likelihood of its linear
    predictor equals its ``log_likelihood_`` (centering covariates cancels out)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    time = np.ceil(rng.exponential(np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1]))) * 4)  # ties
    event = (rng.random(200) < 0.7).astype(int)
    table = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "time": time, "event": event})
    fit = CoxPHFitter().fit(table, duration_col="time", event_col="event")
    eta = torch.tensor(x @ fit.params_[["x0", "x1"]].to_numpy())
    ours = cox_partial_log_likelihood(eta, torch.tensor(time), torch.tensor(event), "efron")
    assert len(np.unique(time[event == 1])) < event.sum()  # there are ties
    assert float(ours) == pytest.approx(fit.log_likelihood_, rel=1e-8)


def test_a_batch_without_events_gives_zero_and_bad_ties_are_named():
    eta = torch.tensor([0.1, 0.2], requires_grad=True)
    loss = cox_loss(eta, torch.tensor([1.0, 2.0]), torch.tensor([0, 0]))
    assert float(loss) == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="task.objective.ties: 'exact'"):
        cox_partial_log_likelihood(eta, torch.tensor([1.0, 2.0]), torch.tensor([1, 0]), "exact")
