"""The common 1-D residual network of the CODE studies (``ResNet1d``).

Input ``(batch, leads, samples)`` float32, output ``(batch, n_outputs)`` logits (no activation).

With odd kernels it is the PyTorch model of the age, Chagas, AF and electrolyte studies, with
the same ``state_dict`` keys and shapes, so published ``model.pth`` files load with
``strict=True``. Even kernels (kernel 16 of the Keras study) use TensorFlow-style asymmetric
"same" padding. Where the studies differ (stem ReLU, dropout, filters, number of blocks,
kernel size) the difference is a constructor argument.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _downsample(n_samples_in: int, n_samples_out: int) -> int:
    if n_samples_out > n_samples_in or n_samples_in % n_samples_out:
        raise ValueError(
            f"model.blocks: a block length must divide the previous one "
            f"(got {n_samples_in} -> {n_samples_out})"
        )
    return n_samples_in // n_samples_out


class Conv1dSame(nn.Conv1d):
    """Conv1d with TensorFlow's asymmetric "same" padding (more zeros after than before).

    The output length is ``ceil(L / stride)``. Parameters are those of ``nn.Conv1d``, so the
    ``state_dict`` keys do not change.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        stride, kernel = self.stride[0], self.kernel_size[0]
        total = max((-(-length // stride) - 1) * stride + kernel - length, 0)
        return super().forward(F.pad(x, (total // 2, total - total // 2)))


def conv1d(n_in: int, n_out: int, kernel_size: int, stride: int = 1) -> nn.Conv1d:
    """Bias-free convolution: published symmetric padding for odd kernels, "same" for even."""
    if kernel_size % 2 == 0:
        return Conv1dSame(n_in, n_out, kernel_size, stride=stride, bias=False)
    padding = max(0, (kernel_size - stride + 1) // 2)
    return nn.Conv1d(n_in, n_out, kernel_size, stride=stride, padding=padding, bias=False)


class ResBlock1d(nn.Module):
    """Residual unit: conv-bn-relu-dropout-conv(stride), + skip, then bn-relu-dropout.

    ``forward(x, y)`` takes the main-path input ``x`` and the skip input ``y`` and returns the
    new pair; the pre-activation sum becomes the next skip input, as in the published model.
    """

    def __init__(self, n_filters_in: int, n_filters_out: int, downsample: int,
                 kernel_size: int, dropout: float):
        super().__init__()
        self.conv1 = conv1d(n_filters_in, n_filters_out, kernel_size)
        self.bn1 = nn.BatchNorm1d(n_filters_out)
        self.relu1 = nn.ReLU()
        self.dropout1 = nn.Dropout(dropout)
        self.conv2 = conv1d(n_filters_out, n_filters_out, kernel_size, stride=downsample)
        self.bn2 = nn.BatchNorm1d(n_filters_out)
        self.relu2 = nn.ReLU()
        self.dropout2 = nn.Dropout(dropout)
        skip_layers: list[nn.Module] = []
        if downsample > 1:
            skip_layers.append(nn.MaxPool1d(downsample, stride=downsample))
        if n_filters_in != n_filters_out:
            skip_layers.append(nn.Conv1d(n_filters_in, n_filters_out, 1, bias=False))
        self.skip_connection = nn.Sequential(*skip_layers) if skip_layers else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_connection is not None:
            y = self.skip_connection(y)
        x = self.dropout1(self.relu1(self.bn1(self.conv1(x))))
        y = self.conv2(x) + y
        x = self.dropout2(self.relu2(self.bn2(y)))
        return x, y


class ResNet1d(nn.Module):
    """Residual network for ECG tracings.

    Args:
        in_leads: number of input leads (12, or 8 for the electrolyte study).
        n_samples: input length in samples (4096 = 10.24 s at 400 Hz).
        n_outputs: number of logits.
        blocks: ``(filters, length)`` per residual block. The stem maps the leads to
            ``blocks[0]`` (filters, length); block ``i`` maps ``blocks[i-1]`` to ``blocks[i]``
            (block 0 keeps the stem's shape). Each length must divide the previous one.
        kernel_size: convolution kernel size (odd: PyTorch studies; even: Keras study).
        dropout: drop probability after each ReLU inside the blocks.
        stem_relu: apply a ReLU after the stem's batch norm (electrolyte and Keras models do;
            age, Chagas and AF do not).
    """

    def __init__(self, in_leads: int = 12, n_samples: int = 4096, n_outputs: int = 1,
                 blocks: Sequence[Sequence[int]] = ((64, 4096), (128, 1024), (196, 256),
                                                    (256, 64), (320, 16)),
                 kernel_size: int = 17, dropout: float = 0.8, stem_relu: bool = False):
        super().__init__()
        if not blocks:
            raise ValueError("model.blocks: at least one (filters, length) block is needed")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout: a drop probability in [0, 1) is needed, "
                             f"got {dropout}")
        blocks = [(int(filters), int(length)) for filters, length in blocks]
        self.in_leads, self.n_samples = in_leads, n_samples
        filters_out, length_out = blocks[0]
        self.conv1 = conv1d(in_leads, filters_out, kernel_size,
                            stride=_downsample(n_samples, length_out))
        self.bn1 = nn.BatchNorm1d(filters_out)
        self.stem_activation = nn.ReLU() if stem_relu else nn.Identity()
        self.n_blocks = len(blocks)
        for i, (filters, length) in enumerate(blocks):
            block = ResBlock1d(filters_out, filters, _downsample(length_out, length),
                               kernel_size, dropout)
            self.add_module(f"resblock1d_{i}", block)
            filters_out, length_out = filters, length
        self.lin = nn.Linear(filters_out * length_out, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened last-block features ``(batch, filters * length)``, channel-major."""
        if x.shape[1:] != (self.in_leads, self.n_samples):
            raise ValueError(
                f"ResNet1d expects (batch, {self.in_leads}, {self.n_samples}) tracings, "
                f"got {tuple(x.shape)}"
            )
        x = self.stem_activation(self.bn1(self.conv1(x)))
        y = x
        for i in range(self.n_blocks):
            x, y = getattr(self, f"resblock1d_{i}")(x, y)
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.features(x))
