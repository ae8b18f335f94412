"""Shared fixtures: composing the real config tree, a small synthetic dataset."""

import contextlib
import hashlib
import io
import logging
import logging.config
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from omegaconf import open_dict

import ecgexp  # noqa: F401  (registers the OmegaConf resolvers)

# `make test` runs two pytest-xdist workers on the two cores: each computes with one thread
# (its subprocesses too, through OMP_NUM_THREADS), so that the workers do not compete for them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)

CONF_DIR = Path(ecgexp.__file__).parent / "conf"


def _no_test_edits(path: str | Path) -> bool:
    """Whether a config search path (or a file in it) is one no test edits: ecgexp's own tree
    (``CONF_DIR``) or an installed package's (``pkg://``, ``structured://``)."""
    path = str(path)
    return (path.startswith(("pkg://", "structured://"))
            or Path(path.removeprefix("file://")).is_relative_to(CONF_DIR))


def _cached_package_configs() -> None:
    """Hydra parses every YAML file of a config tree again at each compose (about 28 files
    of ecgexp's tree and 5 of Hydra's own for ``train.yaml``: a third of its 0.2 s), and the
    suite composes about 600 times. The files of ecgexp's tree (``CONF_DIR``) and of installed
    packages (``pkg://``), which no test edits, are parsed once per process here and each
    compose gets a copy (keyed by path, size and mtime); any other file is read by Hydra as
    usual."""
    import copy

    from hydra._internal.sources_registry import SourcesRegistry
    from hydra.core.plugins import Plugins
    from hydra.plugins.config_source import ConfigResult

    def package_file(source, config_path: str):
        path = Path(os.path.realpath(os.path.join(source.path,
                                                  source._normalize_file_name(config_path))))
        if _no_test_edits(path) and path.is_file():
            return path, path.stat().st_size, path.stat().st_mtime_ns
        return None

    def cache(scheme: str, key_of) -> None:
        source = SourcesRegistry.instance().resolve(scheme)
        read, parsed = source.load_config, {}

        def load_config(self, config_path: str) -> ConfigResult:
            key = key_of(self, config_path)
            if key is None:
                return read(self, config_path)
            if key not in parsed:
                parsed[key] = read(self, config_path)
            result = parsed[key]  # never handed out: Hydra edits what it gets
            return ConfigResult(provider=result.provider, path=result.path,
                                config=copy.deepcopy(result.config),
                                header=dict(result.header),
                                is_schema_source=result.is_schema_source)

        source.load_config = load_config

    Plugins.instance()  # its first call loads Hydra's config sources anew: patched after it
    cache("file", package_file)
    cache("pkg", lambda source, config_path: (source.path, config_path))


_cached_package_configs()


def _listed_once() -> None:
    """Hydra's ``--help`` lists each config group's options through a new, deep-copied config
    repository per group (about 120 of them: 1 s a help). The listing of ecgexp's own tree and of
    installed packages, which no test edits, is made once per process here (keyed by the search
    path, config, overrides and group); any other search path is listed by Hydra as usual."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    list_options, listed = ConfigLoaderImpl.get_group_options, {}

    def get_group_options(self, group_name, results_filter=ObjectType.CONFIG, config_name=None,
                          overrides=None):
        paths = tuple((entry.provider, entry.path)
                      for entry in self.config_search_path.get_path())
        searched_anew = any("hydra.searchpath" in o for o in overrides or [])
        if searched_anew or not all(_no_test_edits(path) for _, path in paths):
            return list_options(self, group_name, results_filter, config_name, overrides)
        key = (paths, group_name, results_filter, config_name, tuple(overrides or []))
        if key not in listed:
            listed[key] = list_options(self, group_name, results_filter, config_name, overrides)
        return list(listed[key])

    ConfigLoaderImpl.get_group_options = get_group_options


_listed_once()


def task_configs() -> list[str]:
    """Every prediction task of the config tree, found by globbing ``conf/task`` (a task
    whose config names an ``entry``, such as ``heatmap``, runs another function)."""
    import yaml

    return sorted(path.stem for path in (CONF_DIR / "task").glob("*.yaml")
                  if "entry" not in yaml.safe_load(path.read_text()))


TASKS = task_configs()
# The real records the tests read, in the repository (tests/data/README.md: origin, licence).
FIXTURES = Path(__file__).resolve().parent / "data"

# The small network at a quarter of its lengths (a stride-16 stem): a quarter of its FLOPs, for
# the runs that check what a run writes and reads, not what it learns (test_learning.py).
QUARTER_LENGTHS = "model.blocks=[[16,256],[32,64],[48,16],[64,4]]"

# A short `ecgexp` run: small network, tiny synthetic dataset, one epoch of a few batches.
SHORT_RUN = ["experiment=demo", QUARTER_LENGTHS, "dataset.n_exams=120", "trainer.max_epochs=1",
             "+trainer.limit_train_batches=3", "loader.num_workers=0", "loader.batch_size=16",
             "callbacks.progress_bar=null", "dataset.split.val_fraction=0.3",
             "dataset.split.test_fraction=0.3"]


def run(command: str, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs a console script of this environment as a user would, in ``cwd`` (data in
    ``cwd/data``, W&B offline)."""
    env = {**os.environ, "WANDB_MODE": "offline", "ECGEXP_DATA_DIR": str(cwd / "data")}
    script = Path(sys.executable).parent / command
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def run_folders(root: Path) -> list[Path]:
    """The finished run folders (with metrics.json) under ``root``."""
    return sorted(p.parent for p in root.rglob("metrics.json"))


