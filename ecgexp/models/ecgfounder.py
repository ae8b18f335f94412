"""``ecgfounder``: the Net1D encoder of ECGFounder (Li et al., "An Electrocardiogram Foundation
Model Built on over 10 Million Recordings with External Evaluation across Multiple Domains",
NEJM AI 2(7), 2025; arXiv:2410.04133), written anew in plain torch with the parameter names of
its published checkpoints (github.com/PKUDigitalHealth/ECGFounder: ``net1d.py`` ``Net1D``; the
published configuration in ``finetune_model.py`` and ``ptbxl_eval.py``).

The encoder, at the published sizes: a stem (``first_conv``: 64 filters, kernel 16, stride 2,
"same" padding; Swish), then seven stages of 2, 2, 2, 3, 3, 4, 4 blocks with 64, 160, 160,
400, 400, 1024, 1024 filters. A block is a bottleneck of ratio 1: Swish, 1x1 convolution,
Swish, grouped convolution (kernel 16, groups of 16 channels), Swish, 1x1 convolution, then
squeeze-and-excitation (mean over time, Linear to half the width, Swish, Linear, sigmoid: a
gate per channel); the residual is the block's input, max-pooled when the block downsamples
and zero-padded on both sides of the channel axis when the width grows. The first block of
each stage halves the length, the very first block has no leading Swish. A 10 s window at
500 Hz (5000 samples) ends as a ``(batch, 1024, 20)`` feature map.

Pooling: the mean over time of the last stage's output, 1024 features, as upstream's
``Net1D.forward`` computes ``deep_features`` before its ``dense`` head (150 labels).

The published configuration has ``use_bn=False`` and ``use_do=False``: no dropout, and no
BatchNorm is applied; the BatchNorms (``first_bn``; ``bn1``-``bn3`` of every block) are still
modules of ``Net1D`` and so keys of the published checkpoint. They are built here, and never
applied, only so that the published state dict loads key for key.

Published checkpoints (Hugging Face, PKUDigitalHealth/ECGFounder): ``12_lead_ECGFounder.pth``
and ``1_lead_ECGFounder.pth`` (lead I only: ``in_leads=1``), each ``{"state_dict": ...}`` with
these keys plus the :data:`HEAD`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional

from ecgexp.checkpoints import renamed_keys, unwrapped_state

# ECGFounder is trained supervised: no pretraining-only module, only the 150-label head.
PRETRAINING_ONLY: tuple[str, ...] = ()
HEAD = ("dense.",)
N_LABELS = 150
# Wrapper of a published file around the state dict, and a DataParallel prefix.
STATE_KEYS = ("state_dict",)
PREFIXES = ("module.",)

CONTRACT = {
    "sampling_rate": 500,
    "window_s": 10.0,
    # The standard order (upstream's dataset.py reorders MIMIC-IV-ECG's AVF/AVL to it).
    "leads": ("DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"),
    "units": "mV",
    # util.py filter_bandpass, per lead, zero-phase (filtfilt): a 50 Hz notch (Q 30), a
    # 4th-order Butterworth band-pass 0.67-40 Hz, then the baseline, a median filter of
    # int(0.4 * fs) + 1 samples (201 at 500 Hz), subtracted. (ptbxl_eval.py skips it; the
    # README asks for it.)
    "filter": {"powerline_hz": 50, "notch_quality": 30, "bandpass_hz": (0.67, 40.0),
               "bandpass_order": 4, "zero_phase": True, "baseline_median_s": 0.4},
    # (x - mean) / (std + 1e-8), mean and std over all leads and samples of the window.
    "normalisation": "z-score per record (over all leads together)",
    "normalise": "zscore",  # ecgexp.models.encoder_input.EncoderInput's name of it
    "aggregate": "mean",
    "licence": "not stated with the weights; the code repository is MIT",
    "weights_url": "https://huggingface.co/PKUDigitalHealth/ECGFounder",
    "weights_file": "12_lead_ECGFounder.pth",
    # The encoder's parameters (the unused BatchNorms included) without the head (30,819,014
    # with it), derived from upstream's definition at the published configuration.
    "n_parameters": 30_665_264,
}
# The single-lead variant: lead I, same rate, window, filter and normalisation.
SINGLE_LEAD_CONTRACT = {**CONTRACT, "leads": ("DI",), "weights_file": "1_lead_ECGFounder.pth",
                        "n_parameters": 30_654_000}


def same_padding(x: torch.Tensor, total: int) -> torch.Tensor:
    """``total`` zeros on the time axis, ``total // 2`` before and the rest after."""
    return functional.pad(x, (total // 2, total - total // 2))


class SameConv1d(nn.Module):
    """A convolution with "same" padding: ``(batch, n_in, L)`` -> ``(batch, n_out,
    ceil(L / stride))``; the convolution itself is ``conv`` (the published key names)."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int, stride: int = 1,
                 groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel_size, stride=stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kernel,), (stride,), length = self.conv.kernel_size, self.conv.stride, x.shape[-1]
        n_out = -(-length // stride)
        return self.conv(same_padding(x, max(0, (n_out - 1) * stride + kernel - length)))


class Block(nn.Module):
    """Net1D's block (see the module docstring); ``stride > 1`` downsamples the residual
    path (strided grouped convolution) and the shortcut (max-pooling over ``stride``
    samples, zero "same" padding); ``first``: the network's first block, no leading Swish."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int, stride: int, groups: int,
                 first: bool):
        super().__init__()
        self.n_in, self.n_out, self.stride, self.first = n_in, n_out, stride, first
        self.bn1 = nn.BatchNorm1d(n_in)  # never applied (use_bn=False); see module docstring
        self.conv1 = SameConv1d(n_in, n_out, 1)
        self.bn2 = nn.BatchNorm1d(n_out)
        self.conv2 = SameConv1d(n_out, n_out, kernel_size, stride, groups)
        self.bn3 = nn.BatchNorm1d(n_out)
        self.conv3 = SameConv1d(n_out, n_out, 1)
        self.se_fc1 = nn.Linear(n_out, n_out // 2)
        self.se_fc2 = nn.Linear(n_out // 2, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x if self.first else functional.silu(x))
        out = self.conv3(functional.silu(self.conv2(functional.silu(out))))
        gate = torch.sigmoid(self.se_fc2(functional.silu(self.se_fc1(out.mean(dim=2)))))
        out = out * gate[:, :, None]
        shortcut = x
        if self.stride > 1:
            shortcut = functional.max_pool1d(same_padding(x, self.stride - 1), self.stride)
        grow = self.n_out - self.n_in
        if grow:
            shortcut = functional.pad(shortcut, (0, 0, grow // 2, grow - grow // 2))
        return out + shortcut


class Stage(nn.Module):
    """``n_blocks`` blocks of ``n_out`` filters; the first takes ``n_in`` channels and
    downsamples by ``stride``."""

    def __init__(self, n_in: int, n_out: int, n_blocks: int, kernel_size: int, stride: int,
                 groups: int, first: bool):
        super().__init__()
        self.block_list = nn.ModuleList(
            Block(n_in if i == 0 else n_out, n_out, kernel_size, stride if i == 0 else 1,
                  groups, first and i == 0) for i in range(n_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class ECGFounder(nn.Module):
    """ECGFounder's Net1D encoder: ``(batch, in_leads, samples)`` windows -> ``(batch,
    n_features)`` embeddings (the mean over time of the last stage). ``filters`` and
    ``blocks``: per stage; each stage's grouped convolution has ``filters / groups_width``
    groups. The defaults are the published 12-lead sizes (``in_leads=1``: the single-lead
    model)."""

    def __init__(self, in_leads: int = 12, base_filters: int = 64,
                 filters: Sequence[int] = (64, 160, 160, 400, 400, 1024, 1024),
                 blocks: Sequence[int] = (2, 2, 2, 3, 3, 4, 4), kernel_size: int = 16,
                 stride: int = 2, groups_width: int = 16):
        super().__init__()
        if len(filters) != len(blocks) or not filters or min(blocks) < 1:
            raise ValueError(f"ECGFounder: one width and >= 1 blocks per stage are needed, "
                             f"got filters {list(filters)} and blocks {list(blocks)}")
        if any(width % groups_width for width in filters):
            raise ValueError(f"ECGFounder: every stage's filters must be a multiple of "
                             f"groups_width ({groups_width}), got {list(filters)}")
        self.first_conv = SameConv1d(in_leads, base_filters, kernel_size, stride=2)
        self.first_bn = nn.BatchNorm1d(base_filters)  # never applied (use_bn=False)
        widths = [base_filters, *filters]
        self.stage_list = nn.ModuleList(
            Stage(widths[i], widths[i + 1], blocks[i], kernel_size, stride,
                  widths[i + 1] // groups_width, first=i == 0) for i in range(len(filters)))
        self.n_features = widths[-1]

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output, ``(batch, n_features, time)``; ``time`` is the samples
        halved (rounded up) by the stem and by every stage (5000 -> 20)."""
        out = functional.silu(self.first_conv(x))
        for stage in self.stage_list:
            out = stage(out)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=2)

    def layer_groups(self) -> list[list[str]]:
        """Parameter-name prefixes from input to output: the stem, then each stage."""
        return [["first_conv.", "first_bn."]] + [
            [f"stage_list.{i}."] for i in range(len(self.stage_list))]


def from_published(state: Mapping) -> dict:
    """The encoder's state dict from a published ECGFounder file's (``{"state_dict": ...}``
    or the bare state dict, with or without a ``module.`` prefix): the :data:`HEAD` dropped.
    Any other key is kept, for the caller's strict load to report; nothing here checks that
    every encoder key is present."""
    return renamed_keys(unwrapped_state(state, STATE_KEYS, "an ECGFounder checkpoint"),
                        PREFIXES, PRETRAINING_ONLY + HEAD)
