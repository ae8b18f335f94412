"""Start-up checks of config values: one place, every rule named by its key.

Each primary config (``train``, ``evaluate``, ``predict``, ``preprocess``, ``synth``) has a table
of rules
(:data:`RULES`). :class:`CheckConfig` is a Hydra callback that applies it when a command starts,
before Hydra creates any run folder; the training entry point applies it again to each job of
a multirun (whose values the sweeper sets). A bad value stops the command with one line:
``loader.batch_size: 0 is not a whole number >= 1``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from numbers import Real

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ecgexp.errors import UserError, report
from ecgexp.files import writable_folder
from ecgexp.registry import prefixes_problem

Rule = Callable[[object], str | None]  # None: the value is fine; else what it must be
ABSENT = object()


def _number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def whole(minimum: int) -> Rule:
    def rule(value):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
            return f"a whole number >= {minimum}"
        return None
    return rule


def positive(value) -> str | None:
    return None if _number(value) and value > 0 else "a number > 0"


def non_negative(value) -> str | None:
    return None if _number(value) and value >= 0 else "a number >= 0"


def fraction(value) -> str | None:
    return None if _number(value) and 0 <= value < 1 else "a fraction in [0, 1)"


def open_fraction(value) -> str | None:
    return None if _number(value) and 0 < value < 1 else "a number between 0 and 1"


def probability(value) -> str | None:
    return None if _number(value) and 0 <= value <= 1 else "a number in [0, 1]"


def optional(rule: Rule) -> Rule:
    return lambda value: None if value is None else rule(value)


def each(rule: Rule) -> Rule:
    def check_all(value):
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            return "a list"
        problems = [rule(v) for v in value]
        return next((f"a list, each {p}" for p in problems if p), None)
    return check_all


def choice(*options: str) -> Rule:
    return lambda value: None if value in options else f"one of {', '.join(options)}"


def strata(value) -> str | None:
    """``split.stratify``: true (the task's 0/1 labels), false, or label column names."""
    if isinstance(value, bool) or (isinstance(value, list | tuple)
                                   and all(isinstance(v, str) for v in value)):
        return None
    return "true, false or a list of label columns"


SPLIT_GROUPS = ("dataset.split", "split", "task.split")
SPLIT_FRACTIONS = {f"{group}.{name}": fraction for group in SPLIT_GROUPS
                   for name in ("val_fraction", "test_fraction")}
SPLIT_STRATA = {f"{group}.stratify": strata for group in SPLIT_GROUPS}

RULES: dict[str, dict[str, Rule]] = {
    "train": {
        "seed": whole(0), "split_seed": whole(0),
        "loader.batch_size": whole(1), "loader.num_workers": whole(0),
        "loader.eval_batch_size": optional(whole(1)), "loader.prefetch_factor": whole(1),
        "optimizer.lr": positive, "optimizer.weight_decay": non_negative,
        "scheduler.factor": open_fraction, "scheduler.patience": whole(0),
        "model.kernel_size": whole(1), "model.dropout": fraction,
        "trainer.max_epochs": whole(0), "trainer.devices": lambda v: (
            None if v == "auto" or whole(1)(v) is None or isinstance(v, list) else
            "a whole number >= 1, a list of device indices or auto"),
        "callbacks.early_stopping.patience": whole(0), "dataset.n_exams": whole(1),
        "dataset.nan_policy": choice("error", "skip"),
        "allow_modules": prefixes_problem, **SPLIT_FRACTIONS, **SPLIT_STRATA,
    },
    "heatmap": {"batch_size": whole(1), "figures.max_exams": whole(0),
                "integrated_gradients.steps": whole(1), "allow_modules": prefixes_problem},
    "evaluate": {
        "thresholds": each(probability), "bootstrap.n_resamples": whole(1),
        "bootstrap.level": open_fraction, "calibration.n_bins": whole(1),
        "allow_modules": prefixes_problem,
    },
    "preprocess": {"workers": whole(1), "batch_size": whole(1)},
    "predict": {"batch_size": whole(1), "num_workers": whole(0),
                "allow_modules": prefixes_problem},
    "compare": {"bootstrap.n_resamples": whole(1), "thresholds": each(probability),
                "calibration.n_bins": whole(1),
                "decision_curve.thresholds.start": open_fraction,
                "decision_curve.thresholds.stop": open_fraction,
                "decision_curve.thresholds.step": open_fraction,
                "report_logger": optional(choice("wandb")), "allow_modules": prefixes_problem,
                "reference": choice("first", "best")},
    "synth": {"n_exams": whole(1), "n_parts": whole(1), "seed": whole(0)},
}


def check(config: DictConfig, rules: str) -> None:
    """Raises :class:`UserError` for the first value of ``config`` that breaks a rule of the
    table ``rules``. Keys that the config does not have are not checked."""
    for key, rule in RULES[rules].items():
        try:
            value = OmegaConf.select(config, key, default=ABSENT, throw_on_missing=False)
        except OmegaConfBaseException as error:
            raise UserError(f"{key}: cannot be resolved ({error})") from None
        if value is ABSENT or isinstance(value, DictConfig):
            continue
        if isinstance(value, ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        problem = rule(value)
        if problem:
            raise UserError(f"{key}: {value!r} is not {problem}; set {key}=<value>")


def check_output_folder(config: DictConfig, key: str) -> None:
    """The folder Hydra is about to create (``hydra.run.dir`` or ``hydra.sweep.dir``) can be
    created and written: not under a file, not on a read-only file system."""
    try:
        folder = OmegaConf.select(config, key)
    except OmegaConfBaseException as error:
        raise UserError(f"{key}: cannot be resolved ({error})") from None
    writable_folder(folder, key)


# Commands whose config holds the `quality` group (its rules are checked at start-up).
QUALITY_COMMANDS = ("train", "predict", "preprocess")


# Trainer settings that Lightning checks when the Trainer is built, by the config key named.
TRAINER_KEYS = ("accelerator", "devices", "precision", "num_nodes")


def check_trainer(trainer: DictConfig) -> None:
    """``trainer.accelerator``, ``devices``, ``precision`` and ``num_nodes`` as Lightning
    checks them (a Trainer built with them alone), before any folder is written: an unknown
    precision, or a GPU accelerator on a machine without one, is one line naming the key."""
    import pytorch_lightning as pl

    settings = {key: OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
                for key in TRAINER_KEYS if (value := trainer.get(key)) is not None}
    try:
        pl.Trainer(**settings, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)
    except Exception as error:  # noqa: BLE001  (Lightning's errors of every kind)
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        key = next((k for k in ("precision", "devices", "num_nodes") if k in message.lower()),
                   "accelerator")
        raise UserError(f"trainer.{key}: {message} (trainer: {settings}); set "
                        f"trainer.{key}=<value>") from None


def check_quality(quality: DictConfig) -> None:
    """The ``quality`` group's values, as ``QualityRules`` checks them when it is built."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        instantiate(quality)
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise


class CheckConfig(Callback):
    """Hydra callback: :func:`check` of the command's config, and that its run folder can be
    written, before anything is written.

    Args:
        rules: the table of :data:`RULES` to apply.
        output_folder: check that ``hydra.run.dir`` / ``hydra.sweep.dir`` can be created
            (commands whose Hydra folder is their run folder).
    """

    def __init__(self, rules: str, output_folder: bool = False):
        self.rules = rules
        self.output_folder = output_folder

    def _check(self, config: DictConfig, folder_key: str) -> None:
        try:
            check(config, self.rules)
            if self.output_folder:
                check_output_folder(config, folder_key)
            if self.rules == "train" and config.get("trainer") is not None:
                check_trainer(config.trainer)
            if config.get("quality") is not None and self.rules in QUALITY_COMMANDS:
                check_quality(config.quality)
            if (self.rules == "train" and folder_key == "hydra.run.dir"
                    and os.environ.get("LOCAL_RANK", "0") == "0"):  # not a DDP child
                from ecgexp.run_folder import check_new_run_folder  # Lightning: only here

                check_new_run_folder(OmegaConf.select(config, folder_key),
                                     continuing=bool(config.get("ckpt_path")
                                                     or config.get("resume")))
        except UserError as error:
            report(error)

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")
