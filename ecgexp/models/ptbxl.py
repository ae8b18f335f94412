"""Backbones of the PTB-XL benchmark (Strodthoff et al., "Deep learning for ECG analysis:
benchmarks and insights from PTB-XL", IEEE JBHI 25(5), 2021; the architectures of its code,
``code/models/`` of github.com/helme/ecg_ptbxl_benchmarking, written here in plain torch):
``fcn_wang``, ``resnet1d_wang``, ``xresnet1d50``, ``xresnet1d101``, ``inception1d``, ``lstm``
and ``lstm_bidir``.

Each takes the one model signature (:class:`ecgexp.models.heads.ECGNetwork`) and ends as the
benchmark's models do: concat pooling of the last feature map (max, then mean over time; the
recurrent models add the last step), then the benchmark's head, BatchNorm, dropout
``ps_head / 2``, Linear to each width of ``lin_ftrs_head`` (``[128]``) with ReLU, then
BatchNorm and dropout ``ps_head`` before the task's head (``lin`` for a linear head: the
benchmark's last Linear). With a linear head and no metadata, the parameters are the
benchmark's model's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ecgexp.models.heads import ECGNetwork


def conv(n_in: int, n_out: int, kernel_size: int, stride: int = 1) -> nn.Conv1d:
    """The benchmark's convolution: no bias (a BatchNorm follows), padding (k - 1) // 2."""
    return nn.Conv1d(n_in, n_out, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                     bias=False)


class ConcatPool1d(nn.Module):
    """``(batch, channels, time)`` -> ``(batch, 2 * channels)``: the max then the mean over
    time (fastai's ``AdaptiveConcatPool1d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=2), x.mean(dim=2)], dim=1)


def benchmark_neck(n_features: int, widths: Sequence[int], dropout: float) -> nn.Sequential:
    """The benchmark head but its last Linear: for each width, BatchNorm, dropout
    ``dropout / 2``, Linear, ReLU; then BatchNorm and dropout ``dropout``."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.BatchNorm1d(n_features), nn.Dropout(dropout / 2),
                   nn.Linear(n_features, width), nn.ReLU()]
        n_features = width
    return nn.Sequential(*layers, nn.BatchNorm1d(n_features), nn.Dropout(dropout))


class BenchmarkNetwork(ECGNetwork):
    """A benchmark backbone: ``body`` (the layers over time), ``pool`` and ``neck``."""

    def __init__(self, in_leads: int, n_samples: int, n_outputs: int, head: str,
                 n_metadata: int, gaussian_hidden: int | None, lin_ftrs_head: Sequence[int],
                 ps_head: float):
        super().__init__(in_leads, n_samples, head, n_metadata, gaussian_hidden)
        if not 0.0 <= ps_head < 1.0:
            raise ValueError(f"model.ps_head: a drop probability in [0, 1) is needed, "
                             f"got {ps_head}")
        self.n_outputs, self.gaussian_hidden = n_outputs, gaussian_hidden
        self.lin_ftrs_head, self.ps_head = [int(w) for w in lin_ftrs_head], float(ps_head)

    def finish(self, n_pooled: int) -> None:
        """The neck on ``n_pooled`` pooled features, then the task's head."""
        self.neck = benchmark_neck(n_pooled, self.lin_ftrs_head, self.ps_head)
        width = self.lin_ftrs_head[-1] if self.lin_ftrs_head else n_pooled
        self.build_head(width, self.n_outputs, self.gaussian_hidden)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.neck(self.pool(self.body(x)))


