"""The PhysioNet Challenge 2025 team-code interface, backed by ecgexp.

The official example (``python-example-2025``) calls three functions of ``team_code.py``; here
they train an ecgexp run, load its best checkpoint and score one record. In a clone of the
official repository, with ecgexp installed, ``team_code.py`` is just::

    from ecgexp.challenge import train_model, load_model, run_model

and the official scripts run unchanged::

    python train_model.py -d training_data -m model
    python run_model.py -d holdout_data -m model -o holdout_outputs
    python evaluate_model.py -d holdout_data -o holdout_outputs

Training composes the ``ecgexp`` config ``task=chagas dataset=wfdb_folder
dataset.path=<data_folder> dataset.ids=name`` (the Challenge layout: labels, age and sex from
the header comments; records of any rate and length through the ``preprocessing`` steps on the
fly; exams of one patient kept in one split when the headers carry ``# Patient ID:``). The
environment variable ``ECGEXP_CHALLENGE_OVERRIDES`` appends command-line overrides
(shell-quoted, split with :func:`shlex.split`), e.g.::

    ECGEXP_CHALLENGE_OVERRIDES="model=resnet1d_small trainer.max_epochs=20 logger=none" \\
        python train_model.py -d training_data -m model

With ``dataset.ids=name`` the record names are the exam ids: integers when every name is one
(CODE-15%, SaMi-Trop exam ids), else the names as text; a record whose name repeats another's
is left out with a warning. ``dataset.ids=index`` numbers the records instead.
The model folder becomes the ecgexp run folder (``config.yaml``, ``checkpoints/best.ckpt``,
``metrics.json``, ...): it must be new or empty; nothing is written into a folder that holds
anything else.

``run_model`` reads the record (a WFDB path without extension, as ``run_model.py`` passes it),
brings it to the model's input with the signal steps of its input contract
(:func:`ecgexp.inference.inputs.contract_pipeline`, as ``ecgexp-predict`` does) and returns
``(binary, probability)``: the Chagas score and whether it reaches the threshold chosen on the
validation split (stored in the checkpoint's model card; 0.5 without one).

The scorer (``evaluate_model.py``) reads the labels from the headers of its ``-d`` folder and
expects one output per header: give it a folder holding exactly the headers of the records
that were predicted (the exported hold-out records), not the whole training folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import warnings
import weakref
from pathlib import Path

import numpy as np

from ecgexp.columns import score_of
from ecgexp.errors import UserError
from ecgexp.evaluation.binary import undefined_threshold
from ecgexp.run_folder import RunFolder

OVERRIDES_ENV = "ECGEXP_CHALLENGE_OVERRIDES"
LABEL = "chagas"
DEFAULT_THRESHOLD = 0.5
# Lightning's own loggers, quiet while training without ``verbose``.
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric",
                     "lightning.fabric")

_pipelines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def challenge_overrides(data_folder: str | os.PathLike) -> list[str]:
    """The overrides ``train_model`` composes: the Challenge defaults, then those of
    ``ECGEXP_CHALLENGE_OVERRIDES``."""
    defaults = ["task=chagas", "dataset=wfdb_folder", f"dataset.path={Path(data_folder).resolve()}",
                "dataset.ids=name"]
    return [*defaults, *shlex.split(os.environ.get(OVERRIDES_ENV, ""))]


def _check_model_folder(folder: Path) -> None:
    """Refuses a model folder that holds anything but (at most) a stale run lock."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserError(f"model_folder: '{folder}' is not a folder")
    contents = sorted(p.name for p in folder.iterdir())
    if RunFolder(folder).config.name in contents:
        raise UserError(f"model_folder: '{folder}' already holds an ecgexp run; remove it or "
                        f"choose another model folder")
    if set(contents) - {RunFolder(folder).lock.name}:  # a lock of a run that stopped early
        raise UserError(f"model_folder: '{folder}' is not empty ({', '.join(contents[:5])}"
                        f"{', ...' if len(contents) > 5 else ''}); nothing is written into a "
                        f"folder that holds other files: give a new or empty folder")


