"""What the benchmarks share: the ecgexp training config they compose and ecgexp's own wiring
of it (``build_datamodule``, ``build_network``, ``build_module``, the configured trainer), the
synthetic data, the plain PyTorch training step they compare against, and clocks."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

import ecgexp
from ecgexp.data.build import build_datamodule
from ecgexp.data.datamodule import ExamDataModule
from ecgexp.inference.model import TrainedModel
from ecgexp.models.finetune import FineTuning
from ecgexp.tasks.build import build_module, build_network, build_objective
from ecgexp.tasks.module import ECGModule
from ecgexp.tracking import instantiate_loggers

CONF_DIR = Path(ecgexp.__file__).parent / "conf"


def compose_train(overrides: Sequence[str]) -> DictConfig:
    """``train.yaml`` composed with ``overrides``, inside a running Hydra app (``ecgexp-bench``)
    or outside one (tests, the scaling subprocess)."""
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


class Context:
    """One suite run: the bench config, a scratch folder for data and run folders, and the
    figures one benchmark measures for another (``measured``, e.g. the model's training rate)."""

    def __init__(self, cfg: DictConfig, scratch: Path):
        self.cfg = cfg
        self.scratch = Path(scratch)
        self.measured: dict[str, float] = {}

    def train_config(self, *overrides: str, exams: int | None = None) -> DictConfig:
        """The ecgexp training config of the benchmarks: ``train_overrides`` of bench.yaml on a
        synthetic dataset of ``exams`` (default: the ``exams`` key) in the scratch folder."""
        cfg = compose_train([*self.cfg.train_overrides,
                             f"paths.data_dir={self.scratch / 'data'}",
                             f"dataset.n_exams={exams or self.cfg.exams}",
                             f"seed={self.cfg.seed}", *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(self.scratch / "run")
        return cfg


def datamodule(train_cfg: DictConfig) -> ExamDataModule:
    """The DataModule of a training config (``build_datamodule``), set up (the synthetic data
    is written on first use)."""
    module = build_datamodule(train_cfg)
    module.setup()
    return module


def network(train_cfg: DictConfig, net_state: dict) -> nn.Module:
    """The network of ``train_cfg`` as ecgexp builds it for the task's objective
    (``build_network``), with the weights ``net_state``."""
    net = build_network(train_cfg, build_objective(train_cfg.task), with_weights=False)
    net.load_state_dict(net_state)
    return net


def ecg_module(train_cfg: DictConfig, net_state: dict, training_targets: np.ndarray
               ) -> ECGModule:
    """The LightningModule of ``train_cfg`` (``build_module``, its objective fitted on
    ``training_targets``) with the network weights ``net_state``."""
    objective = build_objective(train_cfg.task)
    objective.fit(training_targets)
    module = build_module(train_cfg, objective, with_weights=False)
    module.net.load_state_dict(net_state)
    return module


def initial_weights(train_cfg: DictConfig) -> dict:
    """The network's initial ``state_dict`` drawn from ``seed``, shared by both sides."""
    pl.seed_everything(train_cfg.seed, verbose=False)
    net = build_network(train_cfg, build_objective(train_cfg.task))
    return copy.deepcopy(net.state_dict())


def config_trainer(train_cfg: DictConfig, *callbacks: pl.Callback, **options) -> pl.Trainer:
    """The ``pl.Trainer`` of ``train_cfg`` as ``ecgexp.train`` builds it (the ``trainer``
    config, the ``logger`` and ``callbacks`` groups), with ``callbacks`` added and ``options``
    passed on; bench.yaml's ``train_overrides`` turn the logger, checkpoints, early stopping,
    progress bar and model summary off."""
    group = [instantiate(entry) for entry in (train_cfg.get("callbacks") or {}).values()
             if entry is not None]
    return instantiate(train_cfg.trainer, logger=instantiate_loggers(train_cfg) or False,
                       callbacks=[*group, *callbacks], **options)


def raw_tracings(dm: ExamDataModule, split: str, positions: np.ndarray) -> np.ndarray:
    """``(n, leads, samples)`` float32 tracings of the exams at ``positions`` of a split, read
    with plain h5py (one read per exam), for the plain loops."""
    dataset = dm.datasets[split]
    files = {}
    out = np.empty((len(positions), len(dataset.lead_index), dm.source.n_samples), np.float32)
    try:
        for k, position in enumerate(positions):
            file_index, row = dataset.locations[position]
            if file_index not in files:
                handle = h5py.File(dm.reader.files[file_index], "r")
                files[file_index] = handle[dm.reader.tracings_datasets[file_index]]
            out[k] = files[file_index][row][:, dataset.lead_index].T
    finally:
        for tracings in files.values():
            tracings.file.close()
    return out * dataset.scale if dataset.scale != 1 else out


class PlainLoop:
    """The plain PyTorch training loop the framework is compared with: the same network,
    weights, optimiser and BCE loss, over in-memory ``(exams, leads, samples)`` tensors.
    It trains the parameters the ``finetune`` config trains, at its learning rates, with the
    modules it freezes in eval mode (``FineTuning``, as ``ECGModule`` does; ``full``: every
    parameter at ``optimizer.lr``). ``bf16`` runs the forward pass under bfloat16 autocast;
    ``compile`` wraps the network in ``torch.compile``."""

    def __init__(self, train_cfg: DictConfig, net_state: dict, device: str = "cpu",
                 bf16: bool = False, compile: bool = False):
        net = network(train_cfg, net_state).to(device).train()
        tuning = FineTuning.from_config(train_cfg.get("finetune"))
        self.optimizer = instantiate(train_cfg.optimizer)(
            params=tuning.parameter_groups(net, train_cfg.optimizer.get("lr")))
        for module in tuning.frozen_modules(net):
            module.eval()
        self.net = torch.compile(net) if compile else net
        self.device, self.bf16 = device, bf16

    def step(self, tracings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad()
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
            outputs = self.net(tracings)
        loss = F.binary_cross_entropy_with_logits(outputs.float(), targets)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def timed(self, tracings: torch.Tensor, targets: torch.Tensor, batch_size: int,
              warmup: int, steps: int) -> list[float]:
        """Seconds of each of ``steps`` steps after ``warmup`` steps, on consecutive batches."""
        seconds = []
        for number in range(warmup + steps):
            batch = slice(number * batch_size, (number + 1) * batch_size)
            started = time.perf_counter()
            self.step(tracings[batch], targets[batch])
            if self.device != "cpu":
                torch.cuda.synchronize()
            if number >= warmup:
                seconds.append(time.perf_counter() - started)
        return seconds


class StepClock(pl.Callback):
    """Times every training step from the end of one to the end of the next, so each interval
    holds everything the loop does per batch (loading, transfer, step, logging, callbacks)."""

    def __init__(self, synchronize: bool = False):
        self.ends: list[float] = []
        self.starts: list[float] = []
        self.synchronize = synchronize

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.synchronize:
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())

    def intervals(self, warmup: int) -> list[float]:
        """Seconds per step after ``warmup`` steps (at least the first step)."""
        return [float(t) for t in np.diff(self.ends[max(warmup, 1) - 1:])]

    def waiting(self, warmup: int) -> float:
        """Seconds between the end of a step and the start of the next (loading the batch and
        moving it to the device), summed over the steps of ``intervals(warmup)``."""
        first = max(warmup, 1)
        return float(sum(start - end for start, end in
                         zip(self.starts[first:], self.ends[first - 1:])))


class InterleavedClock(StepClock):
    """``StepClock`` that steps the plain loop once at the start of each of ecgexp's training
    steps (``on_train_batch_start``, on the next batch of in-memory ``tracings``), timed apart
    and taken out of that ecgexp step's interval: the two loops run turn by turn, within a
    second of each other, so that load from other processes on a shared machine hits both
    alike. Exact where nothing runs in the background of the trainer's process (no loader
    workers, which would prefetch during the plain step)."""

    def __init__(self, plain: PlainLoop, tracings: torch.Tensor, targets: torch.Tensor,
                 batch_size: int, synchronize: bool = False):
        super().__init__(synchronize)
        self.plain, self.tracings, self.targets = plain, tracings, targets
        self.batch_size = batch_size
        self.plain_seconds: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        number = len(self.plain_seconds)
        rows = slice(number * self.batch_size, (number + 1) * self.batch_size)
        started = time.perf_counter()
        self.plain.step(self.tracings[rows], self.targets[rows])
        if self.synchronize:
            torch.cuda.synchronize()
        self.plain_seconds.append(time.perf_counter() - started)
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def intervals(self, warmup: int) -> list[float]:
        """ecgexp's seconds per step after ``warmup`` steps, the plain step in each taken out."""
        first = max(warmup, 1)
        return [interval - plain for interval, plain in
                zip(super().intervals(warmup), self.plain_seconds[first:])]

    def plain_intervals(self, warmup: int) -> list[float]:
        """The plain loop's seconds per step, for the same steps as ``intervals(warmup)``."""
        return self.plain_seconds[max(warmup, 1):]


def interleaved(candidates: dict[str, Callable[[], float]], repeats: int) -> dict[str, list]:
    """Runs each candidate (returning a rate) ``repeats`` times, alternating between them so
    that load from other processes hits all alike; returns every rate per candidate."""
    rates: dict[str, list] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, measure in candidates.items():
            rates[name].append(measure())
    return rates


def trained_model(train_cfg: DictConfig, net_state: dict, contract: dict) -> TrainedModel:
    """The network of ``train_cfg`` with ``net_state`` as a run's checkpoint would give it."""
    objective = build_objective(train_cfg.task)
    net = network(train_cfg, net_state)
    card = {"config": OmegaConf.to_container(train_cfg, resolve=True),
            "input_contract": contract, "thresholds": {}}
    return TrainedModel(net, objective, card, Path("<bench: initial weights>"))
