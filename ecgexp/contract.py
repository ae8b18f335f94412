"""What a trained model carries with it: the **model card** stored in every checkpoint of a
run under ``"ecgexp"``, so that a checkpoint file alone (no config tree, no data) can be
loaded into its network and used (:mod:`ecgexp.api`).

The card holds plain values only (read with ``torch.load(weights_only=True)``):

- ``config``: the run's resolved config (a dict);
- ``objective_state`` (beside the card, as Lightning stores it): the objective's
  training-split statistics;
- ``metadata_statistics``: ``{column: {mean, std}}`` of the standardised metadata inputs,
  fitted on the training split;
- ``thresholds``: ``{label: threshold}`` chosen on validation (added to the best checkpoint
  when the run has evaluated its validation predictions);
- ``input_contract``: what a user must feed the network (:func:`input_contract`);
- ``weights``: what the network started from (:func:`starting_weights`).
"""

from __future__ import annotations

import json

from omegaconf import DictConfig, OmegaConf

from ecgexp.models.pretrained import encoder_module
from ecgexp.models.weights import file_sha256

CARD_KEY = "ecgexp"
CARD_FORMAT = 1
# Signal steps of the preprocessing config (ecgexp.signal.pipeline.SignalPipeline).
SIGNAL_STEPS = ("baseline_removal", "baseline_pass_hz", "baseline_stop_hz", "baseline_ripple_db",
                "baseline_attenuation_db", "powerline_hz", "notch_quality", "scale",
                "derive_limb_leads", "missing_leads")


def input_contract(cfg: DictConfig, source) -> dict:
    """What the network takes: ``leads`` (names, in input order), ``sampling_rate_hz``,
    ``n_samples``, ``units`` (mV), ``amplitude_scale`` (the factor the training data's stored
    values were multiplied by), the ``signal_steps`` the training data went through, and the
    ``metadata_columns`` (raw values; standardised with the card's statistics).

    For a raw-record dataset (it has a signal ``pipeline``) the steps are the pipeline's,
    applied when read; for HDF5 tracings they are ``as_stored`` (the steps that made the file,
    e.g. ``ecgexp-preprocess``, are the file's), with the dataset's scale."""
    pipeline = getattr(source, "pipeline", None)
    preprocessing = OmegaConf.to_container(cfg.preprocessing, resolve=True)
    if pipeline is not None:
        rate = float(preprocessing["sampling_rate"])
        steps = {"applied": "when read (raw records)",
                 **{k: preprocessing[k] for k in SIGNAL_STEPS if k in preprocessing}}
        scale = float(preprocessing.get("scale", 1.0))
    else:
        rate = float(getattr(source, "sampling_rate", preprocessing["sampling_rate"]))
        steps = {"applied": "as stored (the HDF5 tracings were read unchanged)"}
        scale = float(getattr(source, "scale", 1.0))
    return {"leads": [str(lead) for lead in cfg.preprocessing.leads],
            "sampling_rate_hz": rate, "n_samples": int(cfg.model.n_samples), "units": "mV",
            "amplitude_scale": scale, "signal_steps": steps,
            "metadata_columns": [str(c) for c in cfg.task.get("metadata_columns") or ()],
            "dataset": str(getattr(source, "name", cfg.dataset.get("name", "")))}


def starting_weights(cfg: DictConfig) -> dict:
    """``{"file", "sha256"}`` of ``model.weights`` (both None: random initialisation), with
    ``random_encoder`` true for the random-weights baseline of a pretrained encoder, and the
    encoder's published input contract when the model is one."""
    path = cfg.model.get("weights")
    random = bool(cfg.get("finetune", {}).get("random_encoder", False))
    record = {"file": None, "sha256": None, "random_encoder": random}
    if path and not random:
        record.update(file=str(path), sha256=file_sha256(path))
    if cfg.model.get("encoder"):
        contract = encoder_module(cfg.model.encoder).CONTRACT
        record["encoder_contract"] = json.loads(json.dumps(contract))  # plain lists
    return record


def model_card(cfg: DictConfig, source, metadata_statistics: dict,
               amplitude_mv: float | None = None) -> dict:
    """The card a run's checkpoints carry (thresholds are added after validation);
    ``amplitude_mv``: the training data's typical amplitude as fed to the network (the
    contract's reference for inputs on another scale)."""
    contract = {**input_contract(cfg, source), "amplitude_mv": amplitude_mv}
    return {"format": CARD_FORMAT, "config": OmegaConf.to_container(cfg, resolve=True),
            "metadata_statistics": dict(metadata_statistics),
            "input_contract": contract, "thresholds": {}, "weights": starting_weights(cfg)}
