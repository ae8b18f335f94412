"""``transformer1d``: a 1-D transformer encoder on ECG patches (a ViT over time, as the ECG
transformers of the PTB-XL and foundation-model benchmarks build them).

The tracing ``(batch, leads, samples)`` is cut into patches of ``patch_size`` samples (zeros
pad the last one), each embedded by one strided convolution (``patch_embed``: all leads of a
patch -> ``dim`` features), plus a learned position embedding per patch; ``depth`` pre-norm
encoder layers (``heads`` attention heads, a feed-forward layer of ``mlp_ratio * dim`` with
GELU, dropout ``dropout``), a final LayerNorm, then the mean over patches: ``dim`` features for
the task's head (:class:`ecgexp.models.heads.ECGNetwork`). The encoder layers are torch's own
(``nn.TransformerEncoderLayer``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

from ecgexp.models.heads import ECGNetwork


class Transformer1d(ECGNetwork):
    """A transformer encoder over ``ceil(n_samples / patch_size)`` patches; Grad-CAM explains
    the patch embedding's ``(batch, dim, patches)`` output."""

    gradcam_layer = "patch_embed"

    def __init__(self, in_leads: int = 12, n_samples: int = 4096, n_outputs: int = 1,
                 head: str = "linear", n_metadata: int = 0, gaussian_hidden: int | None = None,
                 patch_size: int = 16, dim: int = 128, depth: int = 4, heads: int = 4,
                 mlp_ratio: int = 2, dropout: float = 0.1):
        super().__init__(in_leads, n_samples, head, n_metadata, gaussian_hidden)
        if patch_size < 1 or patch_size > n_samples:
            raise ValueError(f"model.patch_size: a patch of 1 to n_samples ({n_samples}) "
                             f"samples is needed, got {patch_size}")
        if dim % heads:
            raise ValueError(f"model.dim: a multiple of model.heads ({heads}) is needed, "
                             f"got {dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout: a drop probability in [0, 1) is needed, "
                             f"got {dropout}")
        self.patch_size = int(patch_size)
        self.n_patches = math.ceil(n_samples / patch_size)
        self.patch_embed = nn.Conv1d(in_leads, dim, patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.zeros(1, self.n_patches, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, mlp_ratio * dim, dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.build_head(dim, n_outputs, gaussian_hidden)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        padding = self.n_patches * self.patch_size - x.shape[-1]
        patches = self.patch_embed(functional.pad(x, (0, padding)))  # (batch, dim, patches)
        tokens = patches.transpose(1, 2) + self.position
        return self.norm(self.encoder(tokens)).mean(dim=1)