class FCNWang(BenchmarkNetwork):
    """``fcn_wang``: three convolutions (128, 256, 128 filters; kernels 8, 5, 3; stride 1),
    each with BatchNorm and ReLU (Wang et al. 2017's fully convolutional network)."""

    def __init__(self, in_leads: int = 12, n_samples: int = 1000, n_outputs: int = 1,
                 head: str = "linear", n_metadata: int = 0, gaussian_hidden: int | None = None,
                 filters: Sequence[int] = (128, 256, 128), kernel_sizes: Sequence[int] = (8, 5, 3),
                 lin_ftrs_head: Sequence[int] = (128,), ps_head: float = 0.5):
        super().__init__(in_leads, n_samples, n_outputs, head, n_metadata, gaussian_hidden,
                         lin_ftrs_head, ps_head)
        if len(filters) != len(kernel_sizes) or not filters:
            raise ValueError(f"model.filters and model.kernel_sizes: one kernel per layer, got "
                             f"{list(filters)} and {list(kernel_sizes)}")
        layers, n_in = [], in_leads
        for n_out, kernel in zip(filters, kernel_sizes):
            layers.append(nn.Sequential(conv(n_in, int(n_out), int(kernel)),
                                        nn.BatchNorm1d(int(n_out)), nn.ReLU()))
            n_in = int(n_out)
        self.body = nn.Sequential(*layers)
        self.gradcam_layer = f"body.{len(layers) - 1}.0"  # the last convolution
        self.pool = ConcatPool1d()
        self.finish(2 * n_in)


class BasicBlock1d(nn.Module):
    """Two convolutions (kernels ``kernel_sizes``) with BatchNorm, ReLU between, and the
    residual (a 1x1 convolution and BatchNorm when the stride or width changes)."""

    def __init__(self, n_in: int, n_out: int, stride: int, kernel_sizes: Sequence[int]):
        super().__init__()
        self.conv1 = conv(n_in, n_out, kernel_sizes[0], stride)
        self.bn1 = nn.BatchNorm1d(n_out)
        self.relu = nn.ReLU()
        self.conv2 = conv(n_out, n_out, kernel_sizes[1])
        self.bn2 = nn.BatchNorm1d(n_out)
        self.downsample = (nn.Sequential(nn.Conv1d(n_in, n_out, 1, stride=stride, bias=False),
                                         nn.BatchNorm1d(n_out))
                           if stride != 1 or n_in != n_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + residual)


class ResNet1dWang(BenchmarkNetwork):
    """``resnet1d_wang``: a stem convolution (128 filters, kernel 7, stride 1, no pooling), then
    ``layers`` basic blocks per stage (kernels 5 and 3), 128 filters throughout; each stage
    after the first halves the length (Wang et al. 2017's ResNet, as the benchmark runs it)."""

    def __init__(self, in_leads: int = 12, n_samples: int = 1000, n_outputs: int = 1,
                 head: str = "linear", n_metadata: int = 0, gaussian_hidden: int | None = None,
                 planes: int = 128, layers: Sequence[int] = (1, 1, 1),
                 kernel_sizes: Sequence[int] = (5, 3), stem_kernel_size: int = 7,
                 lin_ftrs_head: Sequence[int] = (128,), ps_head: float = 0.5):
        super().__init__(in_leads, n_samples, n_outputs, head, n_metadata, gaussian_hidden,
                         lin_ftrs_head, ps_head)
        stages: list[nn.Module] = [conv(in_leads, planes, stem_kernel_size),
                                   nn.BatchNorm1d(planes), nn.ReLU()]
        for stage, n_blocks in enumerate(layers):
            blocks = [BasicBlock1d(planes, planes, 1 if stage == 0 or i else 2, kernel_sizes)
                      for i in range(int(n_blocks))]
            stages.append(nn.Sequential(*blocks))
        self.body = nn.Sequential(*stages)
        self.gradcam_layer = (f"body.{len(stages) - 1}.{len(blocks) - 1}.conv2" if blocks
                              else None)  # the last convolution
        self.pool = ConcatPool1d()
        self.finish(2 * planes)


def conv_bn(n_in: int, n_out: int, kernel_size: int, stride: int = 1, relu: bool = True,
            zero: bool = False) -> nn.Sequential:
    """fastai's ``ConvLayer``: a convolution (Kaiming-normal weights, no bias), BatchNorm (its
    bias 1e-3; its weight 0 when ``zero``: the last of a residual path, 1 otherwise), ReLU."""
    layer = conv(n_in, n_out, kernel_size, stride)
    nn.init.kaiming_normal_(layer.weight)
    norm = nn.BatchNorm1d(n_out)
    nn.init.constant_(norm.weight, 0.0 if zero else 1.0)
    nn.init.constant_(norm.bias, 1e-3)
    return nn.Sequential(layer, norm, *([nn.ReLU()] if relu else []))


