"""``ecgexp-predict``: a trained model (a run folder, a checkpoint, a mean ensemble of runs, or
published weights with ``model.weights``) -> one CSV of predictions for every exam of a
dataset, written as it is predicted (:func:`ecgexp.inference.table.write_dataset_predictions`)."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ecgexp.columns import LABEL
from ecgexp.contract import input_contract
from ecgexp.errors import UserError
from ecgexp.evaluation.inputs import load_run, mean_ensemble
from ecgexp.files import writable_folder
from ecgexp.inference.inputs import dataset_for
from ecgexp.inference.loop import device_of
from ecgexp.inference.model import TrainedModel, load_model
from ecgexp.inference.table import write_dataset_predictions
from ecgexp.models.weights import build_model
from ecgexp.run_folder import RunFolder
from ecgexp.tasks.build import build_objective

log = logging.getLogger(__name__)
# Contract entries the members of an ensemble must share (they are fed the same tensors).
SHARED_CONTRACT = ("leads", "sampling_rate_hz", "n_samples", "amplitude_scale", "signal_steps",
                   "metadata_columns")


def predict(cfg: DictConfig):
    """Writes ``cfg.output`` as the batches come (``<output>.partial`` until it is whole: a
    killed run continues there when run again); returns its path."""
    if cfg.get("dataset") is None:
        raise UserError("dataset: choose the exams to predict, e.g. dataset=wfdb_folder "
                        "dataset.path=<folder>, dataset=generic dataset.tracing_files=<file.hdf5> "
                        "dataset.labels_csv=null, or dataset=code15 (ecgexp-predict --help)")
    output = Path(cfg.output)
    if output.suffix != ".csv":
        raise UserError(f"output: '{output}' is not a .csv file name")
    if output.exists():
        raise UserError(f"output: '{output}' exists; nothing is overwritten (choose another "
                        f"output or move the file)")
    writable_folder(output.parent, "output", output)
    device_of(cfg.device)  # a CUDA device that is not there: before any model is read
    models, thresholds = load_models(cfg)
    contract = models[0].contract
    source = instantiate(dataset_for(cfg.dataset, contract, cfg))
    output.parent.mkdir(parents=True, exist_ok=True)
    findings = write_dataset_predictions(models, thresholds, source, contract, output,
                                         cfg.batch_size, cfg.num_workers, cfg.device,
                                         cfg.progress_bar, identity=prediction_identity(cfg))
    failed = findings.count("problem")
    print(f"Predicted {findings.exams - failed} of {findings.exams} exams of {source.name} "
          f"({findings.count('flags')} flagged, {failed} without a prediction): "
          f"{output.resolve()}")
    return output


# Settings that change how fast the exams are predicted, not what is predicted.
HOW_NOT_WHAT = ("output", "batch_size", "num_workers", "device", "progress_bar")


def prediction_identity(cfg: DictConfig) -> dict:
    """What decides the rows of the table (the models, the dataset and its processing): a
    killed run is continued only by the same command."""
    settings = OmegaConf.to_container(cfg, resolve=False)
    return {key: value for key, value in settings.items() if key not in HOW_NOT_WHAT}


def load_models(cfg: DictConfig) -> tuple[list[TrainedModel], dict[str, float]]:
    """The model(s) ``cfg`` names and the thresholds their labels are cut at."""
    runs = list(cfg.get("runs") or [])
    weights = OmegaConf.select(cfg, "model.weights")
    if cfg.get("run") and runs:
        raise UserError("run / runs: give one run (run=) or an ensemble (runs=[...]), not both")
    if (cfg.get("run") or runs) and weights:
        raise UserError("model.weights: give a run (run=, runs=) or model.weights with a task, "
                        "not both")
    if cfg.get("run"):
        model = load_model(cfg.run, trusted=cfg.ckpt_trusted, key="run",
                           trust_key="ckpt_trusted", allow_modules=cfg.allow_modules)
        return [model], model.thresholds
    if runs:
        models = [load_model(r, trusted=cfg.ckpt_trusted, key="runs", trust_key="ckpt_trusted",
                             allow_modules=cfg.allow_modules) for r in runs]
        _check_members(runs, models)
        return models, ensemble_thresholds(runs, models, cfg.allow_modules)
    if weights:
        return [weights_model(cfg)], {}
    raise UserError("predict: give run=<run folder | checkpoint>, runs=[...] or "
                    "model.weights=<file> with task=<task>")


def weights_model(cfg: DictConfig) -> TrainedModel:
    """The network of ``cfg.model`` with ``model.weights`` (published weights): the task's
    objective unfitted, the input contract of ``cfg`` (HDF5 tracings as stored, the
    ``preprocessing`` leads, rate and the model's length), no thresholds."""
    if cfg.get("task") is None:
        raise UserError("task: model.weights needs the task the weights were trained for "
                        "(task=abnormality for the published six-label network)")
    objective = build_objective(cfg.task)
    net = build_model(cfg.model, objective)
    card = {"config": OmegaConf.to_container(cfg, resolve=True),
            "input_contract": input_contract(cfg, None)}
    return TrainedModel(net, objective, card, Path(cfg.model.weights))


def _check_members(runs: list, models: list[TrainedModel]) -> None:
    first = models[0]
    for run, model in zip(runs[1:], models[1:]):
        if model.config.task.name != first.config.task.name:
            raise UserError(f"runs: {run} is a {model.config.task.name} model, {runs[0]} a "
                            f"{first.config.task.name} one; an ensemble needs one task")
        for key in SHARED_CONTRACT:
            if model.contract.get(key) != first.contract.get(key):
                raise UserError(f"runs: {run} takes {key}={model.contract.get(key)!r}, "
                                f"{runs[0]} {first.contract.get(key)!r}; the members of an "
                                f"ensemble must take the same input")


def ensemble_thresholds(runs: list, models: list[TrainedModel], allow_modules=()
                        ) -> dict[str, float]:
    """The thresholds chosen on the ensemble's own validation predictions (the members'
    ``predictions_val.csv`` averaged), as ``ecgexp-evaluate runs=`` chooses them; none (no
    labels) when the members are not run folders with validation predictions."""
    objective = models[0].objective
    folders = [Path(r) for r in runs]
    if not all(RunFolder(f).predictions("val").is_file() for f in folders):
        log.warning("runs: not every member is a run folder with %s; the ensemble has no "
                    "validation thresholds, so no %s* columns", RunFolder("").predictions("val"),
                    LABEL)
        return {}
    members = [{"val": load_run(f, "runs", allow_modules)[1]["val"]} for f in folders]
    report = objective.evaluate(mean_ensemble(members, objective.prediction_columns))
    return objective.thresholds(report)
