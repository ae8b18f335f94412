"""``ecgexp.models.windows``: random crops in training, sliding windows at evaluation. The crop
each exam gets is found again in the input (its start drawn from torch's generator), the
evaluation outputs equal the network run here on each window by hand and aggregated, metadata
follows its exam's windows, and ``model.crop`` builds it from a config."""

from __future__ import annotations

import pytest
import torch

from ecgexp.models.ptbxl import FCNWang
from ecgexp.models.windows import SlidingWindows


class Recorder(torch.nn.Module):
    """Returns each input's first sample of lead 0 and the sum of its metadata."""

    in_leads, head, n_metadata = 2, "linear", 1

    def forward(self, x, metadata=None):
        self.seen = x
        return torch.stack([x[:, 0, 0], metadata[:, 0]], dim=1)


def test_training_takes_one_random_crop_of_each_exam():
    wrapped = SlidingWindows(Recorder(), n_samples=1000, window=250, stride=125).train()
    x = torch.arange(1000.0).repeat(3, 2, 1) + torch.tensor([0.0, 1e4, 2e4])[:, None, None]
    torch.manual_seed(0)
    wrapped(x, torch.zeros(3, 1))
    starts = torch.randint(0, 751, (3,), generator=torch.Generator().manual_seed(0))
    seen = wrapped.net.seen
    assert seen.shape == (3, 2, 250)
    for exam in range(3):
        start = int(seen[exam, 0, 0] - exam * 1e4)
        assert torch.equal(seen[exam], x[exam, :, start:start + 250])
    assert torch.equal(seen[:, 0, 0] - torch.tensor([0.0, 1e4, 2e4]), starts.float())


@pytest.mark.parametrize("aggregate", ["max", "mean"])
def test_evaluation_aggregates_the_outputs_of_windows_every_stride(aggregate):
    torch.manual_seed(0)
    net = FCNWang(n_samples=250, n_outputs=3, filters=[4, 4, 4], n_metadata=2).eval()
    wrapped = SlidingWindows(net, n_samples=1000, window=250, stride=125,
                             aggregate=aggregate).eval()
    x, metadata = torch.randn(2, 12, 1000), torch.randn(2, 2)
    with torch.no_grad():
        each = torch.stack([net(x[:, :, s:s + 250], metadata) for s in range(0, 751, 125)])
        expected = each.amax(dim=0) if aggregate == "max" else each.mean(dim=0)
        torch.testing.assert_close(wrapped(x, metadata), expected)
    assert wrapped.n_windows == 7 and wrapped.output_layer is net.output_layer


def test_model_crop_wraps_the_configured_network(compose_train):
    from ecgexp.tasks.build import build_network

    cfg = compose_train("experiment=demo", "model=fcn_wang", "model.filters=[4,4,4]",
                        "+model.crop={window:1024,stride:512,aggregate:mean}")
    net = build_network(cfg)
    assert isinstance(net, SlidingWindows) and net.net.n_samples == 1024
    assert (net.n_samples, net.n_windows, net.aggregate) == (4096, 7, "mean")
    assert set(net.state_dict()) == {f"net.{k}" for k in net.net.state_dict()}
    with pytest.raises(ValueError, match=r"^model.crop.window: 1 to the exam's 4096 samples"):
        SlidingWindows(net.net, 4096, 5000, 100)