class XResBlock1d(nn.Module):
    """fastai's bottleneck ``ResBlock`` (expansion 4): 1x1 to ``width``, ``kernel_size`` (with
    the stride), 1x1 to ``4 * width`` (its BatchNorm starting at 0); the identity path
    average-pools (stride 2) and takes a 1x1 convolution where the width changes."""

    def __init__(self, n_in: int, width: int, stride: int, kernel_size: int, expansion: int = 4):
        super().__init__()
        n_out = width * expansion
        self.convs = nn.Sequential(conv_bn(n_in, width, 1),
                                   conv_bn(width, width, kernel_size, stride),
                                   conv_bn(width, n_out, 1, relu=False, zero=True))
        identity: list[nn.Module] = []
        if stride != 1:
            identity.append(nn.AvgPool1d(2, ceil_mode=True))
        if n_in != n_out:
            identity.append(conv_bn(n_in, n_out, 1, relu=False))
        self.idpath = nn.Sequential(*identity)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.idpath(x))


class XResNet1d(BenchmarkNetwork):
    """``xresnet1d50`` (``layers=[3, 4, 6, 3]``) and ``xresnet1d101`` (``[3, 4, 23, 3]``):
    fastai's XResNet in 1-D as the benchmark runs it: a stem of three convolutions (32, 32, 64
    filters, kernel 5, the first with stride 2) and max pooling, then bottleneck blocks of
    width 64 (256 channels out) with kernel 5, each stage after the first halving the length."""

    def __init__(self, in_leads: int = 12, n_samples: int = 1000, n_outputs: int = 1,
                 head: str = "linear", n_metadata: int = 0, gaussian_hidden: int | None = None,
                 layers: Sequence[int] = (3, 4, 6, 3), width: int = 64, kernel_size: int = 5,
                 stem_sizes: Sequence[int] = (32, 32, 64),
                 lin_ftrs_head: Sequence[int] = (128,), ps_head: float = 0.5):
        super().__init__(in_leads, n_samples, n_outputs, head, n_metadata, gaussian_hidden,
                         lin_ftrs_head, ps_head)
        sizes = [in_leads, *(int(s) for s in stem_sizes)]
        stem = [conv_bn(sizes[i], sizes[i + 1], kernel_size, stride=2 if i == 0 else 1)
                for i in range(len(sizes) - 1)]
        stages, n_in = [], sizes[-1]
        for stage, n_blocks in enumerate(layers):
            blocks = []
            for i in range(int(n_blocks)):
                blocks.append(XResBlock1d(n_in, width, 2 if stage and not i else 1,
                                          kernel_size))
                n_in = width * 4
            stages.append(nn.Sequential(*blocks))
        self.body = nn.Sequential(*stem, nn.MaxPool1d(3, stride=2, padding=1), *stages)
        last = len(self.body) - 1
        self.gradcam_layer = f"body.{last}.{len(stages[-1]) - 1}.convs.2.0"  # the last convolution
        self.pool = ConcatPool1d()
        self.finish(2 * n_in)


