"""A trained model loaded from its checkpoint alone (:func:`load_model`), for prediction:
its network, fitted objective and model card (:mod:`ecgexp.contract`). ``ecgexp.api``
re-exports both."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ecgexp.checkpoints import network_state, read_checkpoint
from ecgexp.contract import CARD_KEY
from ecgexp.errors import UserError
from ecgexp.inference.loop import Inferred, inferred
from ecgexp.inference.rows import prediction_rows
from ecgexp.inference.screening import screen
from ecgexp.models.weights import build_model
from ecgexp.registry import check_prefixes
from ecgexp.run_folder import RunFolder, config_as_data


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
    def device(self) -> torch.device:
        """The device the network is on."""
        return next(self.net.parameters(), torch.empty(0)).device

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

    def raw_metadata(self, metadata, batch: int) -> np.ndarray | None:
        """``(batch, metadata columns)`` raw values, checked (a table with the columns, or an
        array in their order); ``None`` for a model without metadata."""
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
        return values

    def metadata_inputs(self, metadata, batch: int) -> torch.Tensor | None:
        """The network's metadata input: :meth:`raw_metadata` standardised as in training."""
        values = self.raw_metadata(metadata, batch)
        if values is None:
            return None
        columns = self.metadata_columns
        for name, statistics in self.metadata_statistics.items():
            column = columns.index(name)
            values[:, column] = (values[:, column] - statistics["mean"]) / statistics["std"]
        return torch.as_tensor(values, dtype=torch.float32)

    def _inferred(self, tracings: torch.Tensor, metadata, batch_size: int,
                  fed: np.ndarray | None = None) -> list[Inferred]:
        """The inference loop over ``tracings`` in batches of ``batch_size``, on the device
        the network is on."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch_size: {batch_size!r} is not a whole number >= 1")
        raw = self.raw_metadata(metadata, len(tracings))
        batches = ({"tracing": tracings[start:start + batch_size],
                    "raw_metadata": None if raw is None else raw[start:start + batch_size],
                    "fed": None if fed is None else fed[start:start + batch_size]}
                   for start in range(0, len(tracings), batch_size))
        return list(inferred([self], batches, self.device))

    def outputs(self, tracings, metadata=None, batch_size: int = 64) -> torch.Tensor:
        """Raw network outputs ``(batch, len(objective.output_names))`` of ``(batch, leads,
        samples)`` tracings in mV (and raw metadata values when the model takes some)."""
        parts = [done.outputs[0] for done in self._inferred(self._tracings(tracings), metadata,
                                                            batch_size)]
        return torch.cat(parts) if parts else torch.empty(0, len(self.objective.output_names))

    def predict(self, tracings, metadata=None, batch_size: int = 64) -> pd.DataFrame:
        """The task's prediction columns in its units, one row per tracing; for each
        validation threshold a ``label_<name>`` column (score >= threshold; missing for a
        label without one: no positive validation exams); and, as ``ecgexp-predict`` writes
        them, ``amplitude_mv``, ``flags`` (what looks wrong: flat leads, an amplitude far from
        the training data's, such as uV fed as mV) and ``problem``: an exam that carries no
        ECG gets no prediction and no label, and its ``problem`` says why
        (:mod:`ecgexp.inference.screening`)."""
        tracings = self._tracings(tracings)
        amplitude, flags, problems = screen(tracings.numpy(), self.contract)
        fed = np.array([not problem for problem in problems], dtype=bool)
        done = self._inferred(tracings, metadata, batch_size, fed)
        n_columns = len(self.objective.prediction_columns)
        predictions = (np.concatenate([d.predictions for d in done], axis=1) if done
                       else np.zeros((1, 0, n_columns), np.float32))
        table = prediction_rows(self.objective, predictions, thresholds=self.thresholds)
        table["amplitude_mv"], table["flags"], table["problem"] = amplitude, flags, problems
        return table


def check_thresholds(thresholds: dict, checkpoint: Path, key: str) -> None:
    """A model card's thresholds are numbers in [0, 1] (NaN or null: none chosen)."""
    if not isinstance(thresholds, dict):
        raise UserError(f"{key}: '{checkpoint}' holds thresholds {thresholds!r} in its model "
                        f"card, not a label -> threshold mapping; the file was not written by "
                        f"ecgexp or was edited")
    for label, value in thresholds.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value is not None and not (number and (math.isnan(value) or 0 <= value <= 1)):
            raise UserError(f"{key}: '{checkpoint}' holds the threshold {value!r} for "
                            f"'{label}' in its model card; a threshold is a number in [0, 1]: "
                            f"the file was not written by ecgexp or was edited")


def load_model(path: str | Path, trusted: bool = False, key: str = "model",
               trust_key: str = "trusted", allow_modules: Sequence[str] = ()) -> TrainedModel:
    """The model in ``path``: a run folder (its best, else last checkpoint) or a checkpoint
    file anywhere. A checkpoint without a model card (an older run) takes the config of the
    run folder it lies in. ``key`` and ``trust_key`` name the argument and the opt-in in
    errors (``ckpt`` and ``ckpt_trusted`` for ``task=heatmap``). The stored config is data
    (:func:`ecgexp.run_folder.config_as_data`): classes of your own package need
    ``allow_modules=["mylab"]``."""
    path = Path(path)
    checkpoint = RunFolder.find_checkpoint(path, key=key)[1] if path.is_dir() else path
    if not checkpoint.is_file():
        raise UserError(f"{key}: no run folder or checkpoint at '{path}'")
    stored = read_checkpoint(checkpoint, key, trusted=trusted, trust_key=trust_key)
    card = stored.get(CARD_KEY) if isinstance(stored, dict) else None
    if not isinstance(card, dict) or not isinstance(card.get("config"), dict):
        folder, _ = RunFolder.find_checkpoint(checkpoint, key=key)
        card = {"config": OmegaConf.to_container(RunFolder(folder).load_config(key, allow_modules))}
    config = config_as_data(OmegaConf.create(card["config"]), checkpoint, key,
                            check_prefixes(allow_modules))
    card = {**card, "config": OmegaConf.to_container(config)}
    check_thresholds(card.get("thresholds") or {}, checkpoint, key)
    objective = instantiate(config.task.objective)
    objective.load_state(stored.get("objective_state", {}))
    net = build_model(config.model, objective, with_weights=False)
    net.load_state_dict(network_state(stored, checkpoint, key))
    return TrainedModel(net, objective, card, checkpoint)
