"""Benchmark 4c, heatmaps: batched attribution maps (``ecgexp.interpret.attribution``) against
a per-exam loop.

The benchmarks' network (``build_network`` of bench.yaml's ``train_overrides``: by default
``model=resnet1d``, 12 leads, 4096 samples, 5 blocks; random weights, seed 0, eval mode) and
random exams of its shape (seed 0), on ``device``. For Grad-CAM of ``resblock1d_2.conv1`` and for
saliency, it times the maps of ``heatmap.exams`` exams computed in chunks of each of
``heatmap.batch_sizes`` (one batched forward and backward pass per chunk) and the maps computed
one exam at a time (batch 1, the published heatmap loop) on the first ``heatmap.loop_exams``
exams. The per-exam maps must equal the batched ones: max abs difference < 1e-5 for at least
15 exams in 16 and < 1e-3 for all (in float32 a ReLU pre-activation within rounding error of
zero can flip sign between batch sizes and change the gradients behind it); the chunk sizes are
compared the same way. Each configuration is warmed up on one chunk, then timed once (on a GPU
in full float32: TF32 off).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ecgexp.bench.common import Context
from ecgexp.bench.report import Figure, Result
from ecgexp.interpret.attribution import attribute
from ecgexp.tasks.build import build_network, build_objective

LAYER = "resblock1d_2.conv1"
METHODS = ("gradcam", "saliency")
TOLERANCE = 1e-5        # per exam, for at least 15 exams in 16
FLIP_TOLERANCE = 1e-3   # for every exam (a ReLU mask flip near zero)


def compare(maps: np.ndarray, reference: np.ndarray, what: str) -> dict:
    """Largest per-exam max abs difference and number of exams above TOLERANCE; checked."""
    per_exam = np.abs(maps - reference).reshape(len(maps), -1).max(axis=1)
    above = int((per_exam >= TOLERANCE).sum())
    if above > len(maps) // 16 or per_exam.max() >= FLIP_TOLERANCE:
        raise AssertionError(f"bench heatmap: {what} maps differ: {per_exam}")
    return {f"max_abs_difference_{what}": float(per_exam.max()),
            f"exams_above_1e-5_{what}": above}


def timed(method: str, model: torch.nn.Module, tracings: np.ndarray, batch_size: int):
    """Exams/s and maps of ``attribute`` in chunks of ``batch_size``, after a one-chunk
    warm-up."""
    attribute(method, model, tracings[:batch_size], 0, layer=LAYER, batch_size=batch_size)
    started = time.perf_counter()
    maps = attribute(method, model, tracings, 0, layer=LAYER, batch_size=batch_size)
    return len(tracings) / (time.perf_counter() - started), maps


def benchmark(method: str, model: torch.nn.Module, tracings: np.ndarray, batch_sizes,
              n_loop: int) -> dict:
    """Exams/s of ``method`` batched (each batch size) and per exam, checked equal."""
    rates, maps, checks = {}, {}, {}
    for batch_size in batch_sizes:
        rates[f"batched_{batch_size}"], maps[batch_size] = timed(method, model, tracings,
                                                                 batch_size)
    first, *others = batch_sizes
    for batch_size in others:
        checks.update(compare(maps[batch_size], maps[first], f"{batch_size}_vs_{first}"))
    rates["per_exam"], loop_maps = timed(method, model, tracings[:n_loop], 1)
    checks.update(compare(loop_maps, maps[first][:n_loop], f"loop_vs_{first}"))
    return {"exams_per_s": rates, **checks}


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
        results = {method: benchmark(method, model, tracings, list(settings.batch_sizes),
                                     settings.loop_exams) for method in METHODS}
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
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
                 **results},
        notes=["on a CPU batching gains little per exam (the convolutions are compute-bound "
               "either way) and batches of 64 can be slower (their activations fall out of the "
               "caches); it pays on a GPU (9-12x on an H100, "
               "benchmarks/results/heatmap-cuda-2026-11-25-vm.json)"])
