"""``ecgexp-export``: a trained model's network as an ONNX or TorchScript file, with its input
contract beside it."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ecgexp.errors import reported
from ecgexp.startup import CONFIG_PATH, bare_arguments_to_override, groups_not_null


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
@reported
def _export(cfg: DictConfig) -> None:
    from ecgexp.inference.export import export as export_run

    export_run(cfg)


def export() -> None:
    """``ecgexp-export run=<run> format=onnx|torchscript`` (or ``ecgexp-export <run> ...``): the
    run's network, checked against PyTorch, into ``<run>/export/``. A first argument without
    ``=`` is the run."""
    bare_arguments_to_override("run")
    _export()
