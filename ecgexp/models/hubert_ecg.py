"""``hubert_ecg``: the encoder of HuBERT-ECG (Coppola et al., "HuBERT-ECG as a self-supervised
foundation model for broad and scalable cardiac applications", medRxiv
10.1101/2024.11.14.24317328, 2024; github.com/Edoar-do/HuBERT-ECG), a HuBERT encoder
pretrained on 9.1 million 12-lead ECGs. Upstream's ``code/hubert_ecg.py`` ``HuBERTECG`` is a
``transformers.HubertModel`` with pretraining heads; its sizes are those of ``code/pretrain.py``
with the feature encoder of ``--downsampling_factor=5`` (kernels 10, 3, 3, 2, 2; strides 4, 2,
2, 2, 2; 512 filters). This module builds ``transformers``' own HuBERT modules (imported when
an encoder is built, so that importing ecgexp does not import ``transformers``).

The input is upstream's own layout: the 12 leads of a 5 s window at 100 Hz concatenated lead
after lead into one sequence of 6000 samples (``code/dataset.py``: ``reshape(-1)`` of the
``(12, samples)`` window), which the feature encoder turns into 93 frames; then
``feature_projection`` (LayerNorm, Linear to the width), and the post-norm transformer
``encoder`` (positional convolution of kernel 128 in 16 groups, LayerNorm, the layers).

Pooling: upstream's fine-tuning (``code/hubert_ecg_classification.py``
``HuBERTForECGClassification``) averages the last layer's output over time.

Published checkpoints (CC BY-NC 4.0: loadable, never shipped with ecgexp): Hugging Face
Edoardo-BS/hubert-ecg-{small,base,large} (``model.safetensors``, also ``hubert_ecg_{size}.pt``
in Edoardo-BS/HuBERT-ECG, ``{"model_state_dict": ..., "model_config": ...}``) hold these keys
plus the :data:`PRETRAINING_ONLY` ones; a fine-tuned file of upstream's ``finetune.py`` holds
them under ``hubert_ecg.`` beside its :data:`HEAD`. Files saved with torch < 2.1 name the
positional convolution's weight norm ``weight_g``/``weight_v`` (:data:`WEIGHT_NORM_NAMES`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ecgexp.checkpoints import unwrapped_state
from ecgexp.errors import UserError

# The published sizes (code/pretrain.py --largeness).
SIZES = {
    "small": {"hidden_size": 512, "layers": 8, "heads": 8, "ffn_dim": 2048},
    "base": {"hidden_size": 768, "layers": 12, "heads": 12, "ffn_dim": 3072},
    "large": {"hidden_size": 960, "layers": 16, "heads": 12, "ffn_dim": 3840},
}
# Keys of the published pretrained model that only pretraining uses: the mask embedding and,
# per k-means target, the projection and the cluster embeddings.
PRETRAINING_ONLY = ("masked_spec_embed", "final_proj.", "label_embedding.")
# A fine-tuned model's head: a Linear (or Linear, activation, Linear) or a label embedding.
HEAD = ("classifier.", "label_embedding.")
# Wrappers of a published file around the state dict, and the fine-tuned model's prefix.
STATE_KEYS = ("model_state_dict", "state_dict")
FINETUNED_PREFIX = "hubert_ecg."
# Weight-norm names of torch < 2.1 -> those of torch's parametrizations (transformers' now).
WEIGHT_NORM_NAMES = {".weight_g": ".parametrizations.weight.original0",
                     ".weight_v": ".parametrizations.weight.original1"}

CONTRACT = {
    "sampling_rate": 100,
    "window_s": 5.0,
    # The standard order, as the sources store it (upstream does not reorder leads).
    "leads": ("DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"),
    "units": "mV",
    # code/utils.py ecg_preprocessing, per lead at the record's own rate: biosppy's FIR
    # band-pass (int(0.3 * fs) taps, forward-backward), then resampling to 500 Hz (FFT);
    # code/dataset.py then decimates the concatenated leads by 5 to 100 Hz (scipy.signal.decimate:
    # an order-8 Chebyshev low-pass, zero-phase), across the leads' junctions.
    "filter": {"bandpass_hz": (0.05, 47.0), "taps_s": 0.3, "zero_phase": True},
    # code/utils.py scaling: 2 * (x - min) / (max - min + 1e-8) - 1 per lead over the whole
    # record (after the band-pass), before the 5 s window is cut.
    "normalisation": "per-lead min-max to [-1, 1] per record (before the 5 s window is cut)",
    # The EncoderInput name asked for: each lead of the window to [-1, 1] (2 * (x - min) /
    # (max - min + 1e-8) - 1); ecgexp.models.encoder_input has no such step yet.
    "normalise": "minmax_lead",
    # code/test.py --tta_aggregation (default mean) over random crops' probabilities.
    "aggregate": "mean",
    "licence": "CC BY-NC 4.0 (weights and code): non-commercial use only; ecgexp never ships "
               "the weights",
    "weights_url": {size: f"https://huggingface.co/Edoardo-BS/hubert-ecg-{size}"
                    for size in SIZES},
    # The encoder's parameters, derived from upstream's definition at each size.
    "n_parameters": {"small": 30_209_152, "base": 92_798_080, "large": 187_643_776},
    # Hugging Face's counts of the published tensors: the pretrained large file (the encoder
    # plus the PRETRAINING_ONLY keys with 1000 clusters), and the small and base encoders
    # fine-tuned with a 164-label Linear head (Edoardo-Coppola/HuBERT-ECG-SFT-CardioLearning-*).
    "published_parameters": {"small": "30.3M (fine-tuned, 164-label head)",
                             "base": "92.9M (fine-tuned, 164-label head)",
                             "large": "189M (pretrained file)"},
}


class HuBERTECG(nn.Module):
    """HuBERT-ECG's encoder: ``(batch, in_leads, samples)`` windows at 100 Hz -> ``(batch,
    n_features)`` embeddings (the mean over time of the last layer). ``hidden_size``,
    ``layers``, ``heads``, ``ffn_dim`` are the transformer's sizes (:data:`SIZES`; the
    defaults are base's), ``conv_dim``, ``conv_kernel``, ``conv_stride`` the feature encoder's
    and ``pos_conv_kernel``, ``pos_conv_groups`` the positional convolution's. ``dropout`` is
    the hidden, attention and activation dropout, ``layerdrop`` the probability of skipping a
    layer in training (upstream's fine-tuning defaults, 0.1 and 0.1)."""

    def __init__(self, in_leads: int = 12, hidden_size: int = 768, layers: int = 12,
                 heads: int = 12, ffn_dim: int = 3072, conv_dim: Sequence[int] = (512,) * 5,
                 conv_kernel: Sequence[int] = (10, 3, 3, 2, 2),
                 conv_stride: Sequence[int] = (4, 2, 2, 2, 2), pos_conv_kernel: int = 128,
                 pos_conv_groups: int = 16, dropout: float = 0.1, layerdrop: float = 0.1):
        super().__init__()
        if not len(conv_dim) == len(conv_kernel) == len(conv_stride):
            raise ValueError(f"HuBERTECG: one conv_dim, conv_kernel and conv_stride per layer, "
                             f"got {list(conv_dim)}, {list(conv_kernel)}, {list(conv_stride)}")
        try:
            from transformers import HubertConfig, HubertModel
        except ImportError as error:
            raise UserError("model=hubert_ecg: needs the transformers package; install it "
                            "with pip install 'ecgexp[encoders]'") from error
        config = HubertConfig(
            hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=ffn_dim, conv_dim=tuple(conv_dim), conv_kernel=tuple(conv_kernel),
            conv_stride=tuple(conv_stride), num_conv_pos_embeddings=pos_conv_kernel,
            num_conv_pos_embedding_groups=pos_conv_groups, hidden_dropout=dropout,
            attention_dropout=dropout, activation_dropout=dropout, feat_proj_dropout=0.0,
            layerdrop=layerdrop, mask_time_prob=0.0, mask_feature_prob=0.0)
        hubert = HubertModel(config)
        # HubertModel's modules, without its masking (no mask embedding when nothing masks).
        self.feature_extractor = hubert.feature_extractor
        self.feature_projection = hubert.feature_projection
        self.encoder = hubert.encoder
        self.in_leads, self.layers = in_leads, layers
        self.n_features = hidden_size

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's output, ``(batch, frames, hidden_size)``, of the leads of ``x``
        concatenated lead after lead."""
        if x.ndim != 3 or x.shape[1] != self.in_leads:
            raise ValueError(f"HuBERTECG: (batch, {self.in_leads}, samples) windows are "
                             f"needed, got {tuple(x.shape)}")
        features = self.feature_extractor(x.reshape(x.shape[0], -1)).transpose(1, 2)
        return self.encoder(self.feature_projection(features)).last_hidden_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frames(x).mean(dim=1)

    def layer_groups(self) -> list[list[str]]:
        """Parameter-name prefixes from input to output: the embedding (feature encoder,
        feature projection, positional convolution, and the encoder's ``layer_norm``, which
        normalises the first layer's input), then each transformer layer. The layers are
        post-norm: there is no final norm."""
        embedding = ["feature_extractor.", "feature_projection.", "encoder.pos_conv_embed.",
                     "encoder.layer_norm."]
        return [embedding] + [[f"encoder.layers.{i}."] for i in range(self.layers)]


def from_published(state: Mapping) -> dict:
    """The encoder's state dict from a published HuBERT-ECG file's (a pretrained
    ``model.safetensors`` state dict or ``.pt`` file, or a fine-tuned file; see the module
    docstring): unwrapped, the fine-tuned ``hubert_ecg.`` stripped, the
    :data:`PRETRAINING_ONLY` keys and the :data:`HEAD` dropped, torch < 2.1 weight-norm names
    renamed. Any other key is kept, for the caller's strict load to report; nothing here
    checks that every encoder key is present."""
    state = unwrapped_state(state, STATE_KEYS, "a HuBERT-ECG checkpoint")
    encoder = {}
    for name, value in state.items():
        name = name.removeprefix(FINETUNED_PREFIX)
        if name.startswith(PRETRAINING_ONLY + HEAD):
            continue
        for old, new in WEIGHT_NORM_NAMES.items():
            if name.endswith(old):
                name = name[:-len(old)] + new
        encoder[name] = value
    return encoder
