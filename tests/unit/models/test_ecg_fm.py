"""ECG-FM's encoder (ecgexp.models.ecg_fm): the published checkpoint's keys and shapes (derived
from fairseq-signals' own classes, tests/data/encoders/ecg_fm_keys.json), the published
parameter counts, the published layouts' mapping, and a tiny forward pass checked against
torch's own transformer layer and weight normalisation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from ecgexp.errors import UserError
from ecgexp.models.ecg_fm import ECGFM, TransformerLayer, WeightNormConv1d, from_published

KEYS = json.loads((Path(__file__).parents[2] / "data" / "encoders" / "ecg_fm_keys.json")
                  .read_text())
LARGE = dict(dim=1024, depth=24, heads=16, ffn_dim=4096)
TINY = dict(conv_layers=((8, 2, 2),) * 2, dim=16, depth=2, heads=2, ffn_dim=24,
            pos_conv_kernel=4, pos_conv_groups=2)


def shapes(model: nn.Module) -> dict:
    return {name: list(value.shape) for name, value in model.state_dict().items()}


def n_parameters(pairs) -> int:
    return sum(math.prod(shape) for _, shape in pairs)


@pytest.fixture(scope="module")
def published():
    with torch.device("meta"):
        return ECGFM(), ECGFM(**LARGE)


def test_keys_and_shapes_are_the_published_checkpoints(published):
    base, large = published
    assert shapes(base) == dict(KEYS["encoder"])
    assert shapes(large) == dict(KEYS["large"]["encoder"])


def test_parameter_counts_are_the_published_ones(published):
    """The published counts are the whole pretraining model's: the encoder plus the
    pretraining-only modules (the README's 90.9 million; 311,940,352 for the paper's large)."""
    base, large = published
    base_total = sum(p.numel() for p in base.parameters()) + n_parameters(
        KEYS["pretraining_only"])
    assert round(base_total / 1e6, 1) == 90.9
    assert sum(p.numel() for p in large.parameters()) + n_parameters(
        KEYS["large"]["pretraining_only"]) == 311_940_352
    assert base.n_features == 768


def test_from_published_keeps_exactly_the_encoder_of_the_pretrained_file():
    encoder = {name: object() for name, _ in KEYS["encoder"]}
    model = {**encoder, **{name: object() for name, _ in KEYS["pretraining_only"]}}
    assert from_published({"model": model, "cfg": {}}) == encoder


def test_from_published_strips_the_finetuned_files_encoder_prefix_and_head():
    encoder = {name: object() for name, _ in KEYS["encoder"]}
    finetuned = {**{f"encoder.{name}": value for name, value in encoder.items()},
                 "proj.weight": object(), "proj.bias": object()}
    assert from_published({"model": finetuned}) == encoder


def test_from_published_renames_the_2025_weight_norm_names():
    conv = "conv_pos.pos_conv.0."
    state = {"feature_extractor.conv_layers.0.0.weight": 1, f"{conv}bias": 2,
             f"{conv}parametrizations.weight.original0": 3,
             f"{conv}parametrizations.weight.original1": 4}
    assert from_published(state) == {"feature_extractor.conv_layers.0.0.weight": 1,
                                     f"{conv}bias": 2, f"{conv}weight_g": 3,
                                     f"{conv}weight_v": 4}


def test_from_published_rejects_a_file_without_a_state_dict():
    with pytest.raises(UserError, match="model.weights"):
        from_published(torch.zeros(3))


def test_tiny_forward_shape_and_batch_independence():
    torch.manual_seed(0)
    model = ECGFM(**TINY).eval()
    x = torch.randn(3, 12, 64)
    with torch.no_grad():
        frames, pooled = model.frames(x), model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(3)])
    assert frames.shape == (3, 16, 16)  # 64 samples -> 32 -> 16 frames (kernel 2, stride 2)
    assert pooled.shape == (3, model.n_features)
    torch.testing.assert_close(pooled, frames.mean(dim=1))
    torch.testing.assert_close(alone, pooled, rtol=1e-5, atol=1e-6)


def test_transformer_layer_is_torchs_post_norm_layer():
    """fairseq's post-norm layer is torch's nn.TransformerEncoderLayer(norm_first=False) with
    GELU: the same weights give the same output."""
    torch.manual_seed(0)
    ours = TransformerLayer(16, 2, 24, 0.0, 0.0, 0.0).eval()
    torchs = nn.TransformerEncoderLayer(16, 2, 24, 0.0, activation="gelu", batch_first=True,
                                        norm_first=False).eval()
    attention = ours.self_attn
    with torch.no_grad():
        torchs.self_attn.in_proj_weight.copy_(torch.cat(
            [attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]))
        torchs.self_attn.in_proj_bias.copy_(torch.cat(
            [attention.q_proj.bias, attention.k_proj.bias, attention.v_proj.bias]))
        torchs.self_attn.out_proj.load_state_dict(attention.out_proj.state_dict())
        torchs.linear1.load_state_dict(ours.fc1.state_dict())
        torchs.linear2.load_state_dict(ours.fc2.state_dict())
        torchs.norm1.load_state_dict(ours.self_attn_layer_norm.state_dict())
        torchs.norm2.load_state_dict(ours.final_layer_norm.state_dict())
        x = torch.randn(2, 5, 16)
        torch.testing.assert_close(ours(x), torchs(x))


def test_positional_convolution_is_torchs_weight_norm():
    """weight_g and weight_v as torch's weight_norm(dim=2) uses them; an even kernel drops the
    last output (upstream's SamePad)."""
    torch.manual_seed(0)
    ours = WeightNormConv1d(8, 4, 2)
    with torch.no_grad():
        ours.weight_g.mul_(torch.rand_like(ours.weight_g) + 0.5)
        ours.bias.normal_()
    conv = nn.Conv1d(8, 8, 4, padding=2, groups=2)
    conv = nn.utils.parametrizations.weight_norm(conv, dim=2)
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(ours.weight_g)
        conv.parametrizations.weight.original1.copy_(ours.weight_v)
        conv.bias.copy_(ours.bias)
        x = torch.randn(2, 8, 10)
        torch.testing.assert_close(ours(x), conv(x)[..., :-1])


def test_layer_groups_cover_every_parameter_once_from_input_to_output():
    model = ECGFM(**TINY)
    groups = model.layer_groups()
    assert len(groups) == 1 + TINY["depth"]
    assert groups[-1] == [f"encoder.layers.{TINY['depth'] - 1}."]
    for name, _ in model.named_parameters():
        owners = [i for i, group in enumerate(groups) if name.startswith(tuple(group))]
        assert len(owners) == 1, name
