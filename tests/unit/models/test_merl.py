"""``ecgexp.models.merl``: MERL's ResNet18 encoder against the published checkpoints' layout
(the key list derived from upstream's definitions, ``tests/data/encoders/
merl_resnet18_keys.json``), the parameter count derived there, the mapping of the published
layouts, and a tiny forward pass pooled by hand. Full sizes are built on the meta device."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers.records import FIXTURES

from ecgexp.errors import UserError
from ecgexp.models.merl import CONTRACT, MERLResNet18, from_published
from ecgexp.signal.leads import CANONICAL_LEADS

PUBLISHED = json.loads((FIXTURES / "encoders" / "merl_resnet18_keys.json").read_text())
ENCODER = {name: shape for name, shape in PUBLISHED["encoder"]}


@pytest.fixture(scope="module")
def full():
    with torch.device("meta"):
        return MERLResNet18()


def test_state_dict_keys_and_shapes_are_the_published_encoders(full):
    assert {name: list(t.shape) for name, t in full.state_dict().items()} == ENCODER
    assert full.n_features == 512


def test_parameter_count_is_upstreams(full):
    count = sum(p.numel() for p in full.parameters())
    assert count == PUBLISHED["n_parameters"] == CONTRACT["n_parameters"]
    # The published encoder file adds upstream's Linear(512, 10) head.
    assert count + 512 * 10 + 10 == PUBLISHED["n_parameters_with_head"]


def meta(rows):
    return {name: torch.empty(shape, device="meta") for name, shape in rows}


@pytest.mark.parametrize("layout", ["encoder_file", "whole_model", "training_checkpoint"])
def test_from_published_returns_exactly_the_encoder_keys(layout):
    encoder_file = meta(PUBLISHED["encoder"] + PUBLISHED["head"])
    whole = {**{f"ecg_encoder.{name}": t for name, t in encoder_file.items()},
             **meta(PUBLISHED["pretraining_only"]),
             # the text model's keys (not in the key list: upstream loads it from the hub)
             "lm_model.embeddings.word_embeddings.weight": torch.empty(8, 4, device="meta"),
             "lm_model.pooler.dense.bias": torch.empty(4, device="meta")}
    state = {"encoder_file": encoder_file, "whole_model": whole,
             "training_checkpoint": {"epoch": 3, "optimizer_state_dict": {},
                                     "model_state_dict": {f"module.{k}": v
                                                          for k, v in whole.items()}}}[layout]
    mapped = from_published(state)
    assert {name: list(t.shape) for name, t in mapped.items()} == ENCODER
    assert all(mapped[name] is encoder_file[name] for name in ENCODER)


def test_from_published_refuses_what_is_not_a_state_dict():
    with pytest.raises(UserError, match="model.weights"):
        from_published(torch.zeros(3))


def test_tiny_forward_is_the_mean_over_time_of_the_last_stage():
    torch.manual_seed(0)
    model = MERLResNet18(in_leads=2, widths=(4, 8), blocks=(1, 1)).eval()
    last = {}
    model.layer2.register_forward_hook(lambda module, inputs, output: last.update(map=output))
    x = torch.randn(3, 2, 50)
    with torch.no_grad():
        embedding = model(x)
    # stem stride 2, stage 2 stride 2: 50 -> 25 -> 13 samples
    assert last["map"].shape == (3, 8, 13) and embedding.shape == (3, model.n_features)
    assert torch.allclose(embedding, last["map"].sum(dim=2) / 13, atol=1e-6)


def test_a_ten_second_window_ends_as_upstreams_313_positions():
    # ECGCLIP's attention pooling is built for spacial_dim=313 positions (utils_builder.py);
    # the length depends on the strides only, so one filter per stage shows it.
    n_samples = int(CONTRACT["sampling_rate"] * CONTRACT["window_s"])
    narrow = MERLResNet18(in_leads=1, widths=(1, 1, 1, 1), blocks=(1, 1, 1, 1))
    with torch.no_grad():
        positions = narrow.feature_map(torch.zeros(1, 1, n_samples)).shape[-1]
    assert positions == 313 == math.ceil(n_samples / 16)


def test_layer_groups_cover_every_parameter_once_from_input_to_output(full):
    groups = full.layer_groups()
    assert len(groups) == 5
    owner = [[i for i, group in enumerate(groups) if name.startswith(tuple(group))]
             for name, _ in full.named_parameters()]
    assert all(len(o) == 1 for o in owner)
    order = [o[0] for o in owner]
    assert order == sorted(order) and set(order) == set(range(len(groups)))


def test_contract_names_ecgexp_leads_in_mimic_order():
    leads = CONTRACT["leads"]
    assert sorted(leads) == sorted(CANONICAL_LEADS)
    assert leads.index("AVF") < leads.index("AVL")  # MIMIC-IV-ECG's stored order
    assert CONTRACT["aggregate"] in ("mean", "max")
