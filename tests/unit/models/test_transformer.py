"""``ecgexp.models.transformer``: the 1-D transformer encoder. Its parameters and FLOPs against
sums written here from the architecture, the counts its config states, patch padding, and
Grad-CAM on the patch embedding."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from helpers.configs import CONF_DIR
from torch.utils.flop_counter import FlopCounterMode

from ecgexp.interpret.attribution import attribute
from ecgexp.models.transformer import Transformer1d

OUTPUTS = 71


def by_hand(n_samples: int, patch=16, dim=128, depth=4, ffn=256) -> tuple[int, int]:
    """Parameters and forward FLOPs (2 per multiply-add) of the default transformer1d."""
    patches = math.ceil(n_samples / patch)
    layer = (3 * dim * dim + 3 * dim) + (dim * dim + dim) + 2 * dim  # attention, norm
    layer += (dim * ffn + ffn) + (ffn * dim + dim) + 2 * dim  # feed-forward, norm
    params = (12 * patch * dim + dim) + patches * dim + depth * layer + 2 * dim \
        + dim * OUTPUTS + OUTPUTS
    flops = 2 * 12 * patch * dim * patches  # the patch embedding
    flops += depth * 2 * (patches * dim * 4 * dim  # q, k, v and the output projection
                          + 2 * patches * patches * dim  # scores and their weighted sum
                          + 2 * patches * dim * ffn)  # the feed-forward layer
    return params, flops + 2 * dim * OUTPUTS


def stated() -> dict:
    header = " ".join(line[2:] for line in (CONF_DIR / "model" / "transformer1d.yaml")
                      .read_text().splitlines() if line.startswith("# "))
    params = re.search(r"([\d,]+) parameters at 4096 samples .*?, ([\d,]+) at 1000", header)
    gflops = re.search(r"GFLOP per exam: ([\d.]+) at 4096 samples .*?, ([\d.]+) at 1000", header)
    return {4096: (int(params[1].replace(",", "")), float(gflops[1])),
            1000: (int(params[2].replace(",", "")), float(gflops[2]))}


@pytest.mark.parametrize("n_samples", [4096, 1000])
def test_parameters_and_flops_are_the_architectures_and_the_config_states_them(n_samples):
    net = Transformer1d(n_samples=n_samples, n_outputs=OUTPUTS)
    params, flops = by_hand(n_samples)
    assert sum(p.numel() for p in net.parameters()) == params == stated()[n_samples][0]
    # In eval mode torch's CPU attention kernel escapes FlopCounterMode: count in train mode.
    with FlopCounterMode(display=False) as counter:
        net.train()(torch.zeros(1, 12, n_samples))
    assert counter.get_total_flops() == flops
    assert flops / 1e9 == pytest.approx(stated()[n_samples][1], rel=5e-3)


def test_the_last_patch_is_padded_with_zeros():
    """1000 samples make 63 patches of 16: the last holds 8 samples and 8 zeros, so the
    outputs of a tracing equal those of the same tracing padded by hand to 1008 samples."""
    torch.manual_seed(0)
    net = Transformer1d(n_samples=1000, dim=16, depth=1, heads=2).eval()
    padded = Transformer1d(n_samples=1008, dim=16, depth=1, heads=2).eval()
    padded.load_state_dict(net.state_dict())
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(),
                                   padded(torch.nn.functional.pad(x, (0, 8))).numpy(), atol=1e-6)
    assert net.n_patches == 63


def test_grad_cam_explains_the_patch_embedding():
    net = Transformer1d(n_samples=128, dim=16, depth=1, heads=2).eval()
    maps = attribute("gradcam", net, torch.randn(2, 12, 128), 0, layer=net.gradcam_layer)
    assert maps.shape == (2, 12, 128) and np.isfinite(maps).all()


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"^model.dim: a multiple of model.heads \(3\)"):
        Transformer1d(dim=16, heads=3)
    with pytest.raises(ValueError, match=r"^model.patch_size: a patch of 1 to n_samples \(8\)"):
        Transformer1d(n_samples=8, patch_size=16)
