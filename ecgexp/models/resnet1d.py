"""The common 1-D residual network of the CODE studies (``ResNet1d``).

Input ``(batch, leads, samples)`` float32 tracings, plus ``(batch, n_metadata)`` metadata (e.g.
age and sex) when the model is built with ``n_metadata > 0``. Output, no activation applied:

- ``head="linear"``: ``(batch, n_outputs)`` logits or regression values;
- ``head="gaussian"``: ``(batch, 2 * n_outputs)``, the means then the log-variances
  (``ProbResNet1d`` of the electrolyte study);
- ``head="coral"``: ``(batch, n_outputs)`` CORAL logits for ``n_outputs + 1`` ordered classes
  (``OrdinalResNet1d(K)`` with ``K = n_outputs + 1``).

With odd kernels it is the PyTorch model of the age, Chagas, AF and electrolyte studies, with
the same ``state_dict`` keys and shapes, so published ``model.pth`` files load with
``strict=True``. With ``stem=[64, 4096]``, four blocks, kernel 16 and ``bn_eps=1e-3`` it is the
Keras model of the abnormality study: even kernels use TensorFlow-style asymmetric "same"
padding, and the skip path (max pooling, then a 1x1 convolution) is Keras's for block lengths
that divide the previous one. Where the studies differ (stem ReLU, dropout, filters, number of
blocks, kernel size, BatchNorm epsilon) the difference is a constructor argument; so are the
electrolyte study's heads
(gaussian, CORAL, metadata fusion of ``ResNet1dMetaData``), whose ``state_dict`` keys are also
the published ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ecgexp.models.heads import ECGNetwork


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


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask, on the CPU, is a uniform draw compared with ``p``: about three
    times faster there than the Bernoulli kernel of ``F.dropout``, which took a sixth of a CPU
    training step of ``resnet1d_small`` (``ecgexp-bench``'s ``dropout`` benchmark). The same
    distribution: each element kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``.
    Other devices use ``F.dropout``. No parameters, so ``state_dict`` keys do not change."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        mask = torch.rand_like(x).ge_(self.p).mul_(1 / (1 - self.p))
        return x * mask


class ResBlock1d(nn.Module):
    """Residual unit: conv-bn-relu-dropout-conv(stride), + skip, then bn-relu-dropout.

    ``forward(x, y)`` takes the main-path input ``x`` and the skip input ``y`` and returns the
    new pair; the pre-activation sum becomes the next skip input, as in the published model.
    """

    def __init__(self, n_filters_in: int, n_filters_out: int, downsample: int,
                 kernel_size: int, dropout: float, bn_eps: float = 1e-5):
        super().__init__()
        self.conv1 = conv1d(n_filters_in, n_filters_out, kernel_size)
        self.bn1 = nn.BatchNorm1d(n_filters_out, eps=bn_eps)
        self.relu1 = nn.ReLU()
        self.dropout1 = Dropout(dropout)
        self.conv2 = conv1d(n_filters_out, n_filters_out, kernel_size, stride=downsample)
        self.bn2 = nn.BatchNorm1d(n_filters_out, eps=bn_eps)
        self.relu2 = nn.ReLU()
        self.dropout2 = Dropout(dropout)
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


class ResNet1d(ECGNetwork):
    """Residual network for ECG tracings.

    The trunk (stem and residual blocks) gives ``F = filters * length`` features of the last
    block (5120 by default); the task's head (linear, gaussian, coral, metadata fusion) is
    :class:`ecgexp.models.heads.ECGNetwork`'s, with the published parameter names.

    Args:
        in_leads: number of input leads (12, or 8 for the electrolyte study).
        n_samples: input length in samples (4096 = 10.24 s at 400 Hz).
        n_outputs: number of outputs per head branch (for ``coral``: number of classes - 1).
        blocks: ``(filters, length)`` per residual block; block ``i`` maps the previous shape
            (the stem's for block 0) to ``blocks[i]``. Each length must divide the previous one.
        stem: ``(filters, length)`` of the stem's output. None (the PyTorch studies): the
            stem maps the leads to ``blocks[0]``, so block 0 keeps the stem's shape and has no
            skip convolution. ``[64, 4096]`` with four blocks: the Keras model.
        kernel_size: convolution kernel size (odd: PyTorch studies; even: Keras study).
        dropout: drop probability after each ReLU inside the blocks.
        stem_relu: apply a ReLU after the stem's batch norm (electrolyte and Keras models do;
            age, Chagas and AF do not).
        bn_eps: epsilon of every BatchNorm (1e-5, PyTorch's default; the Keras model's 1e-3).
        head: ``"linear"``, ``"gaussian"`` or ``"coral"`` (see above).
        n_metadata: number of metadata inputs fused into the head (2 for age and sex); 0 for
            none, in which case ``forward`` takes the tracings only.
        gaussian_hidden: hidden width of the gaussian log-variance branch; None means the
            head's input width (F, or H with metadata; the published model uses 5120).
    """

    # The layer of the published heatmaps (ecg-heatmaps).
    gradcam_layer = "resblock1d_2.conv1"

    def __init__(self, in_leads: int = 12, n_samples: int = 4096, n_outputs: int = 1,
                 blocks: Sequence[Sequence[int]] = ((64, 4096), (128, 1024), (196, 256),
                                                    (256, 64), (320, 16)),
                 kernel_size: int = 17, dropout: float = 0.8, stem_relu: bool = False,
                 head: str = "linear", n_metadata: int = 0, gaussian_hidden: int | None = None,
                 stem: Sequence[int] | None = None, bn_eps: float = 1e-5):
        super().__init__(in_leads, n_samples, head, n_metadata, gaussian_hidden)
        if not blocks:
            raise ValueError("model.blocks: at least one (filters, length) block is needed")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout: a drop probability in [0, 1) is needed, "
                             f"got {dropout}")
        if stem is not None and len(stem) != 2:
            raise ValueError(f"model.stem: a [filters, length] pair or null is needed, got {stem}")
        blocks = [(int(filters), int(length)) for filters, length in blocks]
        filters_out, length_out = blocks[0] if stem is None else (int(stem[0]), int(stem[1]))
        self.conv1 = conv1d(in_leads, filters_out, kernel_size,
                            stride=_downsample(n_samples, length_out))
        self.bn1 = nn.BatchNorm1d(filters_out, eps=bn_eps)
        self.stem_activation = nn.ReLU() if stem_relu else nn.Identity()
        self.n_blocks = len(blocks)
        for i, (filters, length) in enumerate(blocks):
            block = ResBlock1d(filters_out, filters, _downsample(length_out, length),
                               kernel_size, dropout, bn_eps)
            self.add_module(f"resblock1d_{i}", block)
            filters_out, length_out = filters, length
        self.build_head(filters_out * length_out, n_outputs, gaussian_hidden)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened last-block features ``(batch, filters * length)``, channel-major."""
        self.check_input(x)
        x = self.stem_activation(self.bn1(self.conv1(x)))
        y = x
        for i in range(self.n_blocks):
            x, y = getattr(self, f"resblock1d_{i}")(x, y)
        return x.flatten(1)
