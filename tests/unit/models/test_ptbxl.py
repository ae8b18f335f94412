"""``ecgexp.models.ptbxl``: the PTB-XL benchmark's backbones. Their parameter counts against
sums written layer by layer from the benchmark's definitions, the FLOPs their configs state
against ``FlopCounterMode`` (and, for the LSTMs, against an LSTM unrolled here step by step on
the model's own weights), and the default Grad-CAM layers (every task on every model:
tests/unit/models/test_heads.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import yaml
from helpers.configs import CONF_DIR
from torch.utils.flop_counter import FlopCounterMode

from ecgexp.interpret.attribution import attribute
from ecgexp.models.ptbxl import FCNWang, Inception1d, LSTM1d, ResNet1dWang, XResNet1d

MODELS = ["fcn_wang", "resnet1d_wang", "xresnet1d50", "xresnet1d101", "inception1d", "lstm",
          "lstm_bidir"]
CLASSES = {"fcn_wang": (FCNWang, {}), "resnet1d_wang": (ResNet1dWang, {}),
           "xresnet1d50": (XResNet1d, {}), "xresnet1d101": (XResNet1d, {"layers": [3, 4, 23, 3]}),
           "inception1d": (Inception1d, {}), "lstm": (LSTM1d, {}),
           "lstm_bidir": (LSTM1d, {"bidirectional": True})}
OUTPUTS = 71  # PTB-XL "all": the width the configs' counts are stated for


def bn(n):  # a BatchNorm's weight and bias
    return 2 * n


def linear(n_in, n_out):
    return n_in * n_out + n_out


# The benchmark's head on the pooled features: BN, Linear(., 128), BN(128), Linear(128, 71).
def head(pooled):
    return bn(pooled) + linear(pooled, 128) + bn(128) + linear(128, OUTPUTS)


def xresnet(layers):
    """Stem (32, 32, 64 filters, kernel 5), then bottleneck blocks: 1x1 to 64, kernel 5,
    1x1 to 256, each convolution with BatchNorm; a 1x1 identity convolution where the input is
    not 256 wide (the first block only)."""
    total = 12 * 32 * 5 + bn(32) + 32 * 32 * 5 + bn(32) + 32 * 64 * 5 + bn(64)
    n_in = 64
    for _ in range(sum(layers)):
        total += n_in * 64 + bn(64) + 64 * 64 * 5 + bn(64) + 64 * 256 + bn(256)
        total += n_in * 256 + bn(256) if n_in != 256 else 0
        n_in = 256
    return total + head(512)


def lstm_layer(n_in, h):  # four gates: input and hidden weights, two biases
    return 4 * h * (n_in + h) + 8 * h


BY_HAND = {
    "fcn_wang": 12 * 128 * 8 + bn(128) + 128 * 256 * 5 + bn(256) + 256 * 128 * 3 + bn(128)
    + head(256),
    "resnet1d_wang": 12 * 128 * 7 + bn(128)
    + 3 * (128 * 128 * 5 + bn(128) + 128 * 128 * 3 + bn(128))  # three basic blocks
    + 2 * (128 * 128 + bn(128))  # the strided stages' 1x1 shortcuts
    + head(256),
    "xresnet1d50": xresnet([3, 4, 6, 3]),
    "xresnet1d101": xresnet([3, 4, 23, 3]),
    "inception1d": sum(n_in * 32 + 32 * 32 * (39 + 19 + 9) + n_in * 32 + bn(128)
                       for n_in in [12, 128, 128, 128, 128, 128])
    + 12 * 128 + bn(128) + 128 * 128 + bn(128)  # the two shortcuts
    + head(256),
    "lstm": lstm_layer(12, 256) + lstm_layer(256, 256) + head(3 * 256),  # mean, max, last
    "lstm_bidir": 2 * lstm_layer(12, 256) + 2 * lstm_layer(512, 256) + head(3 * 512),
}


def stated(name: str) -> dict:
    """The parameter count and GFLOP per exam a model's config states in its header."""
    header = " ".join(line[2:] for line in (CONF_DIR / "model" / f"{name}.yaml").read_text()
                      .splitlines() if line.startswith("# "))
    params = int(re.search(r"([\d,]+) parameters", header)[1].replace(",", ""))
    gflops = re.search(r"GFLOP per exam: ([\d.]+) at 4096 samples .*?, ([\d.]+) at 1000", header)
    return {"params": params, "gflop_4096": float(gflops[1]), "gflop_1000": float(gflops[2])}


def network(name: str, n_samples: int = 1000, **options):
    cls, defaults = CLASSES[name]
    return cls(in_leads=12, n_samples=n_samples, n_outputs=OUTPUTS, **defaults, **options)


