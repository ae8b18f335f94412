"""``ecgexp.models.ecgfounder``: ECGFounder's Net1D encoder against the published checkpoints'
layout (the key list derived from upstream's definitions, ``tests/data/encoders/
ecgfounder_keys.json``; the 12-lead and the single-lead model), the parameter counts derived
there, the mapping of the published layouts, and a tiny forward pass pooled by hand. Full
sizes are built on the meta device."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.records import FIXTURES

from ecgexp.errors import UserError
from ecgexp.models.ecgfounder import CONTRACT, SINGLE_LEAD_CONTRACT, ECGFounder, from_published
from ecgexp.signal.leads import CANONICAL_LEADS

PUBLISHED = json.loads((FIXTURES / "encoders" / "ecgfounder_keys.json").read_text())
ENCODER = {name: shape for name, shape in PUBLISHED["encoder"]}


def shapes(model: torch.nn.Module) -> dict:
    return {name: list(t.shape) for name, t in model.state_dict().items()}


@pytest.fixture(scope="module")
def full():
    with torch.device("meta"):
        return ECGFounder()


def test_state_dict_keys_and_shapes_are_the_published_encoders(full):
    assert shapes(full) == ENCODER
    assert full.n_features == 1024


def test_single_lead_keys_differ_only_in_the_stem():
    with torch.device("meta"):
        single = ECGFounder(in_leads=1)
    assert shapes(single) == {**ENCODER, **dict(PUBLISHED["encoder_1_lead_differs"])}
    assert sum(p.numel() for p in single.parameters()) == PUBLISHED["n_parameters_1_lead"] \
        == SINGLE_LEAD_CONTRACT["n_parameters"]


def test_parameter_count_is_upstreams(full):
    count = sum(p.numel() for p in full.parameters())
    assert count == PUBLISHED["n_parameters"] == CONTRACT["n_parameters"]
    # The published files add the dense head over the paper's 150 labels.
    assert count + 1024 * 150 + 150 == PUBLISHED["n_parameters_with_head"]


@pytest.mark.parametrize("layout", ["published_file", "bare", "data_parallel"])
def test_from_published_returns_exactly_the_encoder_keys(layout):
    tensors = {name: torch.empty(shape, device="meta")
               for name, shape in PUBLISHED["encoder"] + PUBLISHED["head"]}
    state = {"published_file": {"state_dict": tensors}, "bare": tensors,
             "data_parallel": {"state_dict": {f"module.{k}": v for k, v in tensors.items()}}}
    mapped = from_published(state[layout])
    assert {name: list(t.shape) for name, t in mapped.items()} == ENCODER
    assert all(mapped[name] is tensors[name] for name in ENCODER)


def test_from_published_refuses_what_is_not_a_state_dict():
    with pytest.raises(UserError, match="model.weights"):
        from_published(torch.zeros(3))


def test_tiny_forward_is_the_mean_over_time_of_the_last_stage():
    torch.manual_seed(0)
    model = ECGFounder(in_leads=2, base_filters=4, filters=(4, 8), blocks=(1, 2), kernel_size=3,
                       groups_width=4).eval()
    last = {}
    model.stage_list[-1].register_forward_hook(
        lambda module, inputs, output: last.update(map=output))
    x = torch.randn(3, 2, 50)
    with torch.no_grad():
        embedding = model(x)
    # stem and each stage halve the length, rounding up: 50 -> 25 -> 13 -> 7
    assert last["map"].shape == (3, 8, 7) and embedding.shape == (3, model.n_features)
    assert torch.allclose(embedding, last["map"].sum(dim=2) / 7, atol=1e-6)


def test_widths_must_fit_the_groups():
    with pytest.raises(ValueError, match="groups_width"):
        ECGFounder(filters=(64, 100), blocks=(1, 1))


def test_layer_groups_cover_every_parameter_once_from_input_to_output(full):
    groups = full.layer_groups()
    assert len(groups) == 8
    owner = [[i for i, group in enumerate(groups) if name.startswith(tuple(group))]
             for name, _ in full.named_parameters()]
    assert all(len(o) == 1 for o in owner)
    order = [o[0] for o in owner]
    assert order == sorted(order) and set(order) == set(range(len(groups)))


def test_contract_names_ecgexp_leads_in_the_standard_order():
    assert CONTRACT["leads"] == CANONICAL_LEADS
    assert SINGLE_LEAD_CONTRACT["leads"] == ("DI",)
    assert CONTRACT["aggregate"] in ("mean", "max")
