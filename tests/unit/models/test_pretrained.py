"""``ecgexp.models.pretrained``: a pretrained encoder with the task's head. A published
checkpoint (MERL's whole-model layout, written here with its pretraining-only modules) loads
into the encoder key for key with the head left random, its SHA-256 (hashed here from the
file's bytes) goes into the model card, a wrong file is named in one line, the random-encoder
baseline ignores the file, and windows are aggregated as the contract says."""

from __future__ import annotations

import hashlib

import pytest
import torch
from helpers.models import NARROW

from ecgexp.contract import starting_weights
from ecgexp.errors import UserError
from ecgexp.models.merl import MERLResNet18
from ecgexp.models.pretrained import PretrainedEncoder
from ecgexp.tasks.build import build_module, build_network

TINY = {"widths": [4, 8], "blocks": [1, 1]}


def published_merl(path, **extra):
    """A MERL ``*_ckpt.pth``: the encoder under ``ecg_encoder.`` beside the text branch."""
    encoder = MERLResNet18(**TINY)
    state = {f"ecg_encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({"ecg_encoder.linear.weight": torch.zeros(10, 8),
                  "downconv.weight": torch.zeros(2, 8, 1), "lm_model.embeddings.weight":
                  torch.zeros(3, 2), "proj_t.0.weight": torch.zeros(2, 2)}, **extra)
    torch.save(state, path)
    return encoder


def merl_config(compose_train, *overrides):
    return compose_train("experiment=demo", "model=merl_resnet18", *NARROW["merl_resnet18"],
                         *overrides)


def test_a_published_checkpoint_loads_into_the_encoder_and_is_hashed(compose_train, tmp_path):
    path = tmp_path / "resnet18_ckpt.pth"
    encoder = published_merl(path)
    cfg = merl_config(compose_train, f"model.weights={path}")
    net = build_network(cfg)
    for key, value in encoder.state_dict().items():
        assert torch.equal(net.state_dict()[f"encoder.{key}"], value), key
    assert set(net.state_dict()) == {f"encoder.{k}" for k in encoder.state_dict()} | {
        "lin.weight", "lin.bias"}
    record = starting_weights(cfg)
    assert record["file"] == str(path) and record["random_encoder"] is False
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["encoder_contract"]["sampling_rate"] == 500
    assert record["encoder_contract"]["leads"][4:6] == ["AVF", "AVL"]

    baseline = merl_config(compose_train, f"model.weights={path}",
                           "finetune.random_encoder=true")
    random = build_module(baseline).net
    assert not torch.equal(random.encoder.conv1.weight, encoder.conv1.weight)
    assert starting_weights(baseline) | {"encoder_contract": None} == {
        "file": None, "sha256": None, "random_encoder": True, "encoder_contract": None}


def test_ecgfounders_state_dict_file_loads_though_it_looks_like_a_lightning_checkpoint(
        compose_train, tmp_path):
    """ECGFounder's files are ``{"state_dict": ...}`` without ecgexp's ``net.`` keys."""
    from ecgexp.models.ecgfounder import ECGFounder

    options = {"base_filters": 4, "filters": [4, 8], "blocks": [1, 2], "kernel_size": 3,
               "groups_width": 4}
    encoder = ECGFounder(**options)
    path = tmp_path / "12_lead_ECGFounder.pth"
    torch.save({"state_dict": {**{f"module.{k}": v for k, v in encoder.state_dict().items()},
                               "module.dense.weight": torch.zeros(150, 8)}}, path)
    net = build_network(compose_train("experiment=demo", "model=ecgfounder",
                                      *NARROW["ecgfounder"], f"model.weights={path}"))
    for key, value in encoder.state_dict().items():
        assert torch.equal(net.state_dict()[f"encoder.{key}"], value), key


def test_hubert_ecgs_model_safetensors_loads_through_the_weights_only_reader(compose_train,
                                                                             tmp_path):
    """HuBERT-ECG is published as a Hugging Face ``model.safetensors``: here transformers'
    own ``HubertModel.save_pretrained`` writes one at the tiny size, and ``model.weights``
    loads each of its tensors into the encoder (read back here with ``safetensors``) but the
    pretraining-only mask embedding, the head left random, the file's SHA-256 in the model
    card; a truncated file is named in one line."""
    from safetensors.torch import load_file
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=24, conv_dim=(8, 8), conv_kernel=(10, 3),
                          conv_stride=(5, 2), num_conv_pos_embeddings=4,
                          num_conv_pos_embedding_groups=2)
    torch.manual_seed(3)
    HubertModel(config).save_pretrained(tmp_path / "hubert-ecg-tiny")
    path = tmp_path / "hubert-ecg-tiny" / "model.safetensors"
    cfg = compose_train("experiment=demo", "model=hubert_ecg", *NARROW["hubert_ecg"],
                        f"model.weights={path}")
    net = build_network(cfg)
    published = load_file(path)
    encoder = {key.removeprefix("encoder."): value for key, value in net.state_dict().items()
               if key.startswith("encoder.")}
    assert set(published) - set(encoder) == {"masked_spec_embed"}  # used in pretraining only
    assert set(encoder) <= set(published)
    for key, value in encoder.items():
        assert torch.equal(value, published[key]), key
    assert set(net.state_dict()) - {f"encoder.{key}" for key in encoder} == {"lin.weight",
                                                                            "lin.bias"}
    assert starting_weights(cfg)["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match=r"^model.weights: '.*broken.safetensors' is not a "
                                        r"complete safetensors file \(truncated or corrupt"):
        build_network(compose_train("experiment=demo", "model=hubert_ecg",
                                    *NARROW["hubert_ecg"], f"model.weights={broken}"))


def test_a_checkpoint_that_does_not_fit_is_named_in_one_line(compose_train, tmp_path):
    path = tmp_path / "resnet18_ckpt.pth"
    published_merl(path, **{"ecg_encoder.layer9.weight": torch.zeros(1)})
    state = torch.load(path)
    del state["ecg_encoder.bn1.running_mean"]
    torch.save(state, path)
    with pytest.raises(UserError) as error:
        build_network(merl_config(compose_train, f"model.weights={path}"))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"model.weights: '{path}' does not fit")
    assert "missing in the file (1): encoder.bn1.running_mean" in message
    assert "unexpected in the file (1): encoder.layer9.weight" in message
    assert "model.encoder_options: the published sizes" in message


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_window_embeddings_are_aggregated_over_the_exam(aggregate):
    """12.8 s at 500 Hz in 10 s windows every 1 s: three windows; the features are the
    mean (max) of the encoder's embeddings of the three slices, taken here."""
    net = PretrainedEncoder(n_samples=6400, sampling_rate=500, encoder="merl_resnet18",
                            encoder_options=TINY, window_stride_s=1.0, aggregate=aggregate).eval()
    x = torch.randn(2, 12, 6400)
    order = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]  # MERL's: AVF before AVL
    with torch.no_grad():
        slices = [x[:, order, s * 500:s * 500 + 5000] for s in range(3)]
        low = [s.amin(dim=(1, 2), keepdim=True) for s in slices]
        high = [s.amax(dim=(1, 2), keepdim=True) for s in slices]
        embedded = torch.stack([net.encoder((s - lo) / (hi - lo + 1e-8))
                                for s, lo, hi in zip(slices, low, high)], dim=1)
        expected = embedded.mean(dim=1) if aggregate == "mean" else embedded.amax(dim=1)
        torch.testing.assert_close(net.features(x), expected)