@pytest.fixture(autouse=True, scope="session")
def scan_cache(tmp_path_factory):
    """Tracing-scan caches of the session go to a temporary folder, not ~/.cache."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("ECGEXP_CACHE_DIR")
    os.environ["ECGEXP_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("ECGEXP_CACHE_DIR", None)
    else:
        os.environ["ECGEXP_CACHE_DIR"] = previous


def header_fields(path) -> dict[str, str]:
    """The ``# key: value`` comments of a WFDB header, read here without ecgexp or wfdb."""
    return dict(line[2:].strip().split(": ", 1) for line in Path(path).read_text().splitlines()
                if line.startswith("# ") and ": " in line)


def compose_in(root: Path, *overrides: str, config_name: str = "train"):
    """``train.yaml`` (or ``config_name``) composed with overrides; data, outputs and the run
    folder (``root/run``) under ``root``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=[f"paths.data_dir={root / 'data'}",
                                              f"paths.log_dir={root / 'outputs'}", *overrides])
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / "run")
    return cfg


def compose_config(name: str, *overrides: str):
    """The primary config ``name`` (``evaluate``, ``compare``, ...) composed with overrides."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


def compose_evaluate(*overrides: str):
    """``evaluate.yaml`` composed with overrides."""
    return compose_config("evaluate", *overrides)


