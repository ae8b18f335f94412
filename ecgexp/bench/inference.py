"""Benchmark 3, inference: exams/s of ecgexp's prediction path (the one inference loop,
:func:`ecgexp.inference.table.split_predictions`, over the DataModule's test loader, as
``ecgexp`` predicts a run's splits) against a plain ``torch.no_grad`` loop over the same exams in
memory, both at the training batch size; then, on the plain loop, ``torch.inference_mode``
against ``no_grad``, each evaluation batch size of ``inference.eval_batch_sizes`` (what
``loader.eval_batch_size`` would give) against the training batch size and, when
``inference.compile`` is on, ``torch.compile`` against eager.

``inference.exams`` exams of the test split are predicted per pass (every batch size must
divide it). ecgexp's pass is timed from the end of its first batch to the end of its last
(the steady state: a call also costs a fixed set-up, its loader's first batch, reported
in the details); plain passes are timed whole. The ways are run ``repeats`` times, alternating; the
best pass counts. Every way's scores must equal the plain ``no_grad`` loop's to float32 rounding
(same weights, eval mode; other batch sizes and compiled kernels add in another order):
normwise over all scores, within ``checks.rounding_tolerance`` of the network's longest sum.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ecgexp.bench.checks import close, longest_reduction
from ecgexp.bench.common import (
    Context,
    datamodule,
    ecg_module,
    initial_weights,
    network,
    raw_tracings,
)
from ecgexp.bench.report import Figure, Result
from ecgexp.inference.model import TrainedModel
from ecgexp.inference.table import split_predictions


def clocked(batches: Iterator, ends: list[float], limit: int) -> Iterator:
    """The first ``limit`` of ``batches``; ``ends`` gets the time each one is read (the one
    before it done) and the time the loop asks past the last (the last one done)."""
    for batch in itertools.islice(batches, limit):
        ends.append(time.perf_counter())
        yield batch
    ends.append(time.perf_counter())


def ecgexp_predictor(train_cfg: DictConfig, net_state: dict, exams: int, device: str):
    """A function predicting ``exams`` test exams the ecgexp way; returns (steady-state
    exams/s, scores, seconds of the whole call)."""
    dm = datamodule(train_cfg)
    module = ecg_module(train_cfg, net_state, dm.training_targets())
    card = {"config": OmegaConf.to_container(train_cfg, resolve=True), "thresholds": {}}
    model = TrainedModel(module.net, module.objective, card, Path("<bench: initial weights>"))
    loader = dm.loader("test")  # one loader: its workers persist from pass to pass
    batch_size = dm.eval_batch_size

    def predict() -> tuple[float, np.ndarray, float]:
        ends: list[float] = []
        started = time.perf_counter()
        table = split_predictions(model, clocked(iter(loader), ends, exams // batch_size),
                                  exams, device=device, progress=False)
        whole = time.perf_counter() - started
        rate = (exams - batch_size) / (ends[-1] - ends[1])
        return rate, table[module.objective.prediction_columns].to_numpy(), whole

    return predict


def plain_predictor(net: torch.nn.Module, tracings: torch.Tensor, batch_size: int,
                    context_manager, device: str):
    """A function running the plain loop over ``tracings``; returns (exams/s, scores, s)."""

    def predict() -> tuple[float, np.ndarray, float]:
        started = time.perf_counter()
        with context_manager():
            outputs = torch.cat([torch.sigmoid(net(tracings[start:start + batch_size]))
                                 for start in range(0, len(tracings), batch_size)])
        if device == "cuda":
            torch.cuda.synchronize()
        whole = time.perf_counter() - started
        return len(tracings) / whole, outputs.cpu().numpy(), whole

    return predict


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.inference
    device = "cuda" if cfg.device == "cuda" else "cpu"
    train_cfg = context.train_config(
        f"loader.eval_batch_size={context.train_config().loader.batch_size}",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}")
    batch = train_cfg.loader.batch_size
    eval_sizes = [size for size in settings.eval_batch_sizes if size != batch]
    if any(settings.exams % size for size in [batch, *eval_sizes]) or settings.exams <= batch:
        raise ValueError(f"bench inference.exams: {settings.exams} must be a multiple of the "
                         f"batch sizes {[batch, *eval_sizes]} and exceed {batch}")
    net_state = initial_weights(train_cfg)
    dm = datamodule(train_cfg)
    if len(dm.datasets["test"]) < settings.exams:
        raise ValueError(f"bench inference.exams: {settings.exams} exceeds the "
                         f"{len(dm.datasets['test'])} test exams; raise exams")
    tracings = torch.from_numpy(raw_tracings(dm, "test", np.arange(settings.exams)))
    tracings = tracings.to(device)
    net = network(train_cfg, net_state).to(device).eval()

    ways = {"ecgexp_predict": ecgexp_predictor(train_cfg, net_state, settings.exams, device),
            "no_grad": plain_predictor(net, tracings, batch, torch.no_grad, device),
            "inference_mode": plain_predictor(net, tracings, batch, torch.inference_mode,
                                              device)}
    for size in eval_sizes:
        ways[f"inference_mode_batch_{size}"] = plain_predictor(
            net, tracings, size, torch.inference_mode, device)
    notes = []
    if settings.compile:
        compiled = plain_predictor(torch.compile(net), tracings, batch, torch.inference_mode,
                                   device)
        try:
            compiled()  # compiles
            ways["compiled"] = compiled
        except Exception as error:  # e.g. no C++ compiler for inductor on this machine
            notes.append(f"torch.compile failed, not measured: {type(error).__name__}: "
                         f"{str(error).splitlines()[0][:200]}")
    else:
        notes.append("torch.compile not measured (inference.compile=false)")
    passes: dict[str, list] = {name: [] for name in ways}
    for _ in range(settings.repeats):
        for name, predict in ways.items():
            passes[name].append(predict())
    n = longest_reduction(net, (tracings[:1],), weight_gradients=False)
    checks = [close(f"scores: {name} vs no_grad", runs[0][1], passes["no_grad"][0][1], n)
              for name, runs in passes.items() if name != "no_grad"]
    rates = {name: [run[0] for run in runs] for name, runs in passes.items()}
    best = {name: max(values) for name, values in rates.items()}
    figures = [
        Figure(f"exams/s, ecgexp predict vs plain no_grad (batch {batch})",
               best["ecgexp_predict"], best["no_grad"], "exams/s", "plain no_grad loop",
               settings.target_overhead),
        Figure(f"exams/s, inference_mode vs no_grad (plain, batch {batch})",
               best["inference_mode"], best["no_grad"], "exams/s", "no_grad",
               settings.target_inference_mode)]
    figures += [Figure(f"exams/s, eval batch {size} vs {batch} (plain inference_mode)",
                       best[f"inference_mode_batch_{size}"], best["inference_mode"], "exams/s",
                       f"batch {batch}", settings.target_eval_batch) for size in eval_sizes]
    if "compiled" in ways:
        figures.append(Figure(f"exams/s, torch.compile vs eager (batch {batch})",
                              best["compiled"], best["inference_mode"], "exams/s", "eager",
                              settings.target_compile))
    setup = [whole - settings.exams / rate for rate, _, whole in passes["ecgexp_predict"]]
    return Result(figures=figures,
                  details={"device": device, "exams": settings.exams, "batch_size": batch,
                           "repeats": settings.repeats, "exams_per_s": rates,
                           "ecgexp_predict_call_setup_s": setup,
                           "longest_reduction": n,
                           "compiled": "compiled" in ways},
                  notes=[f"ecgexp predict: steady state; a whole call differs from it by "
                         f"{min(setup):+.2f} s (its first batch; noise when near 0)", *notes],
                  checks=checks)
