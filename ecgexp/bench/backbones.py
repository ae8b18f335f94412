"""Benchmark 1c, backbones: benchmark 1 (``training.py``) for every model config, samples/s of
ecgexp's training loop against the plain PyTorch loop on the same network, with each
network's FLOPs per exam and the GFLOP/s it achieves.

For each name of ``backbones.models`` (``model=<name>``, ``finetune=full``) and of
``backbones.linear_probe`` (the same with ``finetune=linear_probe``: the head alone trains on
the frozen backbone, kept in eval mode, and the plain loop trains the same parameters), the
training config of benchmark 1 with that model and the ``overrides`` goes through
``training.compare_loops``: the one-step equality check (batch, loss, gradients of the trained
parameters, weights after the optimiser step), then ``rounds`` rounds of ``warmup`` + timed
steps in which the two loops take turns, a plain step before each of ecgexp's
(``common.InterleavedClock``; batches are read in the trainer's process, ``overrides``), so
that the load of other processes on a shared machine, which shifts by tens of percent from one
second to the next, falls on both alike; each side's figure is the batch size over its median
step time, against the target ratio.

Each backbone is sized first (``sizing``), from plain steps on random exams: the batch is
``batch_size`` doubled until a step takes ``min_step_s`` (at most ``max_batch_size``), so that
the few milliseconds a step of any training loop spends beside the network (reading the batch,
Lightning's hooks) weigh on a small network as little as on a big one; the timed steps per
round are those that fill ``seconds`` (at least ``steps``, at most ``max_steps``), so that the
median of a fast network's steps rests on many of them and a slow network still takes one.

FLOPs per exam are counted by ``FlopCounterMode`` (2 per multiply-accumulate of the matrix
products and convolutions; element-wise work not counted: ``flops.py``) on the plain side's
checked step, in the network's training state: the forward pass, and the forward plus the
backward pass (a training exam), divided by the exams of the step. ``FLOP_FORMULAS`` adds what
torch 2.13's counter misses or miscounts on a CPU: the fused LSTM layer (``lstm``,
``lstm_bidir``: otherwise nothing), the CPU kernel of ``scaled_dot_product_attention``
(``ecg_fm``; ``hubert_ecg`` in eval mode) and grouped convolutions' weight gradients (counted
``groups`` times over: ``ecgfounder``). Training mode, because ``nn.TransformerEncoderLayer`` in
eval mode without gradients runs a fused kernel that no formula sees (``transformer1d``; also
the frozen encoder of a ``transformer1d`` linear probe, whose attention goes uncounted).
Training mode has one cost: ``hubert_ecg`` skips each transformer layer with probability
``layerdrop`` (0.1) in training, so its count is that of the seeded step's draw. The achieved
GFLOP/s is a training exam's FLOPs times samples/s.

A backbone that raises (a missing optional package, too little memory) is recorded as a failed
check naming it and its error; the others still run.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Callable

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import (
    FlopCounterMode,
    conv_flop_count,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from ecgexp.bench.checks import Check, none_of
from ecgexp.bench.common import Context, PlainLoop, datamodule, initial_weights
from ecgexp.bench.report import Figure, Result
from ecgexp.bench.training import compare_loops, training_config


def rnn_layer_flops(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None,
                    **kwargs) -> int:
    """One layer and direction of a fused recurrent layer over a ``(steps, batch, inputs)``
    or ``(batch, steps, inputs)`` sequence: per step and exam, the input ``x @ W_ih^T`` and the
    hidden state ``h @ W_hh^T`` products (``4 hidden`` gates for an LSTM), 2 FLOPs per
    multiply-accumulate."""
    return 2 * input_shape[0] * input_shape[1] * (math.prod(w_ih_shape) + math.prod(w_hh_shape))


def rnn_layer_backward_flops(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None,
                             **kwargs) -> int:
    """Its backward pass: each forward product twice, for the gradient of the weights and for
    that of the inputs and hidden state (the fused kernel computes both)."""
    return 2 * rnn_layer_flops(input_shape, w_ih_shape, w_hh_shape)


def cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None,
                        **kwargs) -> int:
    """``scaled_dot_product_attention``'s CPU kernel: the scores ``Q K^T`` and their weighted
    sum of ``V`` (torch's formula for its other attention kernels)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def cpu_attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args,
                                 out_shape=None, **kwargs) -> int:
    """Its backward pass: the scores computed again, then the gradients of the attention
    weights, ``V``, ``Q`` and ``K`` (torch's formula for its other attention kernels)."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def convolution_backward_flops(grad_out_shape, x_shape, w_shape, bias, stride, padding,
                               dilation, transposed, output_padding, groups, output_mask,
                               out_shape=None, **kwargs) -> int:
    """A convolution's backward pass: the input gradient (a transposed convolution of the
    output gradient with the weights) and the weight gradient, as many products as the forward
    pass (each weight meets each output position of each exam once; torch 2.13's formula counts
    a grouped convolution's as if ungrouped, ``groups`` times too many: pytorch/pytorch#183405
    fixes it upstream)."""
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        flops += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


# Formulas FlopCounterMode lacks, for fused CPU kernels (the LSTM layer of nn.LSTM;
# scaled_dot_product_attention in ecg_fm, and in hubert_ecg in eval mode), or gets wrong
# (grouped convolutions' weight gradients: ecgfounder, the positional convolutions of ecg_fm
# and hubert_ecg).
FLOP_FORMULAS = {
    torch.ops.aten.mkldnn_rnn_layer: rnn_layer_flops,
    torch.ops.aten.mkldnn_rnn_layer_backward: rnn_layer_backward_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        cpu_attention_backward_flops,
    torch.ops.aten.convolution_backward: convolution_backward_flops,
}


def flop_counter() -> FlopCounterMode:
    """``FlopCounterMode`` with the formulas of ``FLOP_FORMULAS``."""
    return FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)


@dataclasses.dataclass
class Sizing:
    """A backbone's batch and timed steps per round, and the plain step they came from."""

    batch_size: int
    steps: int
    step_s: float


