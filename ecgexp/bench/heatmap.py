"""Benchmark 4c, heatmaps: batched attribution maps (``ecgexp.interpret.attribution``) against
a per-exam loop.

The benchmarks' network (``build_network`` of bench.yaml's ``train_overrides``: by default
``model=resnet1d``, 12 leads, 4096 samples, 5 blocks; random weights, seed 0, eval mode) and
random exams of its shape (seed 0), on ``device``. For Grad-CAM of ``resblock1d_2.conv1`` and for
saliency, it times the maps of ``heatmap.exams`` exams computed in chunks of each of
``heatmap.batch_sizes`` (one batched forward and backward pass per chunk) and the maps computed
one exam at a time (batch 1, the published heatmap loop) on the first ``heatmap.loop_exams``
exams. Each configuration is warmed up on one chunk, then timed once (on a GPU in full float32:
TF32 off).

The per-exam maps must equal the batched ones, and the chunk sizes each other, to rounding
(``compare``): the kernels of another batch size add in another order. Per exam the normwise
relative difference ``||a - b|| / ||b||`` is measured; two checks per comparison:

- half the exams at least within float32 rounding (the lower median exam;
  ``checks.rounding_tolerance`` of the network's longest sum: 5440 terms for the default
  network, 4.4e-5); seen: about 5e-7;
- every exam within the share of the map that one switched ReLU can carry,
  ``LAMBDA / sqrt(N)`` with ``N`` the fewest units of any ReLU layer per exam
  (``switch_allowance``): a ReLU whose input lies within rounding of zero can fall on the other
  side at another batch size, which switches the gradient through that unit on or off. That
  unit's path is one of the ``N`` of its layer that make up the map (their local supports add
  up nearly orthogonally), so it moves the map by about ``1 / sqrt(N)`` of its norm. Seen: one
  or two exams in 16 moved by 2e-4 to 8e-4 with the default network (AMD EPYC, AVX2 kernels;
  allowance 5 / sqrt(320 * 16) = 0.07), 2.3e-2 with the tests' small network (0.16). What the
  check is there to catch (exams mixed up across a batch, batch statistics shared between
  exams) moves maps by the order of their own size (``sqrt(2)`` for two exams swapped).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ecgexp.bench.checks import (
    LAMBDA,
    Check,
    longest_reduction,
    max_abs_difference,
    relative_difference,
    rounding_tolerance,
    within_rounding,
)
from ecgexp.bench.common import Context
from ecgexp.bench.report import Figure, Result
from ecgexp.interpret.attribution import attribute
from ecgexp.tasks.build import build_network, build_objective

LAYER = "resblock1d_2.conv1"
METHODS = ("gradcam", "saliency")


def fewest_relu_units(model: torch.nn.Module, exam: torch.Tensor) -> int:
    """The fewest outputs of any ``nn.ReLU`` of ``model`` for one ``exam`` ``(1, leads,
    samples)`` (one pass without gradients)."""
    units = []
    hooks = [module.register_forward_hook(lambda module, args, output: units.append(
        output[0].numel())) for module in model.modules() if isinstance(module, torch.nn.ReLU)]
    try:
        with torch.no_grad():
            model(exam)
    finally:
        for hook in hooks:
            hook.remove()
    return min(units, default=1)


def switch_allowance(units: int) -> float:
    """The relative difference one switched ReLU can make to a map, ``LAMBDA / sqrt(units)``
    (module docstring)."""
    return LAMBDA / math.sqrt(units)


def compare(maps: np.ndarray, reference: np.ndarray, what: str, n: int,
            units: int) -> tuple[list[Check], dict]:
    """The two checks of ``maps`` against ``reference`` (``(exams, leads, samples)``; the
    network's longest sum has ``n`` terms, its smallest ReLU layer ``units`` outputs) and the
    per-exam differences behind them."""
    relative = np.array([relative_difference(a, b) for a, b in zip(maps, reference)])
    max_abs = max_abs_difference(maps, reference)
    half = float(np.sort(relative)[(len(relative) - 1) // 2])  # the lower median
    checks = [within_rounding(f"{what}: half the exams", half, n, max_abs),
              Check(f"{what}: every exam", float(relative.max()), switch_allowance(units),
                    "relative difference",
                    f"one switched ReLU of {units}, {LAMBDA:g} / sqrt({units})", max_abs)]
    return checks, {"relative_difference_per_exam": relative.tolist(),
                    "exams_beyond_rounding": int((relative > rounding_tolerance(n)).sum())}


def timed(method: str, model: torch.nn.Module, tracings: np.ndarray, batch_size: int):
    """Exams/s and maps of ``attribute`` in chunks of ``batch_size``, after a one-chunk
    warm-up."""
    attribute(method, model, tracings[:batch_size], 0, layer=LAYER, batch_size=batch_size)
    started = time.perf_counter()
    maps = attribute(method, model, tracings, 0, layer=LAYER, batch_size=batch_size)
    return len(tracings) / (time.perf_counter() - started), maps


def benchmark(method: str, model: torch.nn.Module, tracings: np.ndarray, batch_sizes,
               n_loop: int, n: int, units: int) -> tuple[dict, list[Check]]:
    """Exams/s of ``method`` batched (each batch size) and per exam; the checks that they give
    the same maps, and the differences behind them."""
    rates, maps, differences, checks = {}, {}, {}, []
    for batch_size in batch_sizes:
        rates[f"batched_{batch_size}"], maps[batch_size] = timed(method, model, tracings,
                                                                 batch_size)
    first, *others = batch_sizes
    rates["per_exam"], loop_maps = timed(method, model, tracings[:n_loop], 1)
    pairs = [(maps[size], maps[first], f"{size}_vs_{first}") for size in others]
    for compared, reference, what in [*pairs, (loop_maps, maps[first][:n_loop],
                                               f"loop_vs_{first}")]:
        found, differences[what] = compare(compared, reference, f"{method} {what}", n, units)
        checks += found
    return {"exams_per_s": rates, "differences": differences}, checks


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.heatmap
    device = "cuda" if cfg.device == "cuda" else "cpu"
    # On a GPU, TF32 convolutions (cuDNN's default) round to ~1e-3, per batch size differently.
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    train_cfg = context.train_config()
    try:
        torch.manual_seed(0)
        model = build_network(train_cfg, build_objective(train_cfg.task)).eval().to(device)
        tracings = np.random.default_rng(0).normal(
            size=(settings.exams, train_cfg.model.in_leads, train_cfg.model.n_samples)
        ).astype(np.float32)
        exam = torch.as_tensor(tracings[:1], device=device)
        n = longest_reduction(model, (exam,), weight_gradients=False)
        units = fewest_relu_units(model, exam)
        outcomes = {method: benchmark(method, model, tracings, list(settings.batch_sizes),
                                      settings.loop_exams, n, units) for method in METHODS}
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    results = {method: outcome for method, (outcome, _) in outcomes.items()}
    figures = [Figure(f"exams/s, {method} batched ({batch_size}) vs per exam",
                      results[method]["exams_per_s"][f"batched_{batch_size}"],
                      results[method]["exams_per_s"]["per_exam"], "exams/s", "batch 1 loop",
                      settings.target)
               for method in METHODS for batch_size in settings.batch_sizes]
    return Result(
        figures=figures,
        details={"model": f"{train_cfg.model._target_}, random weights (seed 0), eval mode",
                 "model_config": OmegaConf.to_container(train_cfg.model, resolve=True),
                 "device": device, "exams": settings.exams,
                 "per_exam_loop_exams": settings.loop_exams, "gradcam_layer": LAYER,
                 "longest_reduction": n, "fewest_relu_units": units, **results},
        notes=["on a CPU batching gains little per exam (the convolutions are compute-bound "
               "either way) and batches of 64 can be slower (their activations fall out of the "
               "caches); it pays on a GPU (9-12x on an H100, "
               "benchmarks/results/heatmap-cuda-2026-11-25-vm.json)"],
        checks=[check for _, checks in outcomes.values() for check in checks])
