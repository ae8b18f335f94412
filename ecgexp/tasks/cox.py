"""Cox's partial likelihood as a training loss on a batch (the risk set is the batch).

For predicted log-risks ``eta`` (one per exam), follow-up ``time`` and ``event`` (1: the event
at ``time``, 0: censored then), at each distinct event time ``t`` with the set ``D`` of its
``d`` events and the risk set ``R = {j: time_j >= t}``:

- Breslow: ``sum_{i in D} eta_i - d log sum_{j in R} exp(eta_j)``;
- Efron: ``sum_{i in D} eta_i - sum_{l=0}^{d-1} log(sum_{j in R} exp(eta_j)
  - (l / d) sum_{i in D} exp(eta_i))``.

The loss is minus their sum over the event times, divided by the batch's number of events
(0 for a batch without events). Because the risk set is the batch, the loss of a batch is a
noisy, downward-biased estimate of the full-data partial likelihood: small batches and few
events per batch make it noisier. The usual remedies: larger batches, and batches sampled so
that each holds enough events (the order of the exams within a batch does not matter).
"""

from __future__ import annotations

import torch

TIES = ("breslow", "efron")


def cox_partial_log_likelihood(eta: torch.Tensor, time: torch.Tensor, event: torch.Tensor,
                               ties: str = "efron") -> torch.Tensor:
    """The partial log-likelihood (a scalar) of ``(exams,)`` log-risks ``eta``, times and 0/1
    ``event``, with ``ties`` ``breslow`` or ``efron``; differentiable in ``eta``."""
    if ties not in TIES:
        raise ValueError(f"task.objective.ties: {ties!r} is not one of {', '.join(TIES)}")
    eta, time = eta.reshape(-1).double(), time.reshape(-1).double()
    event = event.reshape(-1).bool()
    shift = eta.detach().max() if len(eta) else eta.new_zeros(())
    risk = torch.exp(eta - shift)  # exp(eta) up to the common factor exp(shift)
    total = eta.new_zeros(())
    for t in torch.unique(time[event]):
        dead = event & (time == t)
        at_risk = risk[time >= t].sum()
        d = int(dead.sum())
        total = total + eta[dead].sum()
        if ties == "breslow":
            total = total - d * (torch.log(at_risk) + shift)
        else:
            tied = risk[dead].sum()
            fractions = torch.arange(d, dtype=eta.dtype, device=eta.device) / d
            total = total - (torch.log(at_risk - fractions * tied) + shift).sum()
    return total


def cox_loss(eta: torch.Tensor, time: torch.Tensor, event: torch.Tensor,
             ties: str = "efron") -> torch.Tensor:
    """Minus the batch's partial log-likelihood per event (0 without events)."""
    events = event.reshape(-1).bool().sum()
    if events == 0:
        return (eta * 0).sum()  # keeps the graph; no information in this batch
    return -cox_partial_log_likelihood(eta, time, event, ties) / events
