"""A run folder: its files by name (:class:`RunFolder`), finding its config and checkpoints,
reading its config as data, owning it.

Layout (:class:`RunFolder`): ``config.yaml`` (the resolved config),
``checkpoints/{best,last}.ckpt``, ``predictions_<split>.csv``, ``metrics.json``,
``training_statistics.json``, ``provenance.json``, ``quality.csv``, ``history/metrics.csv``
(Lightning's CSV logger), ``report/``, ``heatmaps/`` and ``export/`` (``ecgexp-evaluate``,
``ecgexp-heatmap``, ``ecgexp-export``) and the lock file ``.ecgexp.lock``. Old run folders
load as they are: a ``cli.log`` (the log's name before the commands were modules of their
own) or a ``ckpt`` key in their config is ignored.

Its dataset is found where the run found it (:func:`located_dataset`) and never created. A run
claims its folder (:func:`claim_folder`) and continues in it (:func:`resumed`,
:func:`start_checkpoint`); what its checkpoints carry is :mod:`ecgexp.contract`.

A run folder may come from a colleague or another machine, so its ``config.yaml`` is data
(:func:`config_as_data`): it may instantiate only what :mod:`ecgexp.registry` admits, nothing
in it grants trust or chooses a file to read (:data:`COMMAND_LINE_ONLY`), and a run that
continues or adds to it writes only inside it (:func:`check_writes_inside`,
:func:`check_links_inside`).
"""

from __future__ import annotations

import copy
import fcntl
import fnmatch
import glob
import json
import logging
import math
import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ecgexp.checkpoints import read_checkpoint
from ecgexp.errors import UserError
from ecgexp.registry import ALLOW_KEY, check_prefixes, check_tree, targets

log = logging.getLogger(__name__)
CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
LOCK = ".ecgexp.lock"


