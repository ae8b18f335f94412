"""What a config read from a file may instantiate: an explicit registry.

A run folder's ``config.yaml`` and the model card inside a checkpoint may come from a colleague
or another machine, so they are data. Every ``_target_`` in them must be

- one of :data:`CLASSES`, by that exact name, resolving to that very class (the networks,
  objectives, data sources, pipelines, callbacks, loggers, trainer, optimiser and scheduler
  of the shipped config tree), or a torch optimiser (``torch.optim.<Name>``) or LR scheduler
  (``torch.optim.lr_scheduler.<Name>``) class, so that a run trained with another one reads;
- one of :data:`RULES`, with ``_partial_: true``: the pure rules of the shipped config tree
  (splits, batch samplers, target builders) that ``instantiate`` only binds to their
  settings and ecgexp later calls on an exam table; never called by ``instantiate`` itself;
- a class of a package the user allowed for this command (``allow_modules=[mylab]`` on the
  command line or in the user's own config, ``allow_modules=`` of :func:`ecgexp.api.
  load_model`): its name must be the module that defines it and its own name
  (``mylab.nets.TinyCNN``), not a name reached through another module.

Anything else, a function above all, is refused with the key that names it. The allowance
is never read from the file being checked. Which keys grant trust or choose files is
:mod:`ecgexp.run_folder`'s business (:data:`ecgexp.run_folder.COMMAND_LINE_ONLY`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from hydra.utils import get_object

from ecgexp.errors import UserError

CLASSES = frozenset({
    # networks, objectives and their callbacks
    "ecgexp.models.resnet1d.ResNet1d",
    "ecgexp.models.ptbxl.FCNWang",
    "ecgexp.models.ptbxl.ResNet1dWang",
    "ecgexp.models.ptbxl.Inception1d",
    "ecgexp.models.ptbxl.LSTM1d",
    "ecgexp.models.ptbxl.XResNet1d",
    "ecgexp.models.transformer.Transformer1d",
    "ecgexp.models.pretrained.PretrainedEncoder",
    "ecgexp.tasks.objectives.Binary",
    "ecgexp.tasks.objectives.MultiLabel",
    "ecgexp.tasks.multiclass.MultiClass",
    "ecgexp.tasks.regression.Regression",
    "ecgexp.tasks.regression.GaussianRegression",
    "ecgexp.tasks.regression.BucketClassification",
    "ecgexp.tasks.regression.Ordinal",
    "ecgexp.tasks.survival.CoxSurvival",
    "ecgexp.tasks.survival.DiscreteTimeSurvival",
    "ecgexp.tasks.callbacks.EpochSeed",
    "ecgexp.tasks.callbacks.TrainingProgress",
    # data: sources, label maps, signal pipeline and quality rules, config checks
    "ecgexp.data.source.HDF5Source",
    "ecgexp.data.source.CombinedSource",
    "ecgexp.data.synthetic_source.SyntheticSource",
    "ecgexp.data.record_source.RecordFolderSource",
    "ecgexp.data.ptbxl.PTBXLSource",
    "ecgexp.data.label_maps.LabelMap",
    "ecgexp.signal.pipeline.SignalPipeline",
    "ecgexp.signal.quality.QualityRules",
    "ecgexp.config_checks.CheckConfig",
    # training: Lightning's trainer, callbacks and loggers; ecgexp's W&B logger
    "pytorch_lightning.Trainer",
    "pytorch_lightning.callbacks.ModelCheckpoint",
    "pytorch_lightning.callbacks.EarlyStopping",
    "pytorch_lightning.loggers.CSVLogger",
    "pytorch_lightning.loggers.TensorBoardLogger",
    "ecgexp.tracking.WandbLogger",
})
RULES = frozenset({
    "ecgexp.data.splits.random_split",
    "ecgexp.data.splits.column_split",
    "ecgexp.data.splits.last_fraction_split",
    "ecgexp.data.splits.single_split",
    "ecgexp.data.splits.age_balanced_split",
    "ecgexp.data.samplers.two_source_batches",
    "ecgexp.tasks.target_builders.af_risk_classes",
    "ecgexp.tasks.target_builders.af_time_to_event",
})
# torch's optimisers and LR schedulers, by their public names (``torch.optim.SGD``).
TORCH_FAMILIES = (("torch.optim", torch.optim.Optimizer),
                  ("torch.optim.lr_scheduler", torch.optim.lr_scheduler.LRScheduler),
                  ("torch.optim.lr_scheduler", torch.optim.lr_scheduler.ReduceLROnPlateau))
ALLOW_KEY = "allow_modules"


def _resolve(target: str):
    try:
        return get_object(target)
    except Exception:  # noqa: BLE001  (any import failure: not a registered object)
        return None


def _torch_class(target: str, resolved) -> bool:
    module, _, name = target.rpartition(".")
    return isinstance(resolved, type) and any(
        module == family and issubclass(resolved, base) and getattr(
            __import__(family, fromlist=[name]), name, None) is resolved
        for family, base in TORCH_FAMILIES)


def _allowed_module(module: str, allow_modules: Sequence[str]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allow_modules)


def _own_class(target: str, resolved, allow_modules: Sequence[str]) -> bool:
    """A class defined in an allowed module, named by its own module and name."""
    return (isinstance(resolved, type) and _allowed_module(resolved.__module__, allow_modules)
            and target == f"{resolved.__module__}.{resolved.__qualname__}")


# Packages ``allow_modules`` cannot name: ecgexp and the libraries whose classes the registry
# lists one by one, and the standard library's process, file and import machinery.
NEVER_ALLOWED = ("ecgexp", "builtins", "os", "sys", "subprocess", "shutil", "pathlib",
                 "importlib", "pickle", "torch", "pytorch_lightning", "lightning", "hydra",
                 "omegaconf", "numpy", "pandas", "h5py")


def prefixes_problem(value) -> str | None:
    """What ``allow_modules`` must be, when ``value`` is not it (None: it is)."""
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(p, str) for p in value):
        return "a list of module prefixes ([mylab] or [mylab.nets])"
    for prefix in value:
        if not all(part.isidentifier() for part in prefix.split(".")):
            return f"a list of dotted module names ('{prefix}' is not one)"
        if prefix.split(".")[0] in NEVER_ALLOWED:
            return (f"a list of your own packages ('{prefix}' is ecgexp, a library whose classes "
                    f"ecgexp.registry lists, or the standard library)")
    return None


def check_prefixes(allow_modules, key: str = ALLOW_KEY) -> tuple[str, ...]:
    """The allowed module prefixes as a tuple, checked (:func:`prefixes_problem`)."""
    if hasattr(allow_modules, "_content"):  # a ListConfig
        allow_modules = list(allow_modules)
    problem = prefixes_problem(allow_modules)
    if problem:
        raise UserError(f"{key}: {allow_modules!r} is not {problem}; set {key}=[<package>]")
    return tuple(allow_modules or ())


def refusal(target: str, partial: bool, allow_modules: Sequence[str] = ()) -> str | None:
    """Why ``target`` may not be instantiated from a file (None: it may)."""
    resolved = _resolve(target)
    if target in CLASSES:
        if isinstance(resolved, type):
            return None
        return "it does not resolve to the registered class"
    if target in RULES:
        if partial and callable(resolved):
            return None
        return "a rule of the config tree is only bound (_partial_: true), never called"
    if _torch_class(target, resolved):
        return None
    module = target.rpartition(".")[0]
    if allow_modules and _allowed_module(module, allow_modules):
        if _own_class(target, resolved, allow_modules):
            return None
        if resolved is None:
            return f"it cannot be imported: is {target.partition('.')[0]} on PYTHONPATH?"
        return (f"only classes of the allowed packages ({', '.join(allow_modules)}), named "
                f"by their own module, may be instantiated")
    return "it is not in ecgexp's registry"


def targets(tree, path: str = "") -> Iterator[tuple[str, str, bool]]:
    """``(config key, _target_, _partial_)`` of every ``_target_`` in a nested dict/list
    tree."""
    if isinstance(tree, dict):
        if "_target_" in tree:
            yield path or "<root>", str(tree["_target_"]), tree.get("_partial_") is True
        for name, value in tree.items():
            yield from targets(value, f"{path}.{name}" if path else str(name))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from targets(value, f"{path}[{i}]")


def _example_prefix(target: str) -> str:
    """The package of ``target`` as an ``allow_modules`` example, unless that could never be
    allowed (:data:`NEVER_ALLOWED`: then a placeholder)."""
    package = target.partition(".")[0]
    return "<your package>" if package in NEVER_ALLOWED else package


def check_tree(tree: dict, source, key: str, allow_modules: Sequence[str] = (),
               from_file: bool = True) -> None:
    """Refuses a config tree (read from the file ``source``, or the command's own with
    ``from_file=False``) that names anything :func:`refusal` refuses; the error names the
    config key, the target and how to allow one's own class."""
    for where, target, partial in targets(tree):
        reason = refusal(target, partial, allow_modules)
        if reason is not None:
            raise UserError(
                f"{key}: {source} names '{target}' at {where}, which ecgexp refuses to "
                f"instantiate ({reason}); ecgexp instantiates only the classes of "
                f"ecgexp.registry and those of your own packages allowed on the command line "
                f"({ALLOW_KEY}=[{_example_prefix(target)}])"
                + ("; otherwise the file was not written by ecgexp or was edited"
                   if from_file else ""))
