"""Benchmark 1, training step overhead: samples/s of ecgexp's training loop against a plain
PyTorch loop over the same network, weights, batch size, data and optimiser.

The ecgexp side is the real thing, wired by ecgexp's own functions: the DataModule of
``build_datamodule`` (shuffled batches, loader workers as configured) on the synthetic
CODE-15% HDF5 files, the ``ECGModule`` of ``build_module`` with the task's objective and the
``pl.Trainer`` of the ``trainer`` config with the ``callbacks`` group, which bench.yaml's
``train_overrides`` leave without progress bar, checkpointing and early stopping (they act at
epoch ends or draw the screen; ``EpochSeed`` stays) and without a logger. The plain side steps
the same network (``build_network``) from the same initial weights with the same optimiser and
``binary_cross_entropy_with_logits`` on the same exams, read beforehand into memory, so it is
the compute alone. Both are timed per step after
``warmup`` steps (the first steps after the loader workers fork are slower while the main
process copies its shared pages), in ``rounds`` alternating rounds; each side's figure is the
batch size over its median step time (robust to bursts of load from other processes on a
shared machine).

Before timing, one step of each side on the same batch is checked (``check_same_step``): the
DataModule's batch equals the exams read with plain h5py, the losses and the gradients agree
to float32 rounding (CPU backward kernels do not add in a fixed order), and each side's
optimiser step from the same gradients leaves the same weights.
The achieved GFLOP/s is the training step's FLOPs per exam (forward and backward, counted by
``FlopCounterMode``: ``flops.py``) times samples/s.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from ecgexp.bench.checks import Check, close, exact, longest_reduction, max_abs_difference
from ecgexp.bench.common import (
    Context,
    InterleavedClock,
    PlainLoop,
    StepClock,
    config_trainer,
    datamodule,
    ecg_module,
    initial_weights,
    network,
    raw_tracings,
)
from ecgexp.bench.flops import forward_flops, training_flops
from ecgexp.bench.report import Figure, Result


def training_config(context: Context, steps: int, device: str, *overrides: str,
                    exams: int | None = None) -> DictConfig:
    """One epoch of ``steps`` training batches, no validation, on ``device``."""
    return context.train_config(
        "trainer.max_epochs=1", f"+trainer.limit_train_batches={steps}",
        "+trainer.limit_val_batches=0", "+trainer.num_sanity_val_steps=0",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", *overrides, exams=exams)


def check_same_step(train_cfg: DictConfig, net_state: dict, training_targets: np.ndarray,
                    batch: dict, raw: np.ndarray,
                    counter: Callable[[], FlopCounterMode] | None = None
                    ) -> tuple[list[Check], dict]:
    """Both sides' first step on the same exams from the same weights; the checks and the
    step's figures (losses, longest reduction, the parameter whose gradients differ most, how
    many weights the ecgexp side trains).

    - ``batch``: the DataModule's tracings equal plain h5py reads (copies and the same scaling:
      exact);
    - ``loss`` and ``gradients`` (the trained parameters as one vector): within float32
      rounding of the step's longest sum (``checks.longest_reduction``: for the default network
      the first convolution's weight gradient, one term per sample of every exam); a CPU
      backward kernel may add in another order on every call;
    - ``weights``: each side's optimiser stepped from the ecgexp side's gradients leaves the same
      parameters (the same element-wise update of the same numbers: exact; a parameter trained
      on one side only moves on that side). Comparing the weights after steps from each side's
      own gradients would not be a rounding check: Adam's first step moves every weight by
      about ``lr * sign(gradient)``, so a gradient within rounding of zero can move its weight
      by up to ``2 lr``.

    ``counter``: a ``FlopCounterMode`` factory; when given, the plain side's forward pass and
    its backward pass are counted, each divided by the exams of the batch
    (``plain_forward_flops_per_exam``, ``plain_backward_flops_per_exam``).
    """
    checks = [exact("batch: DataModule vs h5py reads", batch["tracing"], raw,
                    "the same samples copied and scaled")]
    module = ecg_module(train_cfg, net_state, training_targets)
    module_optimizer = module.configure_optimizers()
    module.on_train_epoch_start()  # the modules a fine-tuning mode freezes, in eval mode
    plain = PlainLoop(train_cfg, net_state)
    losses, flops = [], {}
    for side, step in (("ecgexp", lambda: module.model_step(batch)[0]),
                       ("plain", lambda: F.binary_cross_entropy_with_logits(
                           plain.net(batch["tracing"]), batch["target"]))):
        counting = side == "plain" and counter is not None
        torch.manual_seed(train_cfg.seed)  # the same dropout masks
        with counter() if counting else contextlib.nullcontext() as forward:
            loss = step()
        with counter() if counting else contextlib.nullcontext() as backward:
            loss.backward()
        if counting:
            exams = len(batch["tracing"])
            flops = {"plain_forward_flops_per_exam": forward.get_total_flops() / exams,
                     "plain_backward_flops_per_exam": backward.get_total_flops() / exams}
        losses.append(loss.detach())
    n = longest_reduction(plain.net, (batch["tracing"],), weight_gradients=True)
    plain_parameters = dict(plain.net.named_parameters())
    module_gradients = {name: parameter.grad for name, parameter in module.net.named_parameters()
                        if parameter.grad is not None}
    plain_gradients = {name: _gradient(plain_parameters[name]) for name in module_gradients}
    differences = {name: max_abs_difference(module_gradients[name], plain_gradients[name])
                   for name in module_gradients}
    checks += [close("loss: ecgexp's objective vs BCE (train_overrides need a BCE task)",
                     losses[0], losses[1], n),
               close("gradients", _flat(module_gradients), _flat(plain_gradients), n)]
    for name, gradient in module_gradients.items():
        plain_parameters[name].grad = gradient.clone()
    module_optimizer.step()
    plain.optimizer.step()
    checks.append(exact("weights after each side's optimiser step from the same gradients",
                        _flat(dict(module.net.named_parameters())), _flat(plain_parameters),
                        "the same update of the same numbers"))
    most = max(differences, key=differences.get)
    return checks, {"ecgexp_loss": losses[0].item(), "plain_loss": losses[1].item(),
                    "longest_reduction": n, "gradient_differing_most": most,
                    "its_max_abs_difference": differences[most],
                    "trained_parameters": sum(g.numel() for g in module_gradients.values()),
                    **flops}


def _gradient(parameter: torch.Tensor) -> torch.Tensor:
    """A parameter's gradient; zeros where the step gave it none (not trained on that side)."""
    return parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)


