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
needs more (it can run code from the file).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

import ecgexp  # noqa: F401  (registers the OmegaConf resolvers)
from ecgexp.checkpoints import network_state, read_checkpoint
from ecgexp.contract import CARD_KEY
from ecgexp.errors import UserError
from ecgexp.models.weights import build_model
from ecgexp.run_folder import check_targets, find_checkpoint, load_run_config


class TrainedModel:
    """A trained network with its objective (fitted) and model card.

    Attributes:
        net: the network (eval mode), ``(batch, leads, samples)`` -> ``(batch, outputs)``.
        objective: the task's objective with its training statistics.
        config: the run's resolved config (data: only read).
        contract: the input contract (:func:`ecgexp.contract.input_contract`).
        thresholds: ``{label: threshold}`` chosen on validation (may be empty).
        metadata_statistics: ``{column: {mean, std}}`` of standardised metadata inputs.
        checkpoint: the file the model was read from.
    """

    def __init__(self, net: torch.nn.Module, objective, card: dict, checkpoint: Path):
        self.net, self.objective, self.checkpoint = net.eval(), objective, checkpoint
        self.config = OmegaConf.create(card["config"])
        self.contract = dict(card.get("input_contract") or {})
        self.thresholds = dict(card.get("thresholds") or {})
        self.metadata_statistics = dict(card.get("metadata_statistics") or {})

    @property
    def metadata_columns(self) -> list[str]:
        return list(self.config.task.get("metadata_columns") or [])

    def _tracings(self, tracings) -> torch.Tensor:
        tracings = torch.as_tensor(np.asarray(tracings, dtype=np.float32))
        expected = (len(self.contract["leads"]), self.contract["n_samples"])
        if tracings.ndim != 3 or tuple(tracings.shape[1:]) != expected:
            raise UserError(
                f"tracings: shape {tuple(tracings.shape)}, but the model takes (batch, "
                f"{expected[0]}, {expected[1]}): the leads {', '.join(self.contract['leads'])} "
                f"in that order, {expected[1]} samples at "
                f"{self.contract['sampling_rate_hz']:g} Hz, in mV")
        if not torch.isfinite(tracings).all():
            raise UserError("tracings: NaN or infinite samples; the model takes finite mV")
        return tracings

    def _metadata(self, metadata, batch: int) -> torch.Tensor | None:
        columns = self.metadata_columns
        if not columns:
            if metadata is not None:
                raise UserError("metadata: this model takes no metadata inputs")
            return None
        if isinstance(metadata, pd.DataFrame):
            missing = [c for c in columns if c not in metadata.columns]
            if missing:
                raise UserError(f"metadata: columns {missing} missing; the model takes "
                                f"{columns}")
            metadata = metadata[columns].to_numpy(np.float64)
        values = np.array(metadata, dtype=np.float64, copy=True)
        if values.shape != (batch, len(columns)):
            raise UserError(f"metadata: shape {values.shape}, the model takes ({batch}, "
                            f"{len(columns)}) values of {columns} (raw, as in the exam table)")
        for name, statistics in self.metadata_statistics.items():
            column = columns.index(name)
            values[:, column] = (values[:, column] - statistics["mean"]) / statistics["std"]
        return torch.as_tensor(values, dtype=torch.float32)

    @torch.inference_mode()
    def outputs(self, tracings, metadata=None, batch_size: int = 64) -> torch.Tensor:
        """Raw network outputs ``(batch, len(objective.output_names))`` of ``(batch, leads,
        samples)`` tracings in mV (and raw metadata values when the model takes some)."""
        tracings = self._tracings(tracings)
        metadata = self._metadata(metadata, len(tracings))
        parts = []
        for start in range(0, len(tracings), batch_size):
            chunk = tracings[start:start + batch_size]
            parts.append(self.net(chunk) if metadata is None
                         else self.net(chunk, metadata[start:start + batch_size]))
        return torch.cat(parts) if parts else torch.empty(0, len(self.objective.output_names))

    def predict(self, tracings, metadata=None, batch_size: int = 64) -> pd.DataFrame:
        """The task's prediction columns in its units, one row per tracing, and for each
        validation threshold a ``label_<name>`` column (score >= threshold)."""
        predictions = self.objective.predict(self.outputs(tracings, metadata, batch_size))
        table = pd.DataFrame(predictions.numpy(), columns=self.objective.prediction_columns)
        for label, threshold in self.thresholds.items():
            if f"score_{label}" in table:
                table[f"label_{label}"] = (table[f"score_{label}"] >= threshold).astype(int)
        return table


def load_model(path: str | Path, trusted: bool = False, key: str = "model",
               trust_key: str = "trusted") -> TrainedModel:
    """The model in ``path``: a run folder (its best, else last checkpoint) or a checkpoint
    file anywhere. A checkpoint without a model card (an older run) takes the config of the
    run folder it lies in. ``key`` and ``trust_key`` name the argument and the opt-in in
    errors (``ckpt`` and ``ckpt_trusted`` for ``task=heatmap``)."""
    path = Path(path)
    checkpoint = find_checkpoint(path, key=key)[1] if path.is_dir() else path
    if not checkpoint.is_file():
        raise UserError(f"{key}: no run folder or checkpoint at '{path}'")
    stored = read_checkpoint(checkpoint, key, trusted=trusted, trust_key=trust_key)
    card = stored.get(CARD_KEY) if isinstance(stored, dict) else None
    if not isinstance(card, dict) or not isinstance(card.get("config"), dict):
        folder, _ = find_checkpoint(checkpoint, key=key)
        card = {"config": OmegaConf.to_container(load_run_config(folder, key))}
    config = OmegaConf.create(card["config"])
    check_targets(config, checkpoint, key)  # the stored config is data
    objective = instantiate(config.task.objective)
    objective.load_state(stored.get("objective_state", {}))
    net = build_model(config.model, objective, with_weights=False)
    net.load_state_dict(network_state(stored, checkpoint, key))
    return TrainedModel(net, objective, card, checkpoint)


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
    from ecgexp.checks import check
    from ecgexp.train import train as train_run

    check(cfg, "train")
    return train_run(cfg)


__all__: Sequence[str] = ("TrainedModel", "compose_config", "load_model", "train")