@pytest.fixture
def compose_train(tmp_path):
    """Composes ``train.yaml`` with overrides; data and outputs go under ``tmp_path``."""

    def _compose(*overrides: str, config_name: str = "train"):
        return compose_in(tmp_path, *overrides, config_name=config_name)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, options)``: a tmpfs mounted at ``tmp_path / name`` (``size=2m``,
    ``ro,size=1m``), unmounted after the test; skipped where the machine refuses the mount."""
    mounted = []

    def mount(name: str, options: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs ({options}) here: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


# The test files that take longest (seconds of test time on 2 cores, measured with
# --durations=0), run first: `make test` hands whole files to the two xdist workers in
# collection order (--dist loadfile --no-loadscope-reorder), so that the long ones do not start
# last and leave one worker idle at the end.
LONGEST_FIRST = ("test_learning.py", "test_survival_learning.py", "test_heatmap.py",
                 "test_convert.py", "test_distributed.py", "test_evaluate.py", "test_loggers.py",
                 "test_attribution.py", "test_registry.py", "test_predict.py",
                 "test_run_folder.py", "test_compare.py", "test_resume.py", "test_bench.py",
                 "test_memory.py", "test_cli.py", "test_console.py", "test_challenge.py",
                 "test_synthetic.py", "test_config_checks.py", "test_public_datasets.py",
                 "test_tasks.py", "test_experiments.py", "test_sweeps.py", "test_quality.py",
                 "test_no_overwrite.py", "test_evaluate_safety.py", "test_train.py")


def pytest_collection_modifyitems(items):
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: else as found


@pytest.fixture
def margin(record_property):
    """``margin(name, observed, bar, higher=True)``: records how far a learning check passed
    its bar, relative to the bar (0.12: 12 % better than the bar; negative: failed), as the
    test's property ``margin:<name>`` (in ``pytest --junitxml`` reports), so that the margins
    over seeds and CPU kernels are read off a run rather than guessed."""
    def record(name: str, observed: float, bar: float, higher: bool = True) -> None:
        better = observed - bar if higher else bar - observed
        record_property(f"margin:{name}", round(float(better / abs(bar)), 4))
    return record


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The path ``build(folder)`` returns, built once per test session into ``folder``. Under
    pytest-xdist the workers share it: the first to need it builds it under a file lock, the
    others wait for it and reuse it (a build cut short is started again)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built_once"
    root.mkdir(exist_ok=True)
    done = root / f"{name}.done"
    with FileLock(root / f"{name}.lock"):
        if not done.is_file():
            shutil.rmtree(root / name, ignore_errors=True)
            done.with_suffix(".partial").write_text(str(build(root / name)))
            done.with_suffix(".partial").rename(done)
    return Path(done.read_text())


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One finished short run of two epochs (``SHORT_RUN``, CSV history), trained once per
    session (for all workers) and shared: tests copy it before changing anything in it."""
    from ecgexp.train import train

    def build(root: Path) -> Path:
        train(compose_in(root, *SHORT_RUN, "trainer.max_epochs=2"))
        return root / "run"

    return built_once(tmp_path_factory, "trained_run", build)


# A tiny run of any task: 600 synthetic exams, the small network, one epoch of 2 batches.
TINY_RUN = ["model=resnet1d_small", QUARTER_LENGTHS, "dataset.n_exams=600", "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2", "loader.num_workers=0",
            "callbacks.progress_bar=null", "logger=none"]


# A seed-1 tiny run with two external test sets (the same split as the seed-0 one).
EXTERNAL = ("seed=1", "+dataset@test_datasets.ext_a=synthetic", "test_datasets.ext_a.n_exams=24",
            "test_datasets.ext_a.synthesis_seed=5", "+dataset@test_datasets.ext_b=synthetic",
            "test_datasets.ext_b.n_exams=16", "test_datasets.ext_b.synthesis_seed=6")


@pytest.fixture(scope="session")
def task_run(tmp_path_factory):
    """``task_run(task, *overrides, into=folder)``: a finished tiny run (``TINY_RUN``) of
    ``task``, trained once per session (for all workers) for each task and overrides, all on
    one shared synthetic dataset, and copied to ``into`` (a new folder the test may write
    in)."""
    from ecgexp.train import train

    data = built_once(tmp_path_factory, "task_data", lambda folder: folder.mkdir() or folder)
    data = data / "synthetic_n600_seed0"  # generated by the first run, safely if concurrent

    def get(task: str, *overrides: str, into: Path) -> Path:
        key = (task, *overrides)

        def build(folder: Path) -> Path:
            cfg = compose_in(folder, f"task={task}", *TINY_RUN, f"dataset.directory={data}",
                             *overrides)
            train(cfg)
            return Path(cfg.paths.output_dir)

        name = "task_run-" + hashlib.sha1(repr(key).encode()).hexdigest()[:16]
        shutil.copytree(built_once(tmp_path_factory, name, build), into)
        return into

    return get


def damaged(millivolts):
    """40 exams: rows 3 (one NaN), 17 (an Inf lead) and 33 (-Inf) non-finite, 8 and 25 zero."""
    tracings = millivolts[:40].copy()
    tracings[3, 2000, 4] = np.nan
    tracings[17, :, 0] = np.inf
    tracings[33, 5, 11] = -np.inf
    tracings[[8, 25]] = 0.0
    return tracings


# -- console scripts in this process ----------------------------------------------------------


def entry_point(command: str):
    """The function the console script ``command`` calls (pyproject.toml [project.scripts])."""
    return metadata.entry_points(group="console_scripts")[command].load()