def _flat(tensors: dict) -> torch.Tensor:
    """The tensors of a parameter or gradient dict as one float64 vector, in key order."""
    return torch.cat([tensor.detach().double().flatten() for tensor in tensors.values()])


def ecgexp_round(train_cfg: DictConfig, net_state: dict, warmup: int,
                 clock: StepClock | None = None) -> StepClock:
    """One ``trainer.fit`` of the config's training steps, timed by ``clock`` (a new
    ``StepClock`` if none), which it returns."""
    dm = datamodule(train_cfg)
    module = ecg_module(train_cfg, net_state, dm.training_targets())
    clock = clock or StepClock(synchronize=train_cfg.trainer.accelerator == "gpu")
    config_trainer(train_cfg, clock).fit(module, datamodule=dm)
    return clock


@dataclass
class LoopComparison:
    """Both loops on one training config: the one-step checks and the first step's figures,
    then each side's seconds per timed step, per round (``seconds["plain"|"ecgexp"]``)."""

    batch_size: int
    exam_shape: tuple[int, int]  # (leads, samples)
    net_state: dict
    checks: list[Check]
    first_step: dict
    seconds: dict[str, list[list[float]]]

    def rates_per_round(self) -> dict[str, list[float]]:
        return {side: [self.batch_size * len(r) / sum(r) for r in rounds]
                for side, rounds in self.seconds.items()}

    def median_step(self) -> dict[str, float]:
        return {side: float(np.median(np.concatenate(rounds)))
                for side, rounds in self.seconds.items()}

    def samples_per_s(self) -> dict[str, float]:
        """Each side's figure: the batch size over its median step time."""
        return {side: self.batch_size / step for side, step in self.median_step().items()}


