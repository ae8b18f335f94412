"""Console scripts of this environment run as a user would: in a new process (``run``), or
their entry points called in this process (``run_in_process``: no 6 s of imports)."""

import contextlib
import io
import logging
import logging.config
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig


def run(command: str, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs a console script of this environment as a user would, in ``cwd`` (data in
    ``cwd/data``, W&B offline)."""
    env = {**os.environ, "WANDB_MODE": "offline", "ECGEXP_DATA_DIR": str(cwd / "data")}
    script = Path(sys.executable).parent / command
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


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
