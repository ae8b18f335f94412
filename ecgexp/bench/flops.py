"""Forward FLOPs of a ``ResNet1d`` per exam, from its layer shapes.

Counted as ``torch.utils.flop_counter`` counts them: 2 FLOPs per multiply-accumulate of the
convolutions (``2 * C_out * C_in / groups * kernel * L_out``) and of the linear layers
(``2 * in * out``; bias additions, batch norm, ReLU, pooling and the residual additions are
left out: for the default network they add well under 1 %). A training step costs about three
forward passes (the backward pass computes the gradients of the inputs and of the weights).
"""

from __future__ import annotations

import math

from torch import nn

from ecgexp.models.resnet1d import Conv1dSame, ResNet1d


def conv_output_length(conv: nn.Conv1d, length: int) -> int:
    """Output samples of ``conv`` for ``length`` input samples."""
    stride = conv.stride[0]
    if isinstance(conv, Conv1dSame):
        return math.ceil(length / stride)
    span = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
    return (length + 2 * conv.padding[0] - span) // stride + 1


def _pool_output_length(pool: nn.MaxPool1d, length: int) -> int:
    kernel = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
    stride = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
    padding = pool.padding if isinstance(pool.padding, int) else pool.padding[0]
    return (length + 2 * padding - kernel) // stride + 1


def _conv_flops(conv: nn.Conv1d, length_out: int) -> int:
    return (2 * conv.out_channels * conv.in_channels // conv.groups * conv.kernel_size[0]
            * length_out)


def forward_flops(model: ResNet1d) -> dict[str, int]:
    """FLOPs of one exam's forward pass per layer (by module name) and ``"total"``."""
    flops: dict[str, int] = {}

    def conv(name: str, module: nn.Conv1d, length: int) -> int:
        length_out = conv_output_length(module, length)
        flops[name] = _conv_flops(module, length_out)
        return length_out

    length = conv("conv1", model.conv1, model.n_samples)
    for i in range(model.n_blocks):
        block = getattr(model, f"resblock1d_{i}")
        skip_length = length
        for j, layer in enumerate(block.skip_connection or []):
            if isinstance(layer, nn.MaxPool1d):
                skip_length = _pool_output_length(layer, skip_length)
            else:
                skip_length = conv(f"resblock1d_{i}.skip_connection.{j}", layer, skip_length)
        inner = conv(f"resblock1d_{i}.conv1", block.conv1, length)
        length = conv(f"resblock1d_{i}.conv2", block.conv2, inner)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            flops[name] = 2 * module.in_features * module.out_features
    flops["total"] = sum(flops.values())
    return flops
