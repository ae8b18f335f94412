"""``merl_resnet18``: the 1-D ResNet18 ECG encoder of MERL (Liu et al., "Zero-Shot ECG
Classification with Multimodal Learning and Test-time Clinical Knowledge Enhancement",
ICML 2024), written anew in plain torch with the parameter names of its published checkpoints
(github.com/cheliu-computation/MERL-ICML2024: ``utils/resnet1d.py`` ``ResNet18``, the encoder
``ECGCLIP.ecg_encoder`` of ``utils/utils_builder.py``).

The encoder: a stem (convolution of kernel 7, stride 2, 64 filters, BatchNorm, ReLU; no
pooling), then four stages (``layer1`` .. ``layer4``) of two basic blocks each (two
convolutions of kernel 3 with BatchNorm; the first block of stages 2-4 halves the length and
its ``shortcut`` is a 1x1 convolution with BatchNorm), 64, 128, 256, 512 filters. A window of
``n`` samples ends as a ``(batch, 512, ceil(n / 16))`` feature map (5000 -> 313).

Pooling: the global average over time of ``layer4``'s output, 512 features, which is what
upstream's linear probing (``finetune/models/resnet1d.py``: ``avgpool``, then its ``linear``
head) feeds its head. (Pretraining instead projects ``layer4``'s output to 256 channels
(``downconv``, 1x1), then attention-pools it for the text alignment and average-pools it for
``linear1``/``linear2``: modules of the pretraining only.)

Published checkpoints (Google Drive, linked from the repository's README):
``*_encoder.pth`` is ``ecg_encoder.state_dict()``: these keys plus ``linear.*``, an untrained
``Linear(512, 10)`` classification head (upstream's ``num_classes=10`` default);
``*_ckpt.pth`` is the whole ``ECGCLIP``: the encoder under ``ecg_encoder.`` beside the
text-alignment modules (:data:`PRETRAINING_ONLY`); a training checkpoint wraps a
``DistributedDataParallel`` model (``module.``) under ``model_state_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ecgexp.checkpoints import renamed_keys, unwrapped_state

# Keys of the published whole model (ECGCLIP) that only its pretraining uses: the 1x1
# projection and attention pooling of the zero-shot branch, the uni-modal projections, the
# text encoder (MedCPT) and its projection.
PRETRAINING_ONLY = ("downconv.", "att_pool_head.", "linear1.", "linear2.", "lm_model.",
                    "proj_t.")
# The published encoder's classification head (Linear(512, 10), never trained).
HEAD = ("linear.",)
# Wrappers of a published file around the state dict, and prefixes around the encoder's keys.
STATE_KEYS = ("model_state_dict", "state_dict")
PREFIXES = ("module.", "ecg_encoder.")

CONTRACT = {
    "sampling_rate": 500,
    "window_s": 10.0,
    # MIMIC-IV-ECG's stored order (AVF before AVL): upstream pretrained on it and swaps AVL and
    # AVF of its downstream datasets (finetune/finetune_dataset.py) to match.
    "leads": ("DI", "DII", "DIII", "AVR", "AVF", "AVL", "V1", "V2", "V3", "V4", "V5", "V6"),
    "units": "mV",
    "filter": None,
    # (x - min) / (max - min + 1e-8), min and max over all leads and samples of the window.
    "normalisation": "min-max to [0, 1] per record (over all leads together)",
    "normalise": "minmax",  # ecgexp.models.encoder_input.EncoderInput's name of it
    "aggregate": "mean",
    "licence": "MIT (the repository's; no separate licence is stated for the weights)",
    "weights_url": "https://drive.google.com/drive/folders/13wb4DppUciMn-Y_qC2JRWTbZdz3xX0w2",
    # The encoder's parameters without the 10-output head (3,853,962 with it), derived from
    # upstream's definition (no count stated by the authors was found).
    "n_parameters": 3_848_832,
}


class BasicBlock(nn.Module):
    """Two convolutions (kernel 3) with BatchNorm, ReLU between and after the residual sum;
    the ``shortcut`` is a 1x1 convolution with BatchNorm when the stride or width changes, the
    identity (an empty ``nn.Sequential``, no keys) otherwise."""

    def __init__(self, n_in: int, n_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_in, n_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(n_out)
        self.conv2 = nn.Conv1d(n_out, n_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(n_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or n_in != n_out:
            self.shortcut = nn.Sequential(nn.Conv1d(n_in, n_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm1d(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.shortcut(x))


class MERLResNet18(nn.Module):
    """MERL's ResNet18 encoder: ``(batch, in_leads, samples)`` windows -> ``(batch,
    n_features)`` embeddings (the mean over time of the last stage). ``widths`` are the
    stages' filters (the stem has ``widths[0]``), ``blocks`` the basic blocks per stage; the
    defaults are the published sizes."""

    def __init__(self, in_leads: int = 12, widths: Sequence[int] = (64, 128, 256, 512),
                 blocks: Sequence[int] = (2, 2, 2, 2)):
        super().__init__()
        if len(widths) != len(blocks) or not widths or min(blocks) < 1:
            raise ValueError(f"MERLResNet18: one width and >= 1 blocks per stage are needed, "
                             f"got widths {list(widths)} and blocks {list(blocks)}")
        self.conv1 = nn.Conv1d(in_leads, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm1d(widths[0])
        n_in = widths[0]
        for stage, (width, n_blocks) in enumerate(zip(widths, blocks)):
            first_stride = 1 if stage == 0 else 2
            layers = []
            for i in range(n_blocks):
                layers.append(BasicBlock(n_in, width, first_stride if i == 0 else 1))
                n_in = width
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layers))
        self.n_stages = len(widths)
        self.n_features = n_in

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output, ``(batch, n_features, ceil(samples / 2 ** n_stages))``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        for stage in range(self.n_stages):
            out = getattr(self, f"layer{stage + 1}")(out)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=2)

    def layer_groups(self) -> list[list[str]]:
        """Parameter-name prefixes from input to output: the stem, then each stage."""
        return [["conv1.", "bn1."]] + [[f"layer{stage + 1}."] for stage in range(self.n_stages)]


def from_published(state: Mapping) -> dict:
    """The encoder's state dict from a published MERL file's (an ``*_encoder.pth``, a whole
    ``*_ckpt.pth``, or a training checkpoint; see the module docstring): unwrapped, the
    ``module.`` and ``ecg_encoder.`` prefixes stripped, the :data:`PRETRAINING_ONLY` modules
    and the :data:`HEAD` dropped. Any other key is kept, for the caller's strict load to
    report; nothing here checks that every encoder key is present."""
    return renamed_keys(unwrapped_state(state, STATE_KEYS, "a MERL checkpoint"), PREFIXES,
                        PRETRAINING_ONLY + HEAD)