@contextlib.contextmanager
def _quiet():
    """Lightning's messages, warnings and the printed report kept out of the output."""
    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    try:
        for name in LIGHTNING_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        with (warnings.catch_warnings(), open(os.devnull, "w") as sink,
              contextlib.redirect_stdout(sink)):
            warnings.filterwarnings("ignore", module=r"(pytorch_)?lightning")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def train_model(data_folder: str, model_folder: str, verbose: bool) -> None:
    """Trains the ecgexp run of :func:`challenge_overrides` on the records of ``data_folder``
    into ``model_folder`` (new or empty)."""
    from ecgexp.api import compose_config, train

    folder = Path(model_folder).resolve()
    _check_model_folder(folder)
    overrides = challenge_overrides(data_folder)
    if not verbose:  # first, so that the environment's overrides may change them
        overrides = ["callbacks.progress_bar=null", "trainer.enable_progress_bar=false",
                     *overrides]
    if verbose:
        print(f"Training an ecgexp model: {shlex.join(overrides)}")
    cfg = compose_config(*overrides, output_dir=folder)
    with contextlib.nullcontext() if verbose else _quiet():
        metrics = train(cfg)
    if verbose:
        print(f"Trained: {folder}" + (f" (test AUROC {metrics['test/chagas/auroc']:.3f})"
                                      if metrics and "test/chagas/auroc" in metrics else ""))


def load_model(model_folder: str, verbose: bool):
    """The trained model of ``model_folder`` (:class:`ecgexp.api.TrainedModel`)."""
    from ecgexp.api import load_model as load_trained

    model = load_trained(model_folder)
    if score_of(LABEL) not in model.objective.prediction_columns:
        raise UserError(f"model_folder: '{model_folder}' holds a {model.config.task.name} "
                        f"model, not a Chagas one (task=chagas)")
    if undefined_threshold(model.thresholds.get(LABEL, DEFAULT_THRESHOLD)):
        raise UserError(f"model_folder: '{model_folder}' has no Chagas threshold: its "
                        f"validation split held no positive exams; train with a validation "
                        f"split that has some (dataset.split.val_fraction)")
    if verbose:
        print(f"Loaded {model.checkpoint} (threshold "
              f"{model.thresholds.get(LABEL, DEFAULT_THRESHOLD):.4g})")
    return model


def _pipeline(model):
    from ecgexp.inference.inputs import contract_pipeline

    if model not in _pipelines:
        _pipelines[model] = contract_pipeline(model.contract)
    return _pipelines[model]


def _metadata(record: Path, model):
    """The record's metadata inputs, raw as in the exam table (age, is_male from the
    header), when the model takes some; None otherwise."""
    columns = model.metadata_columns
    if not columns:
        return None
    from ecgexp.data.record_source import header_table

    renames = dict(model.config.get("dataset", {}).get("rename_columns") or {})
    table = header_table(record.parent, [record.name]).rename(columns=renames)
    missing = [c for c in columns if c not in table.columns or table[c].isna().any()]
    if missing:
        raise UserError(f"record {record}: the model takes the metadata {columns}; the header "
                        f"gives no {', '.join(missing)}")
    return table[columns]


def run_model(record: str, model, verbose: bool) -> tuple[bool, float]:
    """``(binary, probability)`` of Chagas disease for ``record`` (a WFDB record path
    without extension, or a MUSE XML or TNMG JSON file). A record that carries no ECG (all
    zero, every lead flat) gets ``(False, 0.0)``: no positive answer without a signal (the
    reason is printed with ``verbose``)."""
    from ecgexp.signal.readers import read_record, read_wfdb

    path = Path(record)
    read = read_wfdb if path.with_name(path.name + ".hea").is_file() else read_record
    loaded = read(path)
    tracing = _pipeline(model)(loaded.signal, loaded.sampling_rate, loaded.leads)
    table = model.predict(np.ascontiguousarray(tracing.T[None]), _metadata(path, model))
    if table.problem.iloc[0]:
        if verbose:
            print(f"{record}: {table.problem.iloc[0]}; answered (False, 0.0)")
        return False, 0.0
    probability = float(table[score_of(LABEL)].iloc[0])
    binary = bool(probability >= model.thresholds.get(LABEL, DEFAULT_THRESHOLD))
    return binary, probability


__all__ = ["load_model", "run_model", "train_model"]
