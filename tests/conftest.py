"""Shared fixtures: composing the real config tree, a small synthetic dataset."""

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

import ecgexp  # noqa: F401  (registers the OmegaConf resolvers)

CONF_DIR = Path(ecgexp.__file__).parent / "conf"
# The shared real files (../shared/fixtures beside the clone, as in CI); ECGEXP_FIXTURES moves it.
FIXTURES = Path(os.environ.get("ECGEXP_FIXTURES",
                               Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"))


@pytest.fixture
def compose_train(tmp_path):
    """Composes ``train.yaml`` with overrides; data and outputs go under ``tmp_path``."""

    def _compose(*overrides: str, config_name: str = "train"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=[f"paths.data_dir={tmp_path / 'data'}",
                                                  f"paths.log_dir={tmp_path / 'outputs'}",
                                                  *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