@dataclass(frozen=True)
class RunFolder:
    """The files of a run folder (and of a report folder, which holds a run's predictions and
    metrics again), by name: the one place that spells them. ``path`` is the folder."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/<name>.ckpt`` (``best``, ``last``)."""
        return self.checkpoints / f"{name}.ckpt"

    def predictions(self, split: str) -> Path:
        """``predictions_<split>.csv``: a split (train, val, test) or an external set."""
        return self.path / f"predictions_{split}.csv"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def training_statistics(self) -> Path:
        return self.path / "training_statistics.json"

    @property
    def quality(self) -> Path:
        """``quality.csv``: the signal-quality findings of the run's exams, when it checked
        them."""
        return self.path / "quality.csv"

    @property
    def provenance(self) -> Path:
        return self.path / "provenance.json"

    @property
    def report(self) -> Path:
        """``report/``, where ``ecgexp-evaluate`` writes by default."""
        return self.path / "report"

    @property
    def heatmaps(self) -> Path:
        """``heatmaps/``, one folder per ``ecgexp-heatmap`` extraction."""
        return self.path / "heatmaps"

    @property
    def export(self) -> Path:
        """``export/``, where ``ecgexp-export`` writes by default."""
        return self.path / "export"

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    # ------------------------------------------------------------------------- loading
    def load_config(self, key: str = "run", allow_modules: Sequence[str] = ()) -> DictConfig:
        """The resolved config the run stores, read as data (:func:`config_as_data`)."""
        path = self.config
        if not path.is_file():
            raise UserError(f"{key}: '{self.path}' is not a run folder (no {CONFIG})")
        try:
            config = OmegaConf.load(path)
        except (yaml.YAMLError, OmegaConfBaseException, UnicodeDecodeError) as error:
            raise UserError(f"{key}: '{path}' is not a readable config "
                            f"({str(error).splitlines()[0]})") from None
        if not isinstance(config, DictConfig) or isinstance(config, ListConfig):
            raise UserError(f"{key}: '{path}' holds no config mapping")
        return config_as_data(config, path, key, allow_modules)

    @staticmethod
    def find_checkpoint(ckpt: str | Path | None, key: str = "ckpt") -> tuple[Path, Path]:
        """(run folder, checkpoint file) from a run folder (its best, else last checkpoint)
        or a checkpoint inside one (``<run>/checkpoints/<name>.ckpt``)."""
        if ckpt is None:
            raise UserError(f"{key}: give the run folder or checkpoint to use "
                            f"({key}=outputs/<task>/runs/<run>)")
        path = Path(ckpt)
        if path.is_dir():
            candidates = [RunFolder(path).checkpoint("best"), RunFolder(path).checkpoint("last")]
            checkpoint = next((c for c in candidates if c.is_file()), None)
            if checkpoint is None:
                raise UserError(f"{key}: no {CHECKPOINTS}/best.ckpt or last.ckpt in '{path}'")
            return path, checkpoint
        if path.is_file():
            folder = path.parent.parent
            if path.parent.name != CHECKPOINTS or not (folder / CONFIG).is_file():
                raise UserError(f"{key}: '{path}' is not a checkpoint of a run folder "
                                f"(<run>/{CHECKPOINTS}/<name>.ckpt beside <run>/{CONFIG}); give "
                                f"the run folder or a checkpoint inside it")
            return folder, path
        raise UserError(f"{key}: no run folder or checkpoint at '{path}'")

    @staticmethod
    def sweep_members(folder: str | Path) -> list[Path]:
        """The finished run folders of a multirun (``<sweep folder>/<job number>``), in job
        order."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"multirun: no folder '{folder}'")
        members = sorted((p for p in folder.iterdir() if RunFolder(p).metrics.is_file()),
                         key=lambda p: int(p.name) if p.name.isdigit() else math.inf)
        if not members:
            raise FileNotFoundError(f"multirun: no finished run (<job>/"
                                    f"{RunFolder('').metrics}) in '{folder}'")
        return members


# ----------------------------------------------------------------------------- config as data
# Keys that grant trust or choose a file to read: they come from the user's command line only,
# never from a run folder's config or a model card (reset to these values when one is read).
COMMAND_LINE_ONLY = {"ckpt_path": None, "ckpt_trusted": False, "resume": None,
                     ALLOW_KEY: [], "model.weights": None, "model.weights_trusted": False}
# Settings of an instantiated object that name a folder it writes into (checkpoints, loggers,
# the trainer's root): on resume each must lie inside the run folder.
WRITE_KEYS = ("dirpath", "save_dir", "default_root_dir", "root_dir", "log_dir", "dir")


def _distrust(tree) -> None:
    """Sets every ``*trusted*`` key of a nested dict/list tree to false, in place."""
    if isinstance(tree, dict):
        for name, value in tree.items():
            if "trusted" in str(name):
                tree[name] = False
            else:
                _distrust(value)
    elif isinstance(tree, list):
        for value in tree:
            _distrust(value)


# Classes that configs written by an earlier ecgexp name and that have moved since: old name ->
# new name. Such a config is read with the new name (what lerobot's ``_migrate_legacy_*`` do for
# its checkpoints), so that run folders trained before the move still load.
MOVED_TARGETS = {"ecgexp.progress.TrainingProgress": "ecgexp.tasks.callbacks.TrainingProgress",
                 "ecgexp.checks.CheckConfig": "ecgexp.config_checks.CheckConfig"}


def _migrate(tree) -> None:
    """Renames the moved ``_target_`` values of ``tree`` in place (:data:`MOVED_TARGETS`)."""
    if isinstance(tree, dict):
        if tree.get("_target_") in MOVED_TARGETS:
            tree["_target_"] = MOVED_TARGETS[tree["_target_"]]
        for value in tree.values():
            _migrate(value)
    elif isinstance(tree, list):
        for value in tree:
            _migrate(value)


def config_as_data(config: DictConfig, source: Path, key: str = "run",
                   allow_modules: Sequence[str] = ()) -> DictConfig:
    """A config read from ``source`` (a run folder's ``config.yaml``, a model card), resolved
    and checked: every ``_target_`` is in :mod:`ecgexp.registry` or a class of the packages
    in ``allow_modules`` (the command's own ``allow_modules``, never the file's), and the keys
    of :data:`COMMAND_LINE_ONLY` and every ``*trusted*`` key are reset, so that nothing in the
    file grants trust or chooses a file to read. Classes named by their names before a move
    are read with their new names (:data:`MOVED_TARGETS`)."""
    try:
        tree = OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as error:
        raise UserError(f"{key}: '{source}' cannot be resolved ({error}); it is not a config "
                        f"ecgexp wrote") from None
    _migrate(tree)
    entry = (tree.get("task") or {}).get("entry")
    if entry is not None:  # no task names a command (ecgexp-heatmap is a command of its own)
        raise UserError(f"{key}: '{source}' names '{entry}' at task.entry, which ecgexp refuses "
                        f"to call; the file was not written by ecgexp or was edited")
    check_tree(tree, f"'{source}'", key, allow_modules)
    _distrust(tree)
    data = OmegaConf.create(tree)
    for name, value in COMMAND_LINE_ONLY.items():
        if OmegaConf.select(data, name) is not None:
            OmegaConf.update(data, name, value, force_add=False)
    return data


def check_writes_inside(config: DictConfig, folder: Path, key: str) -> None:
    """Refuses a run config that would make its run write outside ``folder``: a
    :data:`WRITE_KEYS` setting of any instantiated object, or ``paths.output_dir``, that does
    not resolve to a path inside it."""
    folder = folder.resolve()

    def outside(value) -> bool:
        return isinstance(value, str) and not Path(value).resolve().is_relative_to(folder)

    tree = OmegaConf.to_container(config, resolve=True)
    found = [("paths.output_dir", (tree.get("paths") or {}).get("output_dir"))]
    for where, _, _ in targets(tree):
        node = OmegaConf.select(config, where) if where != "<root>" else config
        found += [(f"{where}.{name}", node.get(name)) for name in WRITE_KEYS if name in node]
    for where, value in found:
        if outside(value):
            raise UserError(f"{key}: {folder / CONFIG} sets {where} to '{value}', outside the run "
                            f"folder; a run writes only inside its folder (the file was edited: "
                            f"restore {where} under {folder})")


# Subfolders of a run that other programs manage (W&B's offline run links to its own logs).
FOREIGN_FOLDERS = ("wandb",)


def check_links_inside(folder: Path, key: str) -> None:
    """Refuses a run folder holding a symbolic link that leads out of it (a run writing into
    the folder would follow it), outside :data:`FOREIGN_FOLDERS`."""
    root = folder.resolve()
    for parent, names, files in os.walk(folder, followlinks=False):
        if Path(parent) == Path(folder):
            names[:] = [n for n in names if n not in FOREIGN_FOLDERS]
        for name in [*names, *files]:
            path = Path(parent) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise UserError(f"{key}: '{path}' is a link to '{path.resolve()}', outside the "
                                f"run folder; ecgexp writes only inside a run folder and does "
                                f"not follow links out of it: remove the link")


# ----------------------------------------------------------------------------- checkpoints
# ----------------------------------------------------------------------------- moving a run
def relocated(config: DictConfig, folder: Path) -> DictConfig:
    """``config`` of a run folder moved or copied to ``folder``: every string value that
    names the original ``paths.output_dir`` (or a path under it: checkpoints, loggers,
    trainer root) names the same place under ``folder``."""
    original = str(config.paths.output_dir).rstrip("/")
    target = str(Path(folder).resolve())
    tree = OmegaConf.to_container(config, resolve=False)

    def move(value):
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str) and (value == original or value.startswith(original + "/")):
            return target + value[len(original):]
        return value

    return OmegaConf.create(move(tree))


# ----------------------------------------------------------------------------- its data
# Dataset config keys that name files or folders (HDF5Source, CombinedSource, RecordFolderSource
# and the bundled synthetic dataset's ``directory``).
DATA_KEYS = ("directory", "tracing_files", "labels_csv", "extra_labels_csv", "path")


def _data_entries(node, prefix: str = "dataset") -> list[tuple[str, list, object]]:
    """``(config key, parent node, key in parent)`` of every file or folder the dataset config
    names (``DATA_KEYS``, in nested sources too)."""
    entries = []
    for key in node:
        value, name = node[key], f"{prefix}.{key}"
        if key in DATA_KEYS and isinstance(value, str):
            entries.append((name, node, key))
        elif key in DATA_KEYS and isinstance(value, ListConfig):
            entries += [(f"{name}[{i}]", value, i) for i in range(len(value))
                        if isinstance(value[i], str)]
        elif isinstance(value, DictConfig):
            entries += _data_entries(value, name)
    return entries


def _matches(parts: Sequence[str], patterns: Sequence[str]) -> bool:
    return all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts, patterns, strict=True))


def recorded_data_root(run_folder: Path, relative: Sequence[Path]) -> Path | None:
    """The folder the run's relative dataset paths started from when it trained: a dataset
    file recorded (absolute) in its ``provenance.json`` that ends with one of ``relative``
    (globs allowed) gives it; a file under a relative folder (``dataset.path``) as a fallback.
    None without a provenance record or a match."""
    try:
        dataset = json.loads(RunFolder(run_folder).provenance.read_text())["dataset"]
        recorded = [Path(f["path"]) for kind in ("label_files", "tracing_files")
                    for f in dataset.get(kind, [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    relative = [r for r in relative if r.parts and ".." not in r.parts]
    for rel in relative:  # a file (or glob of files): a suffix of a recorded path
        n = len(rel.parts)
        for path in recorded:
            if len(path.parts) > n and _matches(path.parts[-n:], rel.parts):
                return Path(*path.parts[:-n])
    for rel in relative:  # a folder: a recorded file lies under it
        n = len(rel.parts)
        for path in recorded:
            for k in range(len(path.parts) - n - 1, 0, -1):
                if _matches(path.parts[k:k + n], rel.parts):
                    return Path(*path.parts[:k])
    return None


def located_dataset(run_config: DictConfig, run_folder: Path | None = None,
                    data_root: str | Path | None = None, key: str = "dataset_attributes",
                    instead: str = "set dataset_attributes=false") -> DictConfig:
    """The run's config with its relative dataset paths taken from ``data_root``, else from
    the folder the run recorded them in (``provenance.json``), else from here; every dataset
    file or folder it names is checked to exist, so that building the datamodule reads data
    and never creates any (the bundled synthetic dataset is generated where it is missing).
    ``key`` and ``instead`` (what to do without the data) appear in the error."""
    config = copy.deepcopy(run_config)
    entries = _data_entries(config.dataset)
    relative = [Path(parent[k]) for _, parent, k in entries if not Path(parent[k]).is_absolute()]
    root = (Path(data_root) if data_root else
            recorded_data_root(Path(run_folder), relative) if run_folder is not None and relative
            else None)
    if root is not None:
        for _, parent, k in entries:
            if not Path(parent[k]).is_absolute():
                parent[k] = str(root / parent[k])
    origin = (f"data_root={data_root}" if data_root else
              f"from {root}, where {RunFolder(run_folder).provenance} recorded the run's data"
              if root is not None else f"from the working directory {Path.cwd()}")
    for name, parent, k in entries:
        value = str(parent[k])
        found = (glob.glob(value) if any(c in value for c in "*?[") else Path(value).exists())
        if not found:
            raise UserError(f"{key}: the run's {name} '{value}' ({origin}) is not found; a "
                            f"run's dataset is read, never created, from here: {instead}, or "
                            f"data_root=<the folder the run's relative data paths start from>")
    return config


def discard_unused(folder: str | Path, token: str, log_name: str) -> bool:
    """Removes the run folder this process's Hydra created (its name ends with this process's
    ``token``) when a run stopped before writing into it: nothing in it but Hydra's ``.hydra``
    and the log ``log_name``. Returns whether it did; any other folder is left alone."""
    folder = Path(folder)
    if not folder.is_dir() or not folder.name.endswith(f"_{token}"):
        return False
    if not {p.name for p in folder.iterdir()} <= {".hydra", log_name}:
        return False
    shutil.rmtree(folder)
    return True


# ----------------------------------------------------------------------------- ownership
class RunLock:
    """Exclusive ownership of a run folder while a run writes into it: an ``flock`` on
    ``<folder>/.ecgexp.lock``, released when the process ends however it ends (so a killed run
    never leaves a stale lock). A second run on the same folder is refused, naming the owner."""

    def __init__(self, folder: str | Path, key: str = "hydra.run.dir"):
        self.folder = Path(folder)
        self.key = key
        self._handle = None

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(RunFolder(self.folder).lock, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"{self.key}: '{self.folder}' is in use by a live run ({owner}); "
                            f"wait for it to end or choose another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------- continuing a run
# Overrides that may change on resume: they do not change what is learnt.
RESUME_OVERRIDES = ("trainer.max_epochs", "loader.*", "logger", "callbacks.progress_bar",
                    "trainer.enable_progress_bar", "trainer.log_every_n_steps")
RESUME_KEYS = ("resume", "ckpt_trusted", ALLOW_KEY)


def training_checkpoint(path: Path, key: str, trusted: bool) -> dict:
    """The checkpoint at ``path``, read and checked to be one a run can continue from."""
    stored = read_checkpoint(path, key, trusted=trusted, trust_key="ckpt_trusted")
    if not isinstance(stored, dict) or not {"state_dict", "loops", "epoch"} <= set(stored):
        raise UserError(f"{key}: '{path}' is not a training checkpoint of ecgexp (no state_dict "
                        f"and loop state); to start from its weights set model.weights={path}")
    return stored


def command_overrides() -> list[str]:
    """The ``key=value`` overrides of this command (none outside a Hydra run)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _resume_safe(key: str) -> bool:
    return any(key == safe.removesuffix(".*") or key.startswith(safe.removesuffix("*"))
               for safe in RESUME_OVERRIDES)