class InceptionBlock1d(nn.Module):
    """A bottleneck (1x1, ``bottleneck`` filters), convolutions of each kernel size on it and a
    max-pooled 1x1 path of the input, concatenated, then BatchNorm and ReLU."""

    def __init__(self, n_in: int, filters: int, kernel_sizes: Sequence[int], bottleneck: int):
        super().__init__()
        self.bottleneck = conv(n_in, bottleneck, 1)
        self.convs = nn.ModuleList([conv(bottleneck, filters, k) for k in kernel_sizes])
        self.conv_bottle = nn.Sequential(nn.MaxPool1d(3, 1, padding=1), conv(n_in, filters, 1))
        self.bn_relu = nn.Sequential(nn.BatchNorm1d((len(kernel_sizes) + 1) * filters),
                                     nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottled = self.bottleneck(x)
        paths = [c(bottled) for c in self.convs] + [self.conv_bottle(x)]
        return self.bn_relu(torch.cat(paths, dim=1))


class Shortcut1d(nn.Module):
    """The residual of three inception blocks: ReLU(out + BatchNorm(1x1 convolution(input)))."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = conv(n_in, n_out, 1)
        self.bn = nn.BatchNorm1d(n_out)
        self.relu = nn.ReLU()

    def forward(self, inputs: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.relu(out + self.bn(self.conv(inputs)))


class InceptionBody(nn.Module):
    """``depth`` inception blocks, a shortcut around every three."""

    def __init__(self, n_in: int, filters: int, kernel_sizes: Sequence[int], depth: int,
                 bottleneck: int):
        super().__init__()
        width = (len(kernel_sizes) + 1) * filters
        self.im = nn.ModuleList([InceptionBlock1d(n_in if d == 0 else width, filters,
                                                  kernel_sizes, bottleneck)
                                 for d in range(depth)])
        self.sk = nn.ModuleList([Shortcut1d(n_in if d == 0 else width, width)
                                 for d in range(depth // 3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        for d, block in enumerate(self.im):
            x = block(x)
            if d % 3 == 2:
                x = residual = self.sk[d // 3](residual, x)
        return x


class Inception1d(BenchmarkNetwork):
    """``inception1d`` (InceptionTime, Fawaz et al. 2020, as the benchmark runs it): ``depth``
    inception blocks of ``filters`` per path with kernels ``kernel_size`` (made odd),
    ``kernel_size // 2`` and ``// 4`` (39, 19, 9 for 40), a 32-filter bottleneck, and a
    shortcut around every three blocks."""

    def __init__(self, in_leads: int = 12, n_samples: int = 1000, n_outputs: int = 1,
                 head: str = "linear", n_metadata: int = 0, gaussian_hidden: int | None = None,
                 kernel_size: int = 40, depth: int = 6, bottleneck: int = 32, filters: int = 32,
                 lin_ftrs_head: Sequence[int] = (128,), ps_head: float = 0.5):
        super().__init__(in_leads, n_samples, n_outputs, head, n_metadata, gaussian_hidden,
                         lin_ftrs_head, ps_head)
        if depth < 3 or depth % 3:
            raise ValueError(f"model.depth: a multiple of 3 is needed (a shortcut spans three "
                             f"blocks), got {depth}")
        kernels = [k - 1 if k % 2 == 0 else k
                   for k in (kernel_size, kernel_size // 2, kernel_size // 4)]
        self.body = InceptionBody(in_leads, filters, kernels, depth, bottleneck)
        self.gradcam_layer = f"body.im.{depth - 1}"  # the last inception block
        self.pool = ConcatPool1d()
        self.finish(2 * (len(kernels) + 1) * filters)


class RecurrentPool(nn.Module):
    """``(batch, time, features)`` LSTM outputs -> ``(batch, 3 * features)``: the mean, the
    max and the last step over time (the benchmark's ``AdaptiveConcatPoolRNN``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=1), x.amax(dim=1), x[:, -1]], dim=1)


class LSTM1d(BenchmarkNetwork):
    """``lstm`` and ``lstm_bidir`` (``bidirectional``): ``num_layers`` LSTM layers of
    ``hidden`` units over the samples (the leads are the inputs of a step)."""

    def __init__(self, in_leads: int = 12, n_samples: int = 1000, n_outputs: int = 1,
                 head: str = "linear", n_metadata: int = 0, gaussian_hidden: int | None = None,
                 hidden: int = 256, num_layers: int = 2, bidirectional: bool = False,
                 lin_ftrs_head: Sequence[int] = (128,), ps_head: float = 0.5):
        super().__init__(in_leads, n_samples, n_outputs, head, n_metadata, gaussian_hidden,
                         lin_ftrs_head, ps_head)
        self.lstm = nn.LSTM(in_leads, hidden, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional)
        self.pool = RecurrentPool()
        self.finish(3 * hidden * (2 if bidirectional else 1))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x.transpose(1, 2))[0]
