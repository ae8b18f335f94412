"""Shared fixtures and pytest hooks: composing the real config tree, short runs trained once
per session, the order of the test files. What tests import by name (helpers, constants) is in
the ``helpers`` package (tests/helpers)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import hydra_cache
from helpers.configs import SHORT_RUN, TINY_RUN, compose_in
from helpers.runs import built_once
from hydra.core.global_hydra import GlobalHydra

import ecgexp  # noqa: F401  (registers the OmegaConf resolvers)

# `make test` runs two pytest-xdist workers on the two cores: each computes with one thread
# (its subprocesses too, through OMP_NUM_THREADS), so that the workers do not compete for them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)

hydra_cache.install()


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
# --durations=0), by their paths under tests/, run first: `make test` hands whole files to the
# two xdist workers in collection order (--dist loadfile --no-loadscope-reorder), so that the
# long ones do not start last and leave one worker idle at the end (tests/unit/test_layout.py
# checks that each is there). test_cli.py comes well after test_run_folder.py, which starts the
# two processes both read (``two_cli_runs``), so that its worker seldom waits for them.
LONGEST_FIRST = ("e2e/test_learning.py", "e2e/test_survival_learning.py",
                 "unit/interpret/test_heatmaps.py", "unit/data/test_convert.py",
                 "e2e/test_distributed.py", "e2e/test_evaluate.py", "e2e/test_models.py",
                 "e2e/test_loggers.py",
                 "unit/interpret/test_attribution.py", "unit/test_registry.py",
                 "e2e/test_predict.py", "unit/test_run_folder.py", "e2e/test_compare.py",
                 "e2e/test_resume.py", "e2e/test_bench.py", "e2e/test_memory.py",
                 "unit/test_console.py", "unit/test_challenge.py",
                 "unit/data/test_synthetic.py", "e2e/test_ptbxl_benchmark.py",
                 "unit/test_config_checks.py",
                 "e2e/test_public_datasets.py", "e2e/test_tasks.py", "e2e/test_experiments.py",
                 "unit/inference/test_export.py", "unit/models/test_heads.py",
                 "e2e/test_sweeps.py", "unit/signal/test_quality.py", "e2e/test_no_overwrite.py",
                 "unit/test_evaluate.py", "unit/test_train.py", "e2e/test_cli.py")

TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}

    def under_tests(item) -> str:
        path = Path(item.path).resolve()
        return path.relative_to(TESTS).as_posix() if path.is_relative_to(TESTS) else str(path)

    items.sort(key=lambda item: rank.get(under_tests(item), len(rank)))  # stable: else as found


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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One finished short run of two epochs (``SHORT_RUN``, CSV history), trained once per
    session (for all workers) and shared: tests copy it before changing anything in it."""
    from ecgexp.train import train

    def build(root: Path) -> Path:
        train(compose_in(root, *SHORT_RUN, "trainer.max_epochs=2"))
        return root / "run"

    return built_once(tmp_path_factory, "trained_run", build)


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


@pytest.fixture(scope="session")
def two_cli_runs(tmp_path_factory) -> list[dict]:
    """Two ``ecgexp`` processes of ``SHORT_RUN`` started together, as a user would start them
    (console script, fresh working directory, its own data folder): the end-to-end proof of the
    script (tests/e2e/test_cli.py) and of one folder per run (tests/unit/test_run_folder.py),
    made once per session for every worker. Each process as ``{"args", "returncode", "stdout",
    "stderr", "cwd"}``; tests only read what they wrote."""

    def build(folder: Path) -> Path:
        folder.mkdir()
        script = str(Path(sys.executable).parent / "ecgexp")
        env = {**os.environ, "WANDB_MODE": "offline", "ECGEXP_DATA_DIR": str(folder / "data")}
        processes = [subprocess.Popen([script, *SHORT_RUN], cwd=folder, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for _ in range(2)]
        finished = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=300)
            finished.append({"args": process.args, "returncode": process.returncode,
                             "stdout": stdout, "stderr": stderr, "cwd": str(folder)})
        (folder / "processes.json").write_text(json.dumps(finished))
        return folder / "processes.json"

    return json.loads(built_once(tmp_path_factory, "two_cli_runs", build).read_text())