def apply_resume_overrides(cfg: DictConfig, run_config: DictConfig) -> list[str]:
    """Copies the command's safe overrides (:data:`RESUME_OVERRIDES`) into the resumed run's
    config and returns them; any other override is refused, since the run continues with its
    own config."""
    overrides = [o for o in command_overrides() if _override_key(o) not in RESUME_KEYS]
    refused = [o for o in overrides if not _resume_safe(_override_key(o))]
    if refused:
        raise UserError(
            f"resume: {', '.join(refused)} would change the run being resumed, which continues "
            f"with its own config.yaml; only {', '.join(RESUME_OVERRIDES)} may change on "
            f"resume (start a new run, or a new run from its weights with "
            f"model.weights=<run>/checkpoints/best.ckpt)")
    for override in overrides:
        key = _override_key(override)
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        OmegaConf.update(run_config, key, value, force_add=True)
    return overrides


def resumed(cfg: DictConfig) -> tuple[DictConfig, dict | None]:
    """With ``resume=<run folder>``: that run's own config (checked: :meth:`RunFolder.load_config`),
    moved to the folder given, with the command's safe overrides applied, continuing from its
    ``checkpoints/last.ckpt``; and what to record of the restart. Otherwise ``cfg`` and None.
    Nothing is written here."""
    if not cfg.get("resume"):
        return cfg, None
    folder = Path(cfg.resume).resolve()
    allow_modules = check_prefixes(cfg.get(ALLOW_KEY))
    run_config = RunFolder(folder).load_config("resume", allow_modules)
    check_links_inside(folder, "resume")
    last = RunFolder(folder).checkpoint("last")
    if not last.is_file():
        raise UserError(f"resume: '{folder}' has no {CHECKPOINTS}/last.ckpt to continue from")
    trusted = bool(cfg.get("ckpt_trusted"))
    epoch = training_checkpoint(last, "resume", trusted)["epoch"]
    run_config = relocated(run_config, folder)
    check_writes_inside(run_config, folder, "resume")
    overrides = apply_resume_overrides(cfg, run_config)
    run_config.resume, run_config.ckpt_path, run_config.ckpt_trusted = None, str(last), trusted
    run_config[ALLOW_KEY] = list(allow_modules)
    log.info("resuming %s from %s (epoch %d)%s", folder, last, epoch,
             f" with {', '.join(overrides)}" if overrides else "")
    return run_config, {"checkpoint": str(last), "checkpoint_epoch": epoch,
                        "overrides": overrides}


