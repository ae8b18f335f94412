"""The Python API, for notebooks and scripts.

Use a trained model::

    from ecgexp.api import load_model
    model = load_model("outputs/chagas/runs/<run>")        # or a .ckpt file, anywhere
    model.contract        # leads, sampling_rate_hz, n_samples, units (mV), signal steps
    table = model.predict(tracings)   # (batch, leads, samples) float mV -> pandas DataFrame

Train from Python::

    from ecgexp.api import compose_config, train
    cfg = compose_config("task=age", "trainer.max_epochs=2")   # like the command line
    metrics = train(cfg)               # {"test/age/mae": ..., ...}; cfg.paths.output_dir

``load_model`` needs nothing but the checkpoint: its model card (:mod:`ecgexp.contract`)
holds the config, the objective's training statistics, the metadata statistics, the
validation thresholds and the input contract. The file is read with
``torch.load(weights_only=True)``; ``trusted=True`` is the explicit opt-in for a file that
needs more (it can run code from the file). The config in the card is data: it may name
ecgexp's registered classes (:mod:`ecgexp.registry`) and, with
``load_model(path, allow_modules=["mylab"])``, classes of your own package ``mylab``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

import ecgexp  # noqa: F401  (registers the OmegaConf resolvers)
from ecgexp.inference.model import TrainedModel, load_model


def compose_config(*overrides: str, config_name: str = "train",
                   output_dir: str | Path | None = None) -> DictConfig:
    """The config the command line would compose (``compose_config("task=age",
    "trainer.max_epochs=2")``), with ``paths.output_dir`` set to the run folder the command
    would use (or ``output_dir``), so that :func:`train` runs without Hydra's app."""
    with initialize_config_module("ecgexp.conf", version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    if "paths" in cfg:
        cfg.paths.output_dir = str(output_dir or cfg.hydra.run.dir)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def train(cfg: DictConfig) -> dict[str, float] | None:
    """Checks ``cfg`` as the command line does, trains, predicts and evaluates; returns the
    flattened metrics (``split/label/metric``)."""
    from ecgexp.config_checks import check
    from ecgexp.train import train as train_run

    check(cfg, "train")
    return train_run(cfg)


__all__: Sequence[str] = ("TrainedModel", "compose_config", "load_model", "train")
