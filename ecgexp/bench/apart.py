"""Measurements made in a process of their own, so that a peak resident set size (``VmHWM``)
is the measured work's and not the suite's: ``python -m <module> <payload as JSON>``, whose
module defines ``main(payload) -> dict`` and whose last line of output is that dict as JSON
(:func:`main_of`). The scaling, reports and predict-memory benchmarks measure this way.

With ``isolate=false`` (bench.yaml) ``main`` runs in the suite's own process instead, without
the start-up of a new Python process and its imports (the suite's tests do that): times hold,
but peak memory figures then include whatever the suite's process held before.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable

from omegaconf import DictConfig


def measured_apart(cfg: DictConfig, module: str, payload, timeout_s: float, what: str) -> dict:
    """``module``'s ``main(payload)``, in a process of its own unless ``cfg.isolate`` is
    false; a result that went through JSON either way (keys become strings)."""
    text = json.dumps(payload, default=str)
    if not cfg.isolate:
        return json.loads(json.dumps(importlib.import_module(module).main(json.loads(text))))
    finished = subprocess.run([sys.executable, "-m", module, text], capture_output=True,
                              text=True, timeout=timeout_s)
    if finished.returncode:
        raise RuntimeError(f"bench {what}: the measuring process failed:\n"
                           f"{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main_of(main: Callable[[object], dict]) -> None:
    """The ``__main__`` of a measuring module: ``main`` of the payload in ``sys.argv[1]``,
    printed as JSON."""
    print(json.dumps(main(json.loads(sys.argv[1]))))
