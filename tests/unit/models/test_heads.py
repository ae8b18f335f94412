"""``ecgexp.models.heads.ECGNetwork``: the task's head on any backbone, on a stand-in backbone
whose features are each lead's mean; outputs recomputed here from the layers' weights."""

from __future__ import annotations

import pytest
import torch

from ecgexp.models.heads import HEADS, ECGNetwork


class MeanLeads(ECGNetwork):
    """Features: the mean of each lead over time, ``(batch, leads)``."""

    def __init__(self, n_outputs=3, **options):
        super().__init__(in_leads=4, n_samples=10, **options)
        self.build_head(4, n_outputs, options.get("gaussian_hidden"))

    def features(self, x):
        self.check_input(x)
        return x.mean(dim=2)


X = torch.arange(80, dtype=torch.float32).reshape(2, 4, 10) / 40
FEATURES = X.mean(dim=2)


def test_linear_head():
    net = MeanLeads()
    expected = FEATURES @ net.lin.weight.T + net.lin.bias
    torch.testing.assert_close(net(X), expected)
    assert net.output_layer is net.lin


def test_gaussian_head_gives_means_then_log_variances():
    net = MeanLeads(head="gaussian", gaussian_hidden=5)
    means = FEATURES @ net.lin.weight.T + net.lin.bias
    hidden = torch.relu(FEATURES @ net.lin_log_var_1.weight.T + net.lin_log_var_1.bias)
    log_var = hidden @ net.lin_log_var_2.weight.T + net.lin_log_var_2.bias
    torch.testing.assert_close(net(X), torch.cat([means, log_var], dim=1))
    assert net.lin_log_var_1.out_features == 5 and net.output_layer is None


def test_coral_head_shares_one_weight_vector_with_decreasing_biases():
    net = MeanLeads(n_outputs=4, head="coral")
    torch.testing.assert_close(net.lin_bias, torch.tensor([[1.0, 0.75, 0.5, 0.25]]))
    score = FEATURES @ net.lin.weight.T  # (batch, 1), no bias of its own
    torch.testing.assert_close(net(X), score + net.lin_bias)


def test_metadata_is_fused_with_the_published_layer_names():
    net = MeanLeads(n_outputs=2, n_metadata=3)
    metadata = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]])
    fused = torch.cat([FEATURES, net.meta_to_features(metadata)], dim=1)
    torch.testing.assert_close(net(X, metadata), net.combined_lin(fused))
    assert net.combined_lin[0].in_features == 4 + 512
    assert net.combined_lin[0].out_features == (4 + 512) // 2
    assert isinstance(net.lin, torch.nn.Identity) and net.output_layer is net.combined_lin[-1]
    names = {name.split(".")[0] for name, _ in net.named_parameters()}
    assert names == {"meta_to_features", "combined_lin"}


def test_wrong_inputs_and_settings_are_named():
    with pytest.raises(ValueError, match=r"^MeanLeads was built without metadata "
                                         r"\(model.n_metadata=0\) but metadata was given$"):
        MeanLeads()(X, torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"^MeanLeads expects metadata of shape \(2, 3\) "
                                         r"\(model.n_metadata=3\), got None$"):
        MeanLeads(n_metadata=3)(X)
    with pytest.raises(ValueError, match=r"^MeanLeads expects \(batch, 4, 10\) tracings, got "
                                         r"\(2, 4, 9\)$"):
        MeanLeads()(X[:, :, :9])
    with pytest.raises(ValueError, match=rf"^model.head: expected one of {', '.join(HEADS)}, "
                                         rf"got 'cox'$"):
        MeanLeads(head="cox")
    with pytest.raises(ValueError, match=r"^model.gaussian_hidden: a width >= 1 for "
                                         r"head=gaussian is needed, got 4 with head=linear$"):
        MeanLeads(gaussian_hidden=4)
    with pytest.raises(ValueError, match=r"^model.n_metadata: a count >= 0 is needed, got -1$"):
        MeanLeads(n_metadata=-1)
