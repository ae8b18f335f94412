"""``ecgexp.models.finetune``: which parameters train, at which learning rates. A linear probe
changes the head alone (the backbone's weights and BatchNorm statistics stay as they were
after a training step), layer-wise decay gives each layer group ``lr * decay ** (n - i)``
(computed here), ``freeze_until`` by index or by name, and the refusals."""

from __future__ import annotations

import functools

import pytest
import torch

from ecgexp.errors import UserError
from ecgexp.models.finetune import FineTuning
from ecgexp.models.pretrained import PretrainedEncoder
from ecgexp.models.ptbxl import FCNWang
from ecgexp.tasks.module import ECGModule
from ecgexp.tasks.objectives import MultiLabel


def encoder_net():
    """MERL's ResNet18 with two stages: layer groups stem, layer1, layer2."""
    return PretrainedEncoder(n_samples=5000, sampling_rate=500, n_outputs=2,
                             encoder="merl_resnet18",
                             encoder_options={"widths": [4, 8], "blocks": [1, 1]})


def module(net, tuning):
    objective = MultiLabel(target_columns=["a", "b"])
    return ECGModule(net, objective, functools.partial(torch.optim.SGD, lr=0.1),
                     finetune=tuning)


def test_a_linear_probe_trains_the_head_alone():
    net = encoder_net()
    tuning = FineTuning.from_config({"mode": "linear_probe"})
    lit = module(net, tuning)
    optimizer = lit.configure_optimizers()
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(net.lin.weight), id(net.lin.bias)}
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    for part in tuning.frozen_modules(net):
        part.eval()
    loss = lit.objective.loss(net(torch.randn(3, 12, 5000)), torch.ones(3, 2))
    loss.backward()
    optimizer.step()
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"lin.weight", "lin.bias"}  # running means and variances included
    assert all(not p.requires_grad for p in net.encoder.parameters())


def test_layer_wise_decay_and_freezing():
    net = encoder_net()
    groups = FineTuning.from_config({"mode": "llrd", "layer_decay": 0.5}).parameter_groups(
        net, 0.1)
    names = {id(p): n for n, p in net.named_parameters()}
    by_lr = {round(g["lr"], 12): sorted(names[id(p)].split(".")[1] for p in g["params"])
             for g in groups}
    # three layer groups: stem at 0.1 * 0.5 ** 3, layer1 at 0.5 ** 2, layer2 at 0.5; head at 0.1
    assert set(by_lr) == {0.0125, 0.025, 0.05, 0.1}
    assert set(by_lr[0.0125]) == {"conv1", "bn1"} and set(by_lr[0.025]) == {"layer1"}
    assert set(by_lr[0.05]) == {"layer2"} and set(by_lr[0.1]) == {"weight", "bias"}

    for until in (1, "encoder.layer1"):
        net = encoder_net()
        groups = FineTuning.from_config({"freeze_until": until}).parameter_groups(net, 0.1)
        trained = {n for n, p in net.named_parameters() if p.requires_grad}
        assert trained == {n for n, _ in net.named_parameters()
                           if n.startswith(("encoder.layer2.", "lin."))}
        assert {id(p) for g in groups for p in g["params"]} == {
            id(p) for n, p in net.named_parameters() if n in trained}


def test_bad_settings_are_named():
    with pytest.raises(UserError, match=r"^finetune.mode: 'probe' is not one of full, "
                                        r"linear_probe, llrd"):
        FineTuning.from_config({"mode": "probe"})
    with pytest.raises(UserError, match=r"^finetune.layer_decay: a factor in \(0, 1\]"):
        FineTuning.from_config({"layer_decay": 1.5})
    with pytest.raises(UserError, match=r"^finetune.freeze_until: a layer group 0 to 2, got 3"):
        FineTuning.from_config({"freeze_until": 3}).parameter_groups(encoder_net(), 0.1)
    with pytest.raises(UserError, match=r"^finetune.freeze_until: no layer group starts with "
                                        r"'encoder.layer7'"):
        FineTuning.from_config({"freeze_until": "encoder.layer7"}).parameter_groups(
            encoder_net(), 0.1)
    with pytest.raises(UserError, match=r"^finetune: mode=llrd .* needs a network with layer "
                                        r"groups .*; FCNWang has none"):
        FineTuning.from_config({"mode": "llrd"}).parameter_groups(FCNWang(n_samples=100), 0.1)
    with pytest.raises(UserError, match=r"^optimizer.lr: finetune=llrd scales"):
        FineTuning.from_config({"mode": "llrd"}).parameter_groups(encoder_net(), None)