def call_entry_point(command: str, patch: pytest.MonkeyPatch, *args: str):
    """Calls the entry point of the console script ``command`` in this process, with
    ``sys.argv`` ``[command, *args]`` and Hydra's global state as in a new process; ``patch``
    puts back ``sys.argv`` and the process-wide ``HydraConfig`` (which a Hydra run sets) when
    it is undone. Returns what the entry point returns; its ``SystemExit`` propagates."""
    entry = entry_point(command)
    patch.setattr(sys, "argv", [command, *args])
    patch.setattr(HydraConfig.instance(), "cfg", None)
    GlobalHydra.instance().clear()
    try:
        return entry()
    finally:
        GlobalHydra.instance().clear()


@dataclass
class Finished:
    """A console script run in this process: the fields of ``subprocess.CompletedProcess``."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def exit_status(code) -> int:
    """The exit status of a process ended by ``SystemExit(code)`` (a message: printed, 1)."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def close_handlers_but(kept: list) -> None:
    """``logging.config._clearExistingHandlers`` (run by each logging config), sparing the
    handlers ``kept`` (weak references, as in ``logging._handlerList``)."""
    logging._handlers.clear()
    closed = [ref for ref in logging._handlerList if ref not in kept]
    logging.shutdown(closed)
    for ref in closed:
        logging._handlerList.remove(ref)


def run_in_process(command: str, cwd: Path, *args: str, env: dict | None = None) -> Finished:
    """``run(command, cwd, *args)`` without starting a process (no 6 s of imports): the console
    script's entry point called here, in ``cwd`` with ``run``'s environment (and ``env``), a new
    process's run token, logging and Hydra state; its stdout and stderr (log lines included)
    captured, its ``SystemExit`` the return code, an uncaught exception a traceback on stderr
    and 1. The working directory, environment, ``sys.argv``, Hydra state and the root logger
    are put back afterwards."""
    from ecgexp.config import run_token

    out, err = io.StringIO(), io.StringIO()
    environ = dict(os.environ)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    run_token.cache_clear()  # a new process: its own token in run folder names
    try:
        with (pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out),
              contextlib.redirect_stderr(err)):
            patch.chdir(cwd)
            for key, value in {"WANDB_MODE": "offline", "ECGEXP_DATA_DIR": str(cwd / "data"),
                               **(env or {})}.items():
                patch.setenv(key, str(value))
            root.handlers = []  # a new process's logging: Hydra's job logging, or stderr
            root.setLevel(logging.WARNING)
            # Hydra's logging config closes every handler of the process: only the run's here
            patch.setattr(logging.config, "_clearExistingHandlers",
                          partial(close_handlers_but, list(logging._handlerList)))
            try:
                call_entry_point(command, patch, *args)
                returncode = 0
            except SystemExit as stopped:
                returncode = exit_status(stopped.code)
            except Exception:  # noqa: BLE001  (what the interpreter does with it)
                traceback.print_exc()
                returncode = 1
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()  # the run's log file
        root.handlers = handlers
        root.setLevel(level)
        run_token.cache_clear()
        for key in set(os.environ) - set(environ):  # set by the run (PL_GLOBAL_SEED, ...)
            del os.environ[key]
        for key, value in environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
    return Finished([command, *args], returncode, out.getvalue(), err.getvalue())


def code15_exams(limit: int | None = None) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The real CODE-15% exams of ``FIXTURES/code15_wfdb`` (the first ``limit`` by name),
    read with wfdb as ADC counts: their header fields, and the tracings (exams, 4096, 12)
    centre-padded with zeros as int16 counts and as float32 mV (gain 1000 adu/mV, checked)."""
    import wfdb

    records = FIXTURES / "code15_wfdb"
    names = sorted(p.stem for p in records.glob("*.hea"))[:limit]
    counts = np.zeros((len(names), 4096, 12), np.int16)
    headers = []
    for i, name in enumerate(names):
        record = wfdb.rdrecord(str(records / name), physical=False)
        assert record.adc_gain == [1000.0] * 12 and record.baseline == [0] * 12
        start = (4096 - record.sig_len) // 2
        counts[i, start:start + record.sig_len] = record.d_signal
        headers.append(dict(c.split(": ", 1) for c in record.comments))
    return headers, counts, (counts / 1000.0).astype(np.float32)

