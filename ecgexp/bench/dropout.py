"""Benchmark 1b, dropout: CPU training steps/s of the network with ecgexp's ``Dropout`` (a
uniform draw compared with ``p``: ``ecgexp/models/resnet1d.py``) against the same network with
torch's ``nn.Dropout`` (the Bernoulli kernel of ``F.dropout``), same weights, batch and
optimiser, ``threads`` as the suite sets them.

Checks that both drop the same share: on ``check_elements`` ones, the kept fraction of each
within 5 binomial standard deviations of ``1 - p``, and every kept element scaled by
``1 / (1 - p)`` (to float32 rounding).
"""

from __future__ import annotations

import copy
import math
import time

import torch
from omegaconf import DictConfig
from torch import nn

from ecgexp.bench.checks import Check, close
from ecgexp.bench.common import Context, initial_weights, interleaved, network
from ecgexp.bench.report import Figure, Result
from ecgexp.models.resnet1d import Dropout


def with_torch_dropout(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose ``Dropout`` modules are torch's ``nn.Dropout`` of the same p."""
    twin = copy.deepcopy(net)
    for name, module in list(twin.named_modules()):
        if isinstance(module, Dropout):
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, child, nn.Dropout(module.p))
    return twin


def share_checks(p: float, n: int) -> list[Check]:
    """Kept fraction and scale of ecgexp's and torch's dropout on ``n`` ones."""
    checks = []
    ones = torch.ones(n)
    for name, layer in (("ecgexp Dropout", Dropout(p)), ("torch nn.Dropout", nn.Dropout(p))):
        out = layer.train()(ones)
        kept = out[out != 0]
        checks.append(Check(f"{name}: kept fraction vs 1 - p (p={p:g}, {n} elements)",
                            abs(len(kept) / n - (1 - p)), 5 * math.sqrt(p * (1 - p) / n),
                            "absolute difference", "5 binomial standard deviations"))
        checks.append(close(f"{name}: kept values vs 1 / (1 - p)", kept,
                            torch.full_like(kept, 1 / (1 - p)), 1))
    return checks


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.dropout
    train_cfg = context.train_config(f"model={settings.model}")
    ours = network(train_cfg, initial_weights(train_cfg)).train()
    theirs = with_torch_dropout(ours)
    p = next(m.p for m in ours.modules() if isinstance(m, Dropout))
    generator = torch.Generator().manual_seed(cfg.seed)
    tracings = torch.randn(settings.batch_size, ours.in_leads, ours.n_samples,
                           generator=generator)

    def rate(net: nn.Module) -> float:
        optimiser = torch.optim.Adam(net.parameters())

        def step() -> None:
            optimiser.zero_grad()
            net(tracings).square().mean().backward()
            optimiser.step()

        for _ in range(settings.warmup):
            step()
        started = time.perf_counter()
        for _ in range(settings.steps):
            step()
        return settings.steps / (time.perf_counter() - started)

    rates = interleaved({"ecgexp": lambda: rate(ours), "torch": lambda: rate(theirs)},
                        settings.rounds)
    return Result(
        figures=[Figure(f"training steps/s, {settings.model}, ecgexp Dropout vs nn.Dropout",
                        max(rates["ecgexp"]), max(rates["torch"]), "steps/s",
                        "torch nn.Dropout", settings.target)],
        details={"model": settings.model, "p": p, "batch_size": settings.batch_size,
                 "threads": torch.get_num_threads(), "steps_per_s": rates},
        checks=share_checks(p, settings.check_elements))
