"""Speed of batched attribution maps (``ecgexp.interpret.attribution``) against a per-exam loop.

    .venv/bin/python benchmarks/heatmap_speed.py [--exams 256] [--loop-exams 32] [--device cpu]

The default ``ResNet1d()`` (12 leads, 4096 samples, 5 blocks; random weights, seed 0, eval
mode) and random exams (seed 0). For Grad-CAM of ``resblock1d_2.conv1`` and for saliency, it
times the maps of all exams computed in chunks of 32 and of 64 exams (one batched forward and
backward pass per chunk) and the maps computed one exam at a time (batch 1, the published
heatmap loop). To keep the run short the per-exam loop runs on the first ``--loop-exams``
exams only and its time is scaled to all exams. Its maps must equal the batched ones: max abs
difference < 1e-5 for at least 15 exams in 16 and < 1e-3 for all (in float32 a ReLU
pre-activation within rounding error of zero can flip sign between batch sizes and change the
gradients behind it; the figures say how many exams differ by more than 1e-5). The chunks of
32 and of 64 are compared the same way. Each configuration is warmed up on one chunk, then
timed once (on a GPU in full float32: TF32 off). The script prints exams/s and the ratio
batched / per-exam and writes them as JSON to ``benchmarks/results/heatmap-<date>-<host>.json``
(``heatmap-cuda-...`` for ``--device cuda``). Uses ``torch.set_num_threads(cpu_count)``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from report import write_results

from ecgexp.interpret.attribution import attribute
from ecgexp.models.resnet1d import ResNet1d

LAYER = "resblock1d_2.conv1"
BATCH_SIZES = (32, 64)
TOLERANCE = 1e-5        # per exam, for at least 15 exams in 16
FLIP_TOLERANCE = 1e-3   # for every exam (a ReLU mask flip near zero)


def compare(maps: np.ndarray, reference: np.ndarray, what: str) -> dict:
    """Largest per-exam max abs difference and number of exams above TOLERANCE; checked."""
    per_exam = np.abs(maps - reference).reshape(len(maps), -1).max(axis=1)
    above = int((per_exam >= TOLERANCE).sum())
    assert above <= len(maps) // 16 and per_exam.max() < FLIP_TOLERANCE, (what, per_exam)
    return {f"max_abs_difference_{what}": float(per_exam.max()),
            f"exams_above_1e-5_{what}": above}


def timed(method: str, model: torch.nn.Module, tracings: np.ndarray, batch_size: int):
    """Seconds and maps of ``attribute`` in chunks of ``batch_size``, after a one-chunk warm-up."""
    attribute(method, model, tracings[:batch_size], 0, layer=LAYER, batch_size=batch_size)
    started = time.perf_counter()
    maps = attribute(method, model, tracings, 0, layer=LAYER, batch_size=batch_size)
    return time.perf_counter() - started, maps


def benchmark(method: str, model: torch.nn.Module, tracings: np.ndarray,
              n_loop: int) -> dict:
    """Exams/s of ``method`` batched (each of BATCH_SIZES) and per exam, checked equal."""
    n = len(tracings)
    results, maps = {}, {}
    for batch_size in BATCH_SIZES:
        seconds, maps[batch_size] = timed(method, model, tracings, batch_size)
        results[f"batched_{batch_size}_s"] = seconds
        results[f"batched_{batch_size}_exams_per_s"] = n / seconds
    first, *others = BATCH_SIZES
    for batch_size in others:
        results.update(compare(maps[batch_size], maps[first], f"{batch_size}_vs_{first}"))
    loop_seconds, loop_maps = timed(method, model, tracings[:n_loop], 1)
    results["per_exam_loop_s_measured"] = loop_seconds
    results["per_exam_loop_s_scaled"] = loop_seconds * n / n_loop
    results["per_exam_exams_per_s"] = n_loop / loop_seconds
    results.update(compare(loop_maps, maps[first][:n_loop], f"loop_vs_{first}"))
    for batch_size in BATCH_SIZES:
        results[f"ratio_batched_{batch_size}_to_loop"] = (
            results[f"batched_{batch_size}_exams_per_s"] / results["per_exam_exams_per_s"])
    return results


def main(n_exams: int = 256, n_loop: int = 32, device: str = "cpu") -> dict:
    torch.set_num_threads(os.cpu_count())
    # On a GPU, TF32 convolutions (cuDNN's default) round to ~1e-3, per batch size differently.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = ResNet1d().eval().to(device)
    tracings = np.random.default_rng(0).normal(size=(n_exams, 12, 4096)).astype(np.float32)
    results = {"model": "ResNet1d() default, random weights (seed 0), eval mode",
               "exams": n_exams, "per_exam_loop_exams": n_loop,
               "per_exam_loop": f"timed on {n_loop} exams, scaled to {n_exams}",
               "gradcam_layer": LAYER, "device": device,
               "device_name": (torch.cuda.get_device_name() if device.startswith("cuda")
                               else platform.processor() or platform.machine()),
               "torch": torch.__version__, "python": platform.python_version(),
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    for method in ("gradcam", "saliency"):
        results[method] = benchmark(method, model, tracings, n_loop)
    suffix = "" if device == "cpu" else f"-{device.replace(':', '')}"
    write_results(f"heatmap{suffix}", results)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=256)
    parser.add_argument("--loop-exams", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    arguments = parser.parse_args()
    for name, value in main(arguments.exams, arguments.loop_exams, arguments.device).items():
        if isinstance(value, dict):
            print(name)
            for key, figure in value.items():
                print(f"  {key:36s} {figure:.4g}")
        else:
            print(f"{name:38s} {value}")