def compare_loops(train_cfg: DictConfig, settings: DictConfig, device: str,
                  benchmark: str = "training", exams_key: str = "exams",
                  counter: Callable[[], FlopCounterMode] | None = None,
                  interleave: bool = False) -> LoopComparison:
    """ecgexp's loop and the plain loop on ``train_cfg`` (``training_config``): the one-step
    check on ``settings.check_exams`` exams (``check_same_step``, ``counter`` passed on), then
    ``settings.rounds`` rounds of ``settings.warmup`` + ``settings.steps`` steps of each: one
    side after the other, or with ``interleave`` turn by turn within one ``trainer.fit``
    (``InterleavedClock``: for a config without loader workers); ``ValueError`` naming
    ``exams_key`` (the setting of ``benchmark`` that sizes the synthetic dataset) when the
    training split is too small."""
    batch_size = train_cfg.loader.batch_size
    dm = datamodule(train_cfg)
    n_exams = (settings.warmup + settings.steps) * batch_size
    if len(dm.datasets["train"]) < n_exams:
        raise ValueError(f"bench {benchmark}: {settings.warmup + settings.steps} batches of "
                         f"{batch_size} need {n_exams} training exams, the split has "
                         f"{len(dm.datasets['train'])}; raise {exams_key}")
    net_state = initial_weights(train_cfg)
    positions = np.arange(n_exams)
    tracings = torch.from_numpy(raw_tracings(dm, "train", positions)).to(device)
    targets = torch.from_numpy(dm.datasets["train"].targets[positions]).to(device)
    first = dm.datasets["train"].__getitems__(positions[:settings.check_exams])
    checks, first_step = check_same_step(train_cfg, net_state, dm.training_targets(), first,
                                         tracings[:settings.check_exams].cpu().numpy(),
                                         counter)

    seconds: dict[str, list[list[float]]] = {"plain": [], "ecgexp": []}
    synchronize = device == "cuda"
    for _ in range(settings.rounds):
        plain = PlainLoop(train_cfg, net_state, device)
        if interleave:
            clock = ecgexp_round(train_cfg, net_state, settings.warmup, InterleavedClock(
                plain, tracings, targets, batch_size, synchronize))
            seconds["plain"].append(clock.plain_intervals(settings.warmup))
        else:
            seconds["plain"].append(plain.timed(tracings, targets, batch_size,
                                                settings.warmup, settings.steps))
            clock = ecgexp_round(train_cfg, net_state, settings.warmup)
        seconds["ecgexp"].append(clock.intervals(settings.warmup))
        del plain, clock
        gc.collect()  # the round's trainer, workers and module go before the next round
    return LoopComparison(batch_size, tuple(tracings.shape[1:]), net_state, checks,
                          first_step, seconds)


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.training
    device = "cuda" if cfg.device == "cuda" else "cpu"
    train_cfg = training_config(context, settings.warmup + settings.steps, device)
    compared = compare_loops(train_cfg, settings, device)
    best = compared.samples_per_s()
    context.measured["model_samples_per_s"] = best["plain"]
    net, (leads, samples) = network(train_cfg, compared.net_state), compared.exam_shape
    flops = forward_flops(net, leads, samples)
    step_flops = training_flops(net, leads, samples)
    gflops = {side: step_flops * rate / 1e9 for side, rate in best.items()}
    return Result(
        figures=[Figure("samples/s, ecgexp loop vs plain loop", best["ecgexp"], best["plain"],
                        "samples/s", "plain PyTorch loop", settings.target)],
        details={"device": device, "batch_size": compared.batch_size,
                 "warmup_steps": settings.warmup, "timed_steps": settings.steps,
                 "rounds": settings.rounds,
                 "samples_per_s_per_round": compared.rates_per_round(),
                 "median_step_s": compared.median_step(), "step_s": compared.seconds,
                 "forward_gflop_per_exam": flops / 1e9,
                 "training_gflop_per_exam": step_flops / 1e9,
                 "achieved_gflop_per_s": gflops, "first_step": compared.first_step,
                 "ecgexp_side": "build_datamodule + build_module + the configured pl.Trainer "
                                "(callbacks: default minus progress bar, checkpoint, early "
                                "stopping; no logger)",
                 "plain_side": "same network/weights/optimiser/BCE over in-memory tensors"},
        notes=[f"network {flops / 1e9:.2f} GFLOP/exam forward, {step_flops / 1e9:.1f} per "
               f"training exam (FlopCounterMode); achieved {gflops['plain']:.0f} GFLOP/s (plain), "
               f"{gflops['ecgexp']:.0f} GFLOP/s (ecgexp)"],
        checks=compared.checks)
