"""Hydra composition of every config group, and clear errors for typos."""

import pytest
import pytorch_lightning as pl
import torch
from helpers.configs import CONF_DIR
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf.errors import MissingMandatoryValue

from ecgexp.data.record_source import RecordFolderSource
from ecgexp.data.source import CombinedSource, HDF5Source
from ecgexp.models.heads import ECGNetwork
from ecgexp.tasks.build import build_network

GROUPS = ["dataset", "preprocessing", "model", "task", "trainer", "logger", "callbacks",
          "paths", "hydra", "experiment"]


def options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_primary_config_has_every_group(compose_train):
    cfg = compose_train()
    for group in ["dataset", "preprocessing", "model", "task", "trainer", "logger", "callbacks",
                  "paths"]:
        assert group in cfg, group
    assert cfg.model._target_.endswith("ResNet1d") and cfg.model.dropout == 0.8
    assert cfg.task.name == "abnormality" and len(cfg.task.objective.target_columns) == 6
    assert "n_outputs" not in cfg.model and "head" not in cfg.model  # from the objective
    assert cfg.model.in_leads == 12
    assert cfg.optimizer.lr == 1e-3 and cfg.scheduler.factor == 0.1 and cfg.scheduler.patience == 7


@pytest.mark.parametrize("option", options("model"))
def test_model_options_instantiate(compose_train, option):
    cfg = compose_train(f"model={option}")
    net = build_network(cfg)
    assert isinstance(net, ECGNetwork) and net.output_layer.out_features == 6  # six labels


@pytest.mark.parametrize("option", [o for o in options("dataset") if o != "synthetic"])
def test_dataset_options_compose(compose_train, option):
    cfg = compose_train(f"dataset={option}")
    if option == "generic":  # the user must name the files
        with pytest.raises(MissingMandatoryValue, match="tracing_files"):
            instantiate(cfg.dataset)
        cfg = compose_train(f"dataset={option}", "dataset.tracing_files=a.hdf5",
                            "dataset.labels_csv=a.csv")
    if option in ("wfdb_folder", "cinc2021", "challenge2025", "ptbxl"):  # name the folder
        with pytest.raises(MissingMandatoryValue, match="path"):
            instantiate(cfg.dataset)
        cfg = compose_train(f"dataset={option}", "dataset.path=records")
    source = instantiate(cfg.dataset)
    assert isinstance(source, (HDF5Source, CombinedSource, RecordFolderSource))
    assert source.name == option
    if isinstance(source, CombinedSource):
        assert all(isinstance(s, HDF5Source) for s in source.sources.values())
    assert len(source.leads) == 12 and source.n_samples == 4096


def test_synthetic_dataset_generates_once_into_its_own_folder(compose_train, tmp_path):
    cfg = compose_train("dataset.n_exams=40", "dataset.n_parts=2")
    directory = tmp_path / "data" / "synthetic_n40_seed0"
    assert cfg.dataset.directory == str(directory)
    instantiate(cfg.dataset)
    assert sorted(p.name for p in directory.iterdir()) == [
        "exams.csv", "exams_part0.hdf5", "exams_part1.hdf5"]
    mtime = (directory / "exams.csv").stat().st_mtime_ns
    instantiate(cfg.dataset)  # second use reads, never rewrites
    assert (directory / "exams.csv").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("group", ["trainer", "callbacks", "logger"])
def test_runtime_groups_instantiate(compose_train, group, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    for option in options(group):
        cfg = compose_train(f"{group}={option}")
        if group == "trainer":
            if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
                continue  # composes; instantiating needs a GPU
            assert isinstance(instantiate(cfg.trainer, logger=False), pl.Trainer)
        else:
            for entry in (cfg[group] or {}).values():
                instantiate(entry)


def conv_multiply_adds(model: torch.nn.Module) -> int:
    """Multiply-accumulates of every convolution for one 12 x 4096 tracing."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel() * module.weight[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, torch.nn.Conv1d)]
    model.eval()(torch.zeros(1, 12, 4096))
    for hook in hooks:
        hook.remove()
    return total


def test_small_model_is_at_least_20x_cheaper(compose_train):
    """Convolution multiply-adds, a proxy for training time."""
    default = build_network(compose_train("model=resnet1d"))
    small = build_network(compose_train("model=resnet1d_small"))
    assert conv_multiply_adds(default) / conv_multiply_adds(small) >= 20


def test_experiment_demo_selects_small_model(compose_train):
    cfg = compose_train("experiment=demo")
    assert cfg.model.blocks[0] == [16, 1024]
    assert cfg.trainer.max_epochs < 70


def test_overrides_reach_the_model(compose_train):
    cfg = compose_train("model.dropout=0.5", "model.kernel_size=9", "model=resnet1d_small")
    net = build_network(cfg)
    assert net.resblock1d_0.dropout1.p == 0.5 and net.conv1.kernel_size == (9,)


def test_every_group_folder_exists():
    for group in GROUPS:
        assert options(group), group


def test_typo_in_key_names_the_key(compose_train):
    with pytest.raises(ConfigCompositionException, match="dropuot"):
        compose_train("model.dropuot=0.5")


def test_typo_in_group_option_lists_the_options(compose_train):
    with pytest.raises(ConfigCompositionException, match="abnormalty(.|\n)*abnormality"):
        compose_train("task=abnormalty")
