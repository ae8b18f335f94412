"""FLOPs of a network per exam, counted by ``torch.utils.flop_counter.FlopCounterMode`` over a
pass on one ``(1, leads, samples)`` exam.

``FlopCounterMode`` counts the matrix products and convolutions a pass runs (``mm``, ``addmm``,
``bmm``, ``convolution`` and their backward operations), at 2 FLOPs per multiply-accumulate:
``2 * C_out * C_in / groups * kernel * L_out`` for a 1-D convolution, ``2 * in * out`` for a
linear layer. Element-wise work (bias additions, batch norm, ReLU, dropout, pooling, the
residual additions, the loss) is not counted; for the default network it adds well under 1 %.

A training step is measured too: forward and backward in training mode, the backward pass
computing the gradients of the weights and of every activation but the input tracings (so a
little under three forward passes).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _exam(net: nn.Module, leads: int, samples: int, n_metadata: int) -> tuple:
    """One exam of zeros, on the network's device: the tracings (and metadata when any)."""
    device = next(net.parameters()).device
    tracings = torch.zeros(1, leads, samples, device=device)
    return (tracings,) if not n_metadata else (tracings, torch.zeros(1, n_metadata,
                                                                     device=device))


def forward_flops(net: nn.Module, leads: int, samples: int, n_metadata: int = 0) -> int:
    """FLOPs of one exam's forward pass (eval mode, no gradients)."""
    inputs = _exam(net, leads, samples, n_metadata)
    training = net.training
    net.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(*inputs)
    finally:
        net.train(training)
    return counter.get_total_flops()


def training_flops(net: nn.Module, leads: int, samples: int, n_metadata: int = 0) -> int:
    """FLOPs of one exam's training step: forward and backward (of a copy of ``net``, in
    training mode; the optimiser's element-wise update is not counted)."""
    net = copy.deepcopy(net).train()
    inputs = _exam(net, leads, samples, n_metadata)
    with FlopCounterMode(display=False) as counter:
        net(*inputs).sum().backward()
    return counter.get_total_flops()
