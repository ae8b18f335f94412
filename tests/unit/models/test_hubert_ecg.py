"""HuBERT-ECG's encoder (ecgexp.models.hubert_ecg): the published checkpoints' keys and shapes
at each size (derived from upstream's own class, tests/data/encoders/hubert_ecg_*_keys.json),
the published parameter counts, the published layouts' mapping, and the forward pass against
``transformers.HubertModel`` on the same random weights."""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

import pytest
import torch

import ecgexp.models.hubert_ecg as hubert_ecg
from ecgexp.errors import UserError
from ecgexp.models.hubert_ecg import SIZES, HuBERTECG, from_published

DATA = Path(__file__).parents[2] / "data" / "encoders"
KEYS = {size: json.loads((DATA / f"hubert_ecg_{size}_keys.json").read_text()) for size in SIZES}
TINY = dict(hidden_size=16, layers=2, heads=2, ffn_dim=24, conv_dim=(8, 8), conv_kernel=(10, 3),
            conv_stride=(5, 2), pos_conv_kernel=4, pos_conv_groups=2, dropout=0.0,
            layerdrop=0.0)
# The fine-tuned models whose counts Hugging Face publishes carry a 164-label Linear head.
SFT_LABELS = 164


@pytest.fixture(scope="module")
def published():
    with torch.device("meta"):
        return {size: HuBERTECG(**sizes) for size, sizes in SIZES.items()}


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", list(SIZES))
def test_keys_and_shapes_are_the_published_checkpoints(published, size):
    ours = {name: list(value.shape) for name, value in published[size].state_dict().items()}
    assert ours == dict(KEYS[size]["encoder"])


def test_parameter_counts_are_the_published_ones(published):
    """Hugging Face's counts: the small and base fine-tuned with a 164-label Linear head (30.3M,
    92.9M), the pretrained large file with its pretraining-only keys (189M)."""
    for size, expected in (("small", 30.3), ("base", 92.9)):
        width = SIZES[size]["hidden_size"]
        total = n_parameters(published[size]) + width * SFT_LABELS + SFT_LABELS
        assert round(total / 1e6, 1) == expected, size
    large = n_parameters(published["large"]) + sum(
        math.prod(shape) for _, shape in KEYS["large"]["pretraining_only"])
    assert round(large / 1e6) == 189
    assert published["base"].n_features == 768


def test_from_published_keeps_exactly_the_encoder_of_the_pretrained_files():
    encoder = {name: object() for name, _ in KEYS["base"]["encoder"]}
    pretrained = {**encoder, **{name: object() for name, _ in KEYS["base"]["pretraining_only"]}}
    assert from_published(pretrained) == encoder  # model.safetensors
    assert from_published({"model_state_dict": pretrained, "model_config": None}) == encoder


@pytest.mark.parametrize("head", [["classifier.weight", "classifier.bias"],
                                  ["classifier.0.weight", "classifier.2.bias"],
                                  ["label_embedding.weight"]])
def test_from_published_strips_the_finetuned_prefix_and_head(head):
    encoder = {name: object() for name, _ in KEYS["small"]["encoder"]}
    finetuned = {**{f"hubert_ecg.{name}": value for name, value in encoder.items()},
                 "hubert_ecg.masked_spec_embed": object(), **{name: object() for name in head}}
    assert from_published({"model_state_dict": finetuned}) == encoder


def test_from_published_renames_old_weight_norm_names():
    conv = "encoder.pos_conv_embed.conv."
    state = {f"{conv}bias": 1, f"{conv}weight_g": 2, f"{conv}weight_v": 3}
    assert from_published(state) == {f"{conv}bias": 1,
                                      f"{conv}parametrizations.weight.original0": 2,
                                      f"{conv}parametrizations.weight.original1": 3}


def test_from_published_rejects_a_file_without_a_state_dict():
    with pytest.raises(UserError, match="model.weights"):
        from_published(torch.zeros(3))


def test_forward_is_transformers_hubert_on_the_leads_concatenated():
    """Upstream feeds HubertModel the window's leads one after the other and averages the
    last hidden states over time: the same weights give the same embedding."""
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    ours = HuBERTECG(**TINY).eval()
    config = HubertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=24, conv_dim=(8, 8), conv_kernel=(10, 3),
                          conv_stride=(5, 2), num_conv_pos_embeddings=4,
                          num_conv_pos_embedding_groups=2, mask_time_prob=0.0)
    reference = HubertModel(config).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 12, 50)
    sequence = torch.cat([x[:, lead] for lead in range(12)], dim=1)  # (2, 600)
    with torch.no_grad():
        expected = reference(sequence).last_hidden_state
        frames, pooled = ours.frames(x), ours(x)
    assert expected.shape == (2, 59, 16)  # 600 samples -> 119 (kernel 10, stride 5) -> 59
    torch.testing.assert_close(frames, expected)
    torch.testing.assert_close(pooled, expected.mean(dim=1))


def test_rejects_windows_of_another_lead_count():
    with pytest.raises(ValueError, match=r"\(batch, 12, samples\)"):
        HuBERTECG(**TINY)(torch.zeros(1, 8, 50))


def test_importing_the_module_does_not_import_transformers():
    tree = ast.parse(Path(hubert_ecg.__file__).read_text())
    top_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    names = [alias.name for node in top_level for alias in node.names] + [
        node.module for node in top_level if isinstance(node, ast.ImportFrom)]
    assert not any(str(name).startswith("transformers") for name in names)


def test_a_missing_transformers_asks_for_the_encoders_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(UserError, match=r"pip install 'ecgexp\[encoders\]'"):
        HuBERTECG(**TINY)


def test_layer_groups_cover_every_parameter_once_from_input_to_output():
    model = HuBERTECG(**TINY)
    groups = model.layer_groups()
    assert len(groups) == 1 + TINY["layers"]
    assert groups[-1] == [f"encoder.layers.{TINY['layers'] - 1}."]
    for name, _ in model.named_parameters():
        owners = [i for i, group in enumerate(groups) if name.startswith(tuple(group))]
        assert len(owners) == 1, name
