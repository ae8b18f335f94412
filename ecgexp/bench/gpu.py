"""Benchmark 5, the GPU path; runs only when a CUDA device is present (skipped with the reason
recorded otherwise).

On in-memory batches of ``gpu.batch_size`` exams, training samples/s of the plain loop
(``common.PlainLoop``) with the default network:

- bf16 autocast against float32 (cuDNN's default TF32 convolutions);
- channel and kernel choices under bf16: 192 filters in block 2 (a multiple of 8, as the AF
  study's network) instead of 196, and kernel 16 instead of 17, each against the default;
- ``torch.compile`` against eager under bf16 (when ``gpu.compile``).

Then dataloader starvation: ecgexp's training loop (the real DataModule with its workers,
``trainer.precision=bf16-mixed``) with a clock that synchronises the device at the end of each
step; the time between the end of one step and the start of the next is the time the GPU
waits for data. The figure is the busy fraction, 1 - waiting / total.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig

from ecgexp.bench.common import (
    Context,
    PlainLoop,
    StepClock,
    config_trainer,
    datamodule,
    ecg_module,
    initial_weights,
    raw_tracings,
)
from ecgexp.bench.report import Figure, Result, Skipped
from ecgexp.bench.training import training_config

VARIANTS = {"filters_192": ["model.blocks=[[64,4096],[128,1024],[192,256],[256,64],[320,16]]"],
            "kernel_16": ["model.kernel_size=16"]}


def plain_rate(train_cfg: DictConfig, tracings: torch.Tensor, targets: torch.Tensor,
               batch_size: int, warmup: int, steps: int, **options) -> float:
    loop = PlainLoop(train_cfg, initial_weights(train_cfg), "cuda", **options)
    seconds = loop.timed(tracings, targets, batch_size, warmup, steps)
    return batch_size * steps / sum(seconds)


def busy_fraction(context: Context, settings: DictConfig) -> dict:
    """Share of the steady-state step time the GPU is not waiting for batches."""
    train_cfg = training_config(context, settings.warmup + settings.loader_steps, "cuda",
                                "trainer.precision=bf16-mixed",
                                f"loader.batch_size={settings.batch_size}",
                                exams=settings.exams)
    dm = datamodule(train_cfg)
    needed = (settings.warmup + settings.loader_steps) * settings.batch_size
    if len(dm.datasets["train"]) < needed:
        raise ValueError(f"bench gpu: {needed} training exams needed, the split has "
                         f"{len(dm.datasets['train'])}; raise gpu.exams")
    module = ecg_module(train_cfg, initial_weights(train_cfg), dm.training_targets())
    clock = StepClock(synchronize=True)
    config_trainer(train_cfg, clock).fit(module, datamodule=dm)
    total = float(sum(clock.intervals(settings.warmup)))
    waiting = clock.waiting(settings.warmup)
    return {"busy_fraction": 1 - waiting / total, "waiting_s": waiting, "total_s": total,
            "samples_per_s": settings.batch_size * settings.loader_steps / total}


def plain_rates(context: Context, settings: DictConfig) -> tuple[dict, list[str]]:
    """Training samples/s of the plain loop: fp32, bf16, the variants, compiled."""
    notes: list[str] = []
    batch_size, steps, warmup = settings.batch_size, settings.steps, settings.warmup
    base = training_config(context, warmup + steps, "cuda", exams=settings.exams)
    dm = datamodule(base)
    positions = np.arange((warmup + steps) * batch_size) % len(dm.datasets["train"])
    tracings = torch.from_numpy(raw_tracings(dm, "train", positions)).cuda()
    targets = torch.from_numpy(dm.datasets["train"].targets[positions]).cuda()
    timing = (tracings, targets, batch_size, warmup, steps)
    rates = {"fp32": plain_rate(base, *timing), "bf16": plain_rate(base, *timing, bf16=True)}
    for name, overrides in VARIANTS.items():
        variant = training_config(context, warmup + steps, "cuda", *overrides,
                                  exams=settings.exams)
        rates[name] = plain_rate(variant, *timing, bf16=True)
    if settings.compile:
        try:
            rates["bf16_compiled"] = plain_rate(base, *timing, bf16=True, compile=True)
        except Exception as error:  # a compiler missing for inductor, an unsupported op
            notes.append(f"torch.compile failed, not measured: {type(error).__name__}: "
                         f"{str(error).splitlines()[0][:200]}")
    return rates, notes


def run(cfg: DictConfig, context: Context) -> Result:
    if not torch.cuda.is_available():
        raise Skipped("no CUDA device (torch.cuda.is_available() is false)")
    settings = cfg.gpu
    benchmark_mode, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, True
    try:
        rates, notes = plain_rates(context, settings)
        starvation = busy_fraction(context, settings)
    finally:
        torch.backends.cudnn.benchmark = benchmark_mode
    unit = "samples/s"
    figures = [Figure("training samples/s, bf16-mixed vs fp32", rates["bf16"], rates["fp32"],
                      unit, "fp32", settings.target_bf16)]
    figures += [Figure(f"training samples/s, {name} vs default (bf16)", rates[name],
                       rates["bf16"], unit, "196 filters, kernel 17", settings.target_variant)
                for name in VARIANTS]
    if "bf16_compiled" in rates:
        figures.append(Figure("training samples/s, torch.compile vs eager (bf16)",
                              rates["bf16_compiled"], rates["bf16"], unit, "eager",
                              settings.target_compile))
    figures.append(Figure("GPU busy fraction, ecgexp loop (1 - waiting for data)",
                          starvation["busy_fraction"], 1.0, "", "never waiting",
                          settings.target_busy))
    return Result(figures=figures,
                  details={"device": torch.cuda.get_device_name(),
                           "batch_size": settings.batch_size, "warmup_steps": settings.warmup,
                           "timed_steps": settings.steps,
                           "samples_per_s": rates, "starvation": starvation,
                           "cudnn_benchmark": True,
                           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32},
                  notes=notes)