def start_checkpoint(cfg: DictConfig) -> tuple[Path, int] | None:
    """The checkpoint ``ckpt_path`` names (``last``: the run folder's ``last.ckpt``) and its
    epoch, read and checked before the run touches its folder; None without one."""
    name = cfg.get("ckpt_path")
    if not name:
        return None
    if name == "last":
        path = RunFolder(cfg.paths.output_dir).checkpoint("last")
        if not path.is_file():
            raise UserError(f"ckpt_path: last: no {CHECKPOINTS}/last.ckpt in "
                            f"'{cfg.paths.output_dir}' (hydra.run.dir) to continue from")
    else:
        path = Path(name)
    return path, training_checkpoint(path, "ckpt_path", bool(cfg.get("ckpt_trusted")))["epoch"]


# What a new run's folder may hold when the run claims it: what Hydra wrote for this command
# (its config record and log) and the lock.
HYDRA_ENTRIES = (".hydra", "*.log", LOCK)


def check_new_run_folder(folder: str | Path, continuing: bool, key: str = "hydra.run.dir",
                         ignore: Sequence[str] = ()) -> None:
    """A run writes only into a new or empty folder, or into its own when it continues it:
    a folder that holds a run (``config.yaml``) is refused unless ``continuing``, and one that
    holds anything else (but the entries matching ``ignore``) is refused."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    entries = sorted(p.name for p in folder.iterdir()
                     if not any(fnmatch.fnmatchcase(p.name, pattern) for pattern in ignore))
    if CONFIG in entries:
        if continuing:
            return
        raise UserError(f"{key}: '{folder}' already holds a run ({CONFIG}); choose another "
                        f"folder, or continue that run with resume={folder}")
    if entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise UserError(f"{key}: '{folder}' is not empty ({shown}) and holds no ecgexp run; a "
                        f"run writes only into a new or empty folder, so that nothing in it is "
                        f"replaced: choose another {key}")


def claim_folder(output_dir: Path, continuing: bool) -> RunLock | None:
    """Locks the run folder (rank 0) and refuses one that holds another run, unless this run
    continues it, or anything but what Hydra wrote for this command
    (:func:`check_new_run_folder`)."""
    from pytorch_lightning.utilities import rank_zero_only  # only training needs Lightning

    if rank_zero_only.rank != 0:
        return None
    lock = RunLock(output_dir, key="hydra.run.dir").acquire()
    try:
        check_new_run_folder(output_dir, continuing, ignore=HYDRA_ENTRIES)
    except UserError:
        lock.release()
        raise
    return lock
