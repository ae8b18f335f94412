"""``ecgexp.models.heads.ECGNetwork``: the task's head on any backbone, on a stand-in backbone
whose features are each lead's mean; outputs recomputed here from the layers' weights; and
every task's head on every model of the config tree."""

from __future__ import annotations

import pytest
import torch
from helpers.configs import CONF_DIR, TASKS
from helpers.models import NARROW, model_names
from omegaconf import OmegaConf, open_dict

from ecgexp.models.heads import HEADS, ECGNetwork
from ecgexp.models.weights import build_model
from ecgexp.tasks.build import build_objective


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


def test_every_task_runs_on_every_model(compose_train):
    """Each task's objective builds each model's head (width, head kind, metadata fusion) and a
    forward pass gives the objective's outputs. A task's config is composed once; each model's
    file (narrowed to a tiny size) then takes the place of its model group (its interpolations
    resolve in the task's config, as Hydra's composition would)."""
    for task in TASKS:
        cfg = compose_train(f"task={task}", "dataset.n_samples=64")
        objective = build_objective(cfg.task)
        n_metadata = len(cfg.task.get("metadata_columns") or [])
        metadata = torch.zeros(2, n_metadata) if n_metadata else None
        for model in model_names():
            settings = OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml")
            if "defaults" in settings:  # a variant of another model's file
                base = OmegaConf.load(CONF_DIR / "model" / f"{settings.defaults[0]}.yaml")
                settings = OmegaConf.merge(base, settings)
                del settings["defaults"]
            tiny = OmegaConf.from_dotlist([o.removeprefix("model.") for o in NARROW[model]])
            with open_dict(cfg):
                cfg.model = OmegaConf.merge(settings, tiny)
            net = build_model(cfg.model, objective).eval()
            with torch.no_grad():
                outputs = net(torch.randn(2, cfg.model.in_leads, cfg.model.n_samples), metadata)
            assert outputs.shape == (2, len(objective.output_names)), (task, model)
            assert isinstance(net, ECGNetwork), model
            assert net.n_metadata == n_metadata and net.head == objective.head, (task, model)
