"""``ecg_fm``: the encoder of ECG-FM (McKeen et al., "ECG-FM: An Open Electrocardiogram
Foundation Model", arXiv:2408.05178, 2024; github.com/bowang-lab/ECG-FM), a wav2vec 2.0
encoder pretrained with W2V+CMSC+RLM, written anew in plain torch with the parameter names of
its published checkpoints. The model code is fairseq-signals' (github.com/Jwoo5/fairseq-signals,
MIT): ``models/ecg_transformer.py`` ``ECGTransformerModel`` and ``models/transformer.py``
under ``models/wav2vec2/wav2vec2_cmsc.py`` ``Wav2Vec2CMSCModel``, with the modules of
``modules/`` (``conv_feature_extraction.py``, ``conv_positional_encoding.py``,
``transformer_encoder.py``, ``transformer_encoder_layer.py``); the published sizes are the
defaults plus ``examples/w2v_cmsc/config/pretraining/w2v_cmsc_rlm.yaml``.

The encoder of a ``(batch, 12, 2500)`` window (5 s at 500 Hz):

- ``feature_extractor``: four convolutions of 256 filters, kernel 2, stride 2, no bias, GELU
  (the first with a GroupNorm of one group per channel): 2500 samples -> 156 frames;
- ``layer_norm`` over the 256 features of each frame, ``post_extract_proj`` to 768;
- ``conv_pos``: a grouped convolution over time (kernel 128, 16 groups, weight-normalised over
  the kernel axis, GELU), its output added to the frames;
- ``encoder``: ``layer_norm``, then 12 post-norm transformer layers (12 heads, feed-forward
  3072, GELU): each ``x = LN(x + attention(x))``, ``x = LN(x + fc2(gelu(fc1(x))))``.

Pooling: upstream's fine-tuning (``models/classification/ecg_transformer_classifier.py``) and
ECG-FM's embedding script (``scripts/embs.py``) average the last layer's output over time
(``sum / count of non-zero entries``, the mean for real-valued outputs): 768 features.

Published checkpoints (Hugging Face, wanglab/ecg-fm) are fairseq files ``{"model":
state_dict, "cfg": ...}``: ``mimic_iv_ecg_physionet_pretrained.pt`` holds these keys plus the
:data:`PRETRAINING_ONLY` modules; ``mimic_iv_ecg_finetuned.pt`` holds them under ``encoder.``
beside the classification :data:`HEAD`. They were saved (2024) when fairseq-signals built the
positional convolution with ``torch.nn.utils.weight_norm``: ``weight_g`` and ``weight_v``, the
names kept here; a file of fairseq-signals from 2025 on names them
``parametrizations.weight.original0`` and ``original1`` (:data:`WEIGHT_NORM_NAMES`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional

from ecgexp.checkpoints import unwrapped_state

# Modules of the published pretraining model (Wav2Vec2CMSCModel) that only its pretraining
# uses: the mask embedding, the Gumbel quantizer of the targets and the projections of the
# contrastive loss (input_quantizer, project_inp and target_glu exist only with options that
# ECG-FM's config leaves off).
PRETRAINING_ONLY = ("mask_emb", "quantizer.", "input_quantizer.", "project_q.", "project_inp.",
                    "target_glu.", "final_proj.")
# The fine-tuned classifier's head: Linear(768, labels) on the pooled encoder output.
HEAD = ("proj.",)
# The fairseq wrapper around the state dict, and the prefix of the fine-tuned file's encoder.
STATE_KEYS = ("model",)
FINETUNED_PREFIX = "encoder."
# fairseq-signals >= 2025 (torch parametrizations) -> the names of the published files.
WEIGHT_NORM_NAMES = {"parametrizations.weight.original0": "weight_g",
                     "parametrizations.weight.original1": "weight_v"}

CONTRACT = {
    "sampling_rate": 500,
    "window_s": 5.0,
    # fairseq-signals' LEAD_ORDER (scripts/preprocess/ecg/preprocess.py), the standard order.
    "leads": ("DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"),
    "units": "mV",
    # No filter: the preprocessing only resamples (linear interpolation) and standardises, and
    # the pretraining and fine-tuning configs set task.filter false.
    "filter": None,
    # preprocess.py (and the quickstart's ecg_transform Standardize) subtract each lead's mean
    # and divide by its std over the whole record, then cut non-overlapping 5 s windows; a
    # constant lead becomes zeros.
    "normalisation": "per-lead z-score per record (before the 5 s windows are cut)",
    # ecgexp.models.encoder_input.EncoderInput's name of it; ecgexp standardises each window
    # (upstream: the whole record, usually 10 s).
    "normalise": "zscore_lead",
    # The quickstart aggregates the windows' predictions of one exam by label: the mean, the
    # max for event labels (ectopy, pacing, poor quality).
    "aggregate": "mean",
    "licence": "MIT",
    "weights_url": "https://huggingface.co/wanglab/ecg-fm",
    "weights_file": "mimic_iv_ecg_physionet_pretrained.pt",
    # The encoder's parameters, derived from upstream's definition. The README's "90.9 million"
    # counts the pretraining model: these plus the PRETRAINING_ONLY modules, 90,883,072.
    "n_parameters": 90_373_248,
    "published_parameters": "90.9M",
}


class WeightNormConv1d(nn.Module):
    """A grouped ``Conv1d`` with "same" length for an even kernel (the last output dropped,
    upstream's ``SamePad``) whose kernel is ``weight_g * weight_v / ||weight_v||``, the norm
    over the output and input channels for each kernel position (weight normalisation over
    dimension 2, as ``torch.nn.utils.weight_norm(conv, dim=2)`` stores it)."""

    def __init__(self, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.groups, self.padding = groups, kernel_size // 2
        self.trim = 1 if kernel_size % 2 == 0 else 0
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel_size))
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel_size))
        self.bias = nn.Parameter(torch.empty(channels))
        if not self.weight_v.is_meta:  # (a module on the meta device has no values)
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Upstream's start: ``weight_v`` normal (std ``sqrt(4 / (kernel * channels))``),
        ``weight_g`` its norm (the kernel is ``weight_v``), zero bias."""
        channels, _, kernel_size = self.weight_v.shape
        self.weight_v.normal_(0.0, math.sqrt(4.0 / (kernel_size * channels)))
        self.weight_g.copy_(self.kernel_norm(self.weight_v))
        self.bias.zero_()

    @staticmethod
    def kernel_norm(weight: torch.Tensor) -> torch.Tensor:
        """The L2 norm over dimensions 0 and 1: ``(1, 1, kernel_size)``."""
        return torch.linalg.vector_norm(weight, dim=(0, 1), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_g * self.weight_v / self.kernel_norm(self.weight_v)
        out = functional.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)
        return out[..., :out.shape[-1] - self.trim]


class ConvPositionalEncoding(nn.Module):
    """Relative position by convolution: ``pos_conv`` = weight-normalised grouped convolution,
    GELU; ``(batch, frames, dim)`` -> the same shape, to be added to the frames."""

    def __init__(self, dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.pos_conv = nn.Sequential(WeightNormConv1d(dim, kernel_size, groups), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pos_conv(x.transpose(1, 2)).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate ``q_proj``, ``k_proj``, ``v_proj`` and
    ``out_proj`` (fairseq's names); ``(batch, frames, dim)`` -> the same shape."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (batch, heads, frames, dim / heads)
            return t.view(batch, frames, self.heads, dim // self.heads).transpose(1, 2)

        out = functional.scaled_dot_product_attention(
            split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
            dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(batch, frames, dim))


class TransformerLayer(nn.Module):
    """A post-norm transformer layer: ``x = self_attn_layer_norm(x + self_attn(x))``, then
    ``x = final_layer_norm(x + fc2(gelu(fc1(x))))``; dropout after the attention and the
    feed-forward (``dropout``), after the GELU (``activation_dropout``) and on the attention
    weights (``attention_dropout``)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float,
                 attention_dropout: float, activation_dropout: float):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x)))
        hidden = self.activation_dropout(functional.gelu(self.fc1(x)))
        return self.final_layer_norm(x + self.dropout(self.fc2(hidden)))


class TransformerEncoder(nn.Module):
    """``layer_norm`` (of the input: the layers are post-norm), dropout, then ``layers``."""

    def __init__(self, dim: int, depth: int, heads: int, ffn_dim: int, dropout: float,
                 attention_dropout: float, activation_dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(dim, heads, ffn_dim, dropout, attention_dropout, activation_dropout)
            for _ in range(depth))
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.layer_norm(x))
        for layer in self.layers:
            x = layer(x)
        return x


class FeatureExtractor(nn.Module):
    """``conv_layers``: for each ``(filters, kernel, stride)``, a convolution without bias, a
    GroupNorm of one group per channel on the first only, GELU. Each is an ``nn.Sequential``
    whose index 1 stands for upstream's ``Dropout(p=0)``, so that the GroupNorm keeps its
    published index 2. ``(batch, leads, samples)`` -> ``(batch, filters, frames)``."""

    def __init__(self, in_leads: int, conv_layers: Sequence[Sequence[int]]):
        super().__init__()
        self.conv_layers = nn.ModuleList()
        n_in = in_leads
        for i, (filters, kernel, stride) in enumerate(conv_layers):
            conv = nn.Conv1d(n_in, filters, kernel, stride=stride, bias=False)
            norm = [nn.GroupNorm(filters, filters)] if i == 0 else []
            self.conv_layers.append(nn.Sequential(conv, nn.Identity(), *norm, nn.GELU()))
            n_in = filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.conv_layers:
            x = layer(x)
        return x


class ECGFM(nn.Module):
    """ECG-FM's encoder: ``(batch, in_leads, samples)`` windows -> ``(batch, n_features)``
    embeddings (the mean over time of the last layer). ``conv_layers`` are the feature
    extractor's ``(filters, kernel, stride)``; ``dim``, ``depth``, ``heads``, ``ffn_dim`` the
    transformer's sizes; ``pos_conv_kernel`` and ``pos_conv_groups`` the positional
    convolution's. The defaults are the published sizes and the dropouts of upstream's
    fine-tuning config (``examples/w2v_cmsc/config/finetuning/ecg_transformer/diagnosis.yaml``).
    """

    def __init__(self, in_leads: int = 12,
                 conv_layers: Sequence[Sequence[int]] = ((256, 2, 2),) * 4, dim: int = 768,
                 depth: int = 12, heads: int = 12, ffn_dim: int = 3072,
                 pos_conv_kernel: int = 128, pos_conv_groups: int = 16, dropout: float = 0.0,
                 attention_dropout: float = 0.0, activation_dropout: float = 0.1):
        super().__init__()
        if not conv_layers or any(len(layer) != 3 for layer in conv_layers):
            raise ValueError(f"ECGFM: conv_layers needs (filters, kernel, stride) per layer, got "
                             f"{[list(layer) for layer in conv_layers]}")
        if dim % heads or dim % pos_conv_groups:
            raise ValueError(f"ECGFM: dim ({dim}) must be a multiple of heads ({heads}) and of "
                             f"pos_conv_groups ({pos_conv_groups})")
        self.feature_extractor = FeatureExtractor(in_leads, conv_layers)
        filters = int(conv_layers[-1][0])
        self.layer_norm = nn.LayerNorm(filters)
        # Upstream has no projection when the filters already match the width.
        self.post_extract_proj = nn.Linear(filters, dim) if filters != dim else None
        self.conv_pos = ConvPositionalEncoding(dim, pos_conv_kernel, pos_conv_groups)
        self.encoder = TransformerEncoder(dim, depth, heads, ffn_dim, dropout,
                                          attention_dropout, activation_dropout)
        self.depth = depth
        self.n_features = dim
        if not self.layer_norm.weight.is_meta:  # (a model on the meta device has no values)
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Upstream's start: Kaiming-normal feature convolutions and BERT's for the
        transformer's linear layers (normal, std 0.02; zero biases). (The positional
        convolution starts as :meth:`WeightNormConv1d.reset_parameters` says.)"""
        for layer in self.feature_extractor.conv_layers:
            nn.init.kaiming_normal_(layer[0].weight)
        for module in self.encoder.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 0.02)
                module.bias.zero_()

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's output, ``(batch, frames, dim)``."""
        features = self.layer_norm(self.feature_extractor(x).transpose(1, 2))
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)
        return self.encoder(features + self.conv_pos(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frames(x).mean(dim=1)

    def layer_groups(self) -> list[list[str]]:
        """Parameter-name prefixes from input to output: the embedding (feature extractor,
        its LayerNorm and projection, the positional convolution, and the encoder's
        ``layer_norm``, which normalises the first layer's input), then each transformer
        layer. The layers are post-norm: there is no final norm."""
        embedding = ["feature_extractor.", "layer_norm.", "post_extract_proj.", "conv_pos.",
                     "encoder.layer_norm."]
        return [embedding] + [[f"encoder.layers.{i}."] for i in range(self.depth)]


def from_published(state: Mapping) -> dict:
    """The encoder's state dict from a published ECG-FM file's (the pretrained or the
    fine-tuned checkpoint, or its ``"model"`` state dict; see the module docstring): the
    fine-tuned file's ``encoder.`` stripped, the :data:`PRETRAINING_ONLY` modules and the
    :data:`HEAD` dropped, 2025 weight-norm names renamed. Any other key is kept, for the
    caller's strict load to report; nothing here checks that every encoder key is present."""
    state = unwrapped_state(state, STATE_KEYS, "an ECG-FM checkpoint")
    # The fine-tuned model nests the whole encoder (whose own keys include encoder.layers.*)
    # under encoder.: its feature extractor shows it.
    finetuned = any(name.startswith(FINETUNED_PREFIX + "feature_extractor.") for name in state)
    encoder = {}
    for name, value in state.items():
        if finetuned:
            if name.startswith(HEAD):
                continue
            name = name.removeprefix(FINETUNED_PREFIX)
        if name.startswith(PRETRAINING_ONLY):
            continue
        for new, old in WEIGHT_NORM_NAMES.items():
            name = name.replace(new, old)
        encoder[name] = value
    return encoder
