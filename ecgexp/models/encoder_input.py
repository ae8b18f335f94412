"""A pretrained encoder's input contract, applied inside the network (so that training,
prediction, the API and an exported file all apply it alike): the dataset's tracings
``(batch, leads, samples)`` in mV at the dataset's rate become the encoder's windows
``(batch * windows, encoder leads, window samples)`` at its rate, normalised as it was
pretrained.

Steps, in order:

1. the encoder's leads, picked by name from the dataset's (``preprocessing.leads``);
2. polyphase resampling to the encoder's rate, the very filter and alignment of
   ``scipy.signal.resample_poly`` (a Kaiser-windowed FIR of ``20 * max(up, down) + 1`` taps),
   as a transposed convolution; ``ceil(samples * up / down)`` samples out;
3. windows of ``window_s`` seconds every ``stride_s`` seconds from the start (the rest of the
   exam, shorter than a stride, is not used);
4. normalisation of each window: ``zscore_lead`` (each lead to mean 0, population standard
   deviation 1), ``zscore`` (all leads together), ``minmax`` (all leads together to [0, 1]),
   ``minmax_lead`` (each lead to [-1, 1]), or ``none``; ``1e-8`` is added to the spread.

The buffers are not saved in the state dict: the network's keys are the encoder's and the
head's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch
from scipy import signal as sps
from torch import nn
from torch.nn import functional

from ecgexp.errors import UserError
from ecgexp.signal.leads import normalise_lead_name

NORMALISATIONS = ("zscore_lead", "zscore", "minmax", "minmax_lead", "none")
EPSILON = 1e-8  # added to the spread, as the encoders' own preprocessing does


def resample_filter(up: int, down: int) -> tuple[np.ndarray, int]:
    """``scipy.signal.resample_poly``'s FIR (times ``up``, zero-padded in front so that
    output sample ``k`` is the ``(k + offset) * down``-th of the full convolution) and
    ``offset``."""
    rate = max(up, down)
    half = 10 * rate
    taps = sps.firwin(2 * half + 1, 1.0 / rate, window=("kaiser", 5.0)) * up
    pad = down - half % down
    return np.concatenate([np.zeros(pad), taps]), (half + pad) // down


class EncoderInput(nn.Module):
    """``(batch, len(leads), n_samples)`` at ``sampling_rate`` Hz -> ``(batch * windows,
    len(encoder_leads), window)`` at ``encoder_rate`` Hz (``window = round(window_s *
    encoder_rate)``). Raises :class:`UserError` naming what is missing when the data cannot
    be brought to the contract (a lead, or an exam shorter than a window)."""

    def __init__(self, name: str, leads: Sequence[str], sampling_rate: float, n_samples: int,
                 encoder_leads: Sequence[str], encoder_rate: float, window_s: float,
                 stride_s: float | None = None, normalisation: str = "zscore_lead"):
        super().__init__()
        have = [normalise_lead_name(lead) for lead in leads]
        missing = [lead for lead in encoder_leads if lead not in have]
        if missing:
            raise UserError(f"preprocessing.leads: model={name} takes the leads "
                            f"{', '.join(encoder_leads)}; the data has no {', '.join(missing)} "
                            f"(preprocessing.leads is {', '.join(have)})")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"model.normalisation: one of {', '.join(NORMALISATIONS)}, "
                             f"got {normalisation!r}")
        self.register_buffer("lead_index", torch.tensor([have.index(lead)
                                                         for lead in encoder_leads]),
                             persistent=False)
        factor = Fraction(float(encoder_rate) / float(sampling_rate)).limit_denominator(1000)
        self.up, self.down = factor.numerator, factor.denominator
        self.n_resampled = n_samples if factor == 1 else math.ceil(n_samples * self.up
                                                                   / self.down)
        taps, self.offset = resample_filter(self.up, self.down) if factor != 1 else ([1.0], 0)
        self.register_buffer("taps", torch.tensor(taps, dtype=torch.float32)[None, None],
                             persistent=False)
        self.window = round(window_s * encoder_rate)
        self.stride = self.window if stride_s is None else round(stride_s * encoder_rate)
        if self.n_resampled < self.window:
            raise UserError(
                f"dataset.n_samples: model={name} takes windows of {window_s:g} s at "
                f"{encoder_rate:g} Hz; the exams last {n_samples / sampling_rate:g} s "
                f"({n_samples} samples at {sampling_rate:g} Hz): feed exams of at least "
                f"{window_s:g} s")
        if self.stride < 1:
            raise ValueError(f"model.window_stride_s: a stride of at least one sample is "
                             f"needed, got {stride_s}")
        self.n_windows = 1 + (self.n_resampled - self.window) // self.stride
        self.normalisation = normalisation

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, leads, samples)`` -> ``(batch, leads, n_resampled)``, as
        ``scipy.signal.resample_poly(x, up, down, axis=-1)``."""
        if self.up == self.down == 1:
            return x
        batch, leads, _ = x.shape
        full = functional.conv_transpose1d(x.reshape(batch * leads, 1, -1),
                                           self.taps.to(x.dtype), stride=self.up)
        start = self.offset * self.down
        stop = start + self.n_resampled * self.down
        if full.shape[-1] < stop:  # zeros past the end, as scipy pads them
            full = functional.pad(full, (0, stop - full.shape[-1]))
        return full[..., start:stop:self.down].reshape(batch, leads, self.n_resampled)

    def normalise(self, windows: torch.Tensor) -> torch.Tensor:
        if self.normalisation == "none":
            return windows
        if self.normalisation == "zscore_lead":
            mean = windows.mean(dim=-1, keepdim=True)
            return (windows - mean) / (windows.std(dim=-1, keepdim=True, correction=0) + EPSILON)
        if self.normalisation == "minmax_lead":
            low, high = windows.amin(dim=-1, keepdim=True), windows.amax(dim=-1, keepdim=True)
            return 2 * (windows - low) / (high - low + EPSILON) - 1
        flat = windows.flatten(1)
        if self.normalisation == "zscore":
            mean, spread = flat.mean(dim=1), flat.std(dim=1, correction=0)
        else:
            mean, spread = flat.amin(dim=1), flat.amax(dim=1) - flat.amin(dim=1)
        return (windows - mean[:, None, None]) / (spread[:, None, None] + EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resample(x.index_select(1, self.lead_index))
        windows = x.unfold(2, self.window, self.stride)[:, :, :self.n_windows]
        windows = windows.permute(0, 2, 1, 3).reshape(-1, x.shape[1], self.window)
        return self.normalise(windows)