@pytest.mark.parametrize("name", MODELS)
def test_parameters_are_the_benchmarks_and_the_configs_state_them(name):
    net = network(name)
    assert sum(p.numel() for p in net.parameters()) == BY_HAND[name] == stated(name)["params"]
    config = yaml.safe_load((CONF_DIR / "model" / f"{name}.yaml").read_text())
    assert config["_target_"] == f"ecgexp.models.ptbxl.{type(net).__name__}"
    # the network the config's own architecture arguments build is the one counted
    arguments = {key: value for key, value in config.items() if key not in (
        "_target_", "in_leads", "n_samples", "n_metadata", "weights", "weights_trusted")}
    built = type(net)(in_leads=12, n_samples=1000, n_outputs=OUTPUTS, **arguments)
    assert sum(p.numel() for p in built.parameters()) == BY_HAND[name]


def counted_flops(net, n_samples: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.eval()(torch.zeros(1, 12, n_samples))
    return counter.get_total_flops()


@pytest.mark.parametrize("name", ["fcn_wang", "resnet1d_wang", "xresnet1d50", "xresnet1d101",
                                  "inception1d"])
def test_the_stated_flops_are_counted(name):
    for n_samples in (1000, 4096):
        counted = counted_flops(network(name, n_samples), n_samples) / 1e9
        assert counted == pytest.approx(stated(name)[f"gflop_{n_samples}"], rel=5e-3)


def unrolled_lstm(lstm: torch.nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """``(batch, time, features)`` outputs of ``lstm`` computed a step at a time from its
    weights (gates in torch's order: input, forget, cell, output)."""
    directions = 2 if lstm.bidirectional else 1
    for layer in range(lstm.num_layers):
        outputs = []
        for direction in range(directions):
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            w_ih, w_hh = getattr(lstm, f"weight_ih_{suffix}"), getattr(lstm, f"weight_hh_{suffix}")
            bias = getattr(lstm, f"bias_ih_{suffix}") + getattr(lstm, f"bias_hh_{suffix}")
            h = c = torch.zeros(x.shape[0], lstm.hidden_size)
            steps = range(x.shape[1])[::-1] if direction else range(x.shape[1])
            out = [None] * x.shape[1]
            for t in steps:
                gates = x[:, t] @ w_ih.T + h @ w_hh.T + bias
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = out[t] = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(torch.stack(out, dim=1))
        x = torch.cat(outputs, dim=2)
    return x


@pytest.mark.parametrize("name", ["lstm", "lstm_bidir"])
def test_the_lstm_is_an_lstm_and_its_stated_flops_are_its_matrix_products(name):
    net = network(name, n_samples=6).eval()
    x = torch.randn(2, 12, 6)
    with torch.no_grad():
        expected = unrolled_lstm(net.lstm, x.transpose(1, 2))
        np.testing.assert_allclose(net.body(x).numpy(), expected.numpy(), atol=1e-5)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unrolled_lstm(net.lstm, x[:1].transpose(1, 2))
    per_step = counter.get_total_flops() / 6
    head_flops = counted_flops(net, 6)  # FlopCounterMode sees the head, not torch's fused LSTM
    for n_samples in (1000, 4096):
        assert (per_step * n_samples + head_flops) / 1e9 == pytest.approx(
            stated(name)[f"gflop_{n_samples}"], rel=5e-3)


@pytest.mark.parametrize("name", ["fcn_wang", "resnet1d_wang", "xresnet1d50", "inception1d"])
def test_grad_cam_explains_the_last_convolutional_layer_by_default(name):
    net = network(name, n_samples=128).eval()
    maps = attribute("gradcam", net, torch.randn(2, 12, 128), 0, layer=net.gradcam_layer)
    assert maps.shape == (2, 12, 128) and np.isfinite(maps).all()
    assert network(name, 128).gradcam_layer in dict(net.named_modules())
    assert LSTM1d(n_samples=16).gradcam_layer is None


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"^model.depth: a multiple of 3 is needed"):
        Inception1d(depth=4)
    with pytest.raises(ValueError, match=r"^model.ps_head: a drop probability in \[0, 1\)"):
        FCNWang(ps_head=1.0)
    with pytest.raises(ValueError, match=r"^model.filters and model.kernel_sizes: one kernel "):
        FCNWang(filters=[8, 8], kernel_sizes=[3])
    with pytest.raises(ValueError, match=r"^FCNWang expects \(batch, 12, 100\) tracings, got "
                                         r"\(1, 12, 99\)"):
        FCNWang(n_samples=100)(torch.zeros(1, 12, 99))