def plain_step_seconds(train_cfg: DictConfig, device: str) -> float:
    """Seconds of a plain training step (``PlainLoop``) of ``loader.batch_size`` random exams
    of the config's shape: the second of two steps (the first allocates)."""
    dm = datamodule(train_cfg)
    train, batch_size = dm.datasets["train"], train_cfg.loader.batch_size
    generator = torch.Generator().manual_seed(train_cfg.seed)
    tracings = torch.randn(2 * batch_size, len(train.lead_index), dm.source.n_samples,
                           generator=generator).to(device)
    targets = torch.zeros(2 * batch_size, train.targets.shape[1], device=device)
    plain = PlainLoop(train_cfg, initial_weights(train_cfg), device)
    return plain.timed(tracings, targets, batch_size, warmup=1, steps=1)[0]


def sizing(config: Callable[[int, int], DictConfig], settings: DictConfig,
           device: str) -> Sizing:
    """The batch (``batch_size`` doubled until a plain step takes ``min_step_s``, at most
    ``max_batch_size``) and the timed steps that fill ``seconds`` per round (within
    ``steps`` .. ``max_steps``); ``config(batch_size, steps)`` is the backbone's training
    config."""
    batch_size = settings.batch_size
    while True:
        step_s = plain_step_seconds(config(batch_size, 2), device)
        if step_s >= settings.min_step_s or 2 * batch_size > settings.max_batch_size:
            break
        batch_size *= 2
    steps = min(settings.max_steps, max(settings.steps, math.ceil(settings.seconds / step_s)))
    return Sizing(batch_size, steps, step_s)


def measure(context: Context, settings: DictConfig, device: str, model: str,
            finetune: str) -> tuple[Figure, list[Check], dict]:
    """One backbone's figure (samples/s, ecgexp vs plain), its checks and details."""
    def config(batch_size: int, steps: int) -> DictConfig:
        return training_config(context, steps, device, f"model={model}", f"finetune={finetune}",
                               f"loader.batch_size={batch_size}", *settings.overrides,
                               exams=settings.exams)

    sized = sizing(config, settings, device)
    timing = OmegaConf.merge(settings, {"steps": sized.steps})
    compared = compare_loops(config(sized.batch_size, settings.warmup + sized.steps), timing,
                             device, "backbones", "backbones.exams", flop_counter,
                             interleave=True)
    best = compared.samples_per_s()
    first = compared.first_step
    forward = first.pop("plain_forward_flops_per_exam")
    step = forward + first.pop("plain_backward_flops_per_exam")
    gflops = {side: step * rate / 1e9 for side, rate in best.items()}
    label = backbone_label(model, finetune)
    figure = Figure(f"{label}: samples/s at a batch of {sized.batch_size}, ecgexp vs plain loop "
                    f"({forward / 1e9:.3g} GFLOP forward, {step / 1e9:.3g} per training exam; "
                    f"{gflops['plain']:.3g} GFLOP/s plain)", best["ecgexp"], best["plain"],
                    "samples/s", "plain PyTorch loop", settings.target)
    checks = [dataclasses.replace(check, name=f"{label}: {check.name}")
              for check in compared.checks]
    details = {"model": model, "finetune": finetune, "batch_size": sized.batch_size,
               "timed_steps": sized.steps, "sizing_step_s": sized.step_s,
               "samples_per_s": best, "samples_per_s_per_round": compared.rates_per_round(),
               "median_step_s": compared.median_step(), "step_s": compared.seconds,
               "forward_gflop_per_exam": forward / 1e9, "training_gflop_per_exam": step / 1e9,
               "achieved_gflop_per_s": gflops, "first_step": first}
    return figure, checks, details


def backbone_label(model: str, finetune: str) -> str:
    return model if finetune == "full" else f"{model} ({finetune})"


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.backbones
    device = "cuda" if cfg.device == "cuda" else "cpu"
    runs = ([(model, "full") for model in settings.models]
            + [(model, "linear_probe") for model in settings.linear_probe])
    result = Result(details={"device": device, **{key: settings[key] for key in (
        "batch_size", "max_batch_size", "min_step_s", "warmup", "steps", "max_steps", "seconds",
        "rounds", "check_exams")}, "overrides": list(settings.overrides), "backbones": {}})
    for model, finetune in runs:
        label = backbone_label(model, finetune)
        started = time.perf_counter()
        try:
            figure, checks, details = measure(context, settings, device, model, finetune)
        except Exception as error:  # recorded; the next backbone still runs
            traceback.print_exc()
            reason = f"{type(error).__name__}: {' '.join(str(error).split())}"  # one line
            result.checks.append(none_of(f"{label}: ran ({reason})", 1, "errors raised"))
            result.details["backbones"][label] = {"model": model, "finetune": finetune,
                                                  "error": reason}
        else:
            result.figures.append(figure)
            result.checks += checks
            result.details["backbones"][label] = details
        result.details["backbones"][label]["wall_s"] = time.perf_counter() - started
    result.notes.append("FLOPs per exam: FlopCounterMode on the plain side's checked step in "
                        "training mode (forward; forward + backward per training exam); "
                        "GFLOP/s = training FLOPs x samples/s")
    return result
