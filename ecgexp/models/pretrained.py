"""Pretrained ECG encoders by name (``model=ecg_fm``, ``merl_resnet18``, ``ecgfounder``,
``hubert_ecg``) with the task's head: :class:`PretrainedEncoder`.

Each encoder module (``ecgexp/models/<module>.py``) gives the encoder class, whose state-dict
keys are its published checkpoint's, a ``CONTRACT`` (rate, window, leads, units, filter,
normalisation, how window outputs are aggregated, licence, where the weights are published)
and ``from_published`` (a published checkpoint's state dict -> the encoder's keys).

The network: :class:`ecgexp.models.encoder_input.EncoderInput` brings the dataset's tracings to
the contract (leads, rate, windows, normalisation), the encoder embeds each window, the
embeddings of an exam's windows are aggregated (mean or max), and the task's head maps them to
the outputs. State-dict keys: ``encoder.<published key>`` and the head's.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from types import ModuleType

import torch

from ecgexp.models.encoder_input import EncoderInput
from ecgexp.models.heads import ECGNetwork

# model name -> (module, encoder class)
ENCODERS = {
    "ecg_fm": ("ecgexp.models.ecg_fm", "ECGFM"),
    "hubert_ecg": ("ecgexp.models.hubert_ecg", "HuBERTECG"),
    "merl_resnet18": ("ecgexp.models.merl", "MERLResNet18"),
    "ecgfounder": ("ecgexp.models.ecgfounder", "ECGFounder"),
}
AGGREGATES = ("mean", "max")


def encoder_module(name: str) -> ModuleType:
    if name not in ENCODERS:
        raise ValueError(f"model.encoder: one of {', '.join(ENCODERS)}, got {name!r}")
    return importlib.import_module(ENCODERS[name][0])


class PretrainedEncoder(ECGNetwork):
    """A pretrained encoder (``encoder``, one of :data:`ENCODERS`, built with
    ``encoder_options``) on tracings of ``leads`` at ``sampling_rate`` Hz, ``n_samples`` long.

    ``window_stride_s``: seconds between window starts (None: the window, no overlap);
    ``aggregate``: ``mean`` or ``max`` over an exam's windows (None: the contract's)."""

    def __init__(self, in_leads: int = 12, n_samples: int = 4096, n_outputs: int = 1,
                 head: str = "linear", n_metadata: int = 0, gaussian_hidden: int | None = None,
                 encoder: str = "merl_resnet18", encoder_options: Mapping | None = None,
                 leads: Sequence[str] = ("DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2",
                                         "V3", "V4", "V5", "V6"),
                 sampling_rate: float = 400.0, window_stride_s: float | None = None,
                 aggregate: str | None = None):
        super().__init__(in_leads, n_samples, head, n_metadata, gaussian_hidden)
        if len(leads) != in_leads:
            raise ValueError(f"model.leads: {len(leads)} names for {in_leads} input leads")
        module = encoder_module(encoder)
        contract = dict(module.CONTRACT)
        aggregate = aggregate or contract["aggregate"]
        if aggregate not in AGGREGATES:
            raise ValueError(f"model.aggregate: one of {', '.join(AGGREGATES)}, "
                             f"got {aggregate!r}")
        self.encoder_name, self.aggregate = encoder, aggregate
        self.contract = {**contract, "aggregate": aggregate, "window_stride_s":
                         window_stride_s or contract["window_s"]}
        self.inputs = EncoderInput(encoder, leads, sampling_rate, n_samples, contract["leads"],
                                   contract["sampling_rate"], contract["window_s"],
                                   window_stride_s, contract["normalise"])
        cls = getattr(module, ENCODERS[encoder][1])
        options = dict(encoder_options or {})
        if "in_leads" in inspect.signature(cls).parameters:
            options.setdefault("in_leads", len(contract["leads"]))
        self.encoder = cls(**options)
        self.build_head(self.encoder.n_features, n_outputs, gaussian_hidden)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, leads, samples)`` -> ``(batch, F)``: each window's embedding, aggregated
        over the exam's windows."""
        self.check_input(x)
        embedded = self.encoder(self.inputs(x)).reshape(x.shape[0], self.inputs.n_windows, -1)
        return embedded.mean(dim=1) if self.aggregate == "mean" else embedded.amax(dim=1)

    def published_state(self, state: Mapping) -> dict[str, torch.Tensor]:
        """A published checkpoint's state dict -> this network's ``encoder.`` keys."""
        mapped = encoder_module(self.encoder_name).from_published(state)
        return {f"encoder.{key}": value for key, value in mapped.items()}

    def layer_groups(self) -> list[list[str]]:
        """Parameter-name prefixes of the encoder's layers, from the input to the output."""
        return [[f"encoder.{prefix}" for prefix in group]
                for group in self.encoder.layer_groups()]
