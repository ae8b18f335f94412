"""Runs the chosen benchmarks, writes ``<output_dir>/<date>-<host>.json`` (``-2``, ``-3``, ...
for the day's later runs: an earlier run's file is never replaced) and prints the table.

The results file holds ``suite`` (date, start, wall time, the resolved bench config, whether
it ``completed``, ``checks``: how many passed and the names of those that failed, ``errors``:
the benchmarks that raised), ``machine`` (CPU count and kernels, torch threads and version,
device) and ``benchmarks``: per name its ``status``, the ``reason`` of a skip or error, its
wall time, its ``figures`` (name, figure, unit, baseline, baseline_name, ratio = figure /
baseline, target ``{op, value}`` or null, met), its ``checks`` (name, passed, observed
difference, tolerance, margin, measure, basis: ``ecgexp.bench.checks``), its ``details``
(every measurement behind the figures) and ``notes``.

``status``: ``ok``; ``failed``: a check failed (its figures are kept and flagged in the
table); ``error``: the benchmark raised (the reason holds the exception, the traceback goes to
stderr; the other benchmarks still run); ``skipped``: it cannot run here (no CUDA). The file
is rewritten after every benchmark, so an interrupted suite keeps what it measured. Failed
checks and errors do not change the exit status: it is 0 whenever the suite ran to its end
and wrote its file (they are reported in the file, the table and the lines under it);
``ecgexp-bench`` fails only on a bad config or an unwritable results folder.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ecgexp.bench.common import Context
from ecgexp.bench.report import (
    Result,
    Skipped,
    machine_facts,
    print_table,
    results_path,
    write_results,
)

# Modules of ecgexp.bench with a ``run(cfg, context) -> Result``, in suite order.
BENCHMARKS = ("training", "backbones", "probe", "dropout", "data", "inference", "predict",
              "preprocess", "bootstrap", "reports", "heatmap", "gpu", "scaling")


def check_names(names: Sequence[str]) -> list[str]:
    """The chosen benchmark names, in suite order; ``ValueError`` listing the valid ones for
    an unknown name."""
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"benchmarks: unknown benchmark {', '.join(map(repr, unknown))}; "
                         f"valid names: {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in names]


def run_benchmark(name: str, cfg: DictConfig, context: Context) -> dict:
    """One benchmark's entry of the results file; any exception it raises is recorded as its
    error."""
    started = time.perf_counter()
    entry = {"status": "ok", "reason": None, "wall_s": None, "figures": [], "checks": [],
             "details": {}, "notes": []}
    try:
        result: Result = importlib.import_module(f"ecgexp.bench.{name}").run(cfg, context)
    except Skipped as skipped:
        entry.update(status="skipped", reason=str(skipped))
    except Exception as error:  # recorded; the suite goes on with the next benchmark
        traceback.print_exc()
        entry.update(status="error", reason=f"{type(error).__name__}: {error}")
    else:
        checks = [check.as_dict() for check in result.checks]
        entry.update(status="ok" if all(check["passed"] for check in checks) else "failed",
                     figures=[figure.as_dict() for figure in result.figures], checks=checks,
                     details=result.details, notes=result.notes)
    entry["wall_s"] = time.perf_counter() - started
    return entry


def summarise(results: dict) -> None:
    """``suite.checks`` (passed count, failed names) and ``suite.errors`` of the results."""
    benchmarks = results["benchmarks"].items()
    checks = [(f"{name}: {check['name']}", check["passed"])
              for name, entry in benchmarks for check in entry["checks"]]
    results["suite"]["checks"] = {"passed": sum(passed for _, passed in checks),
                                  "failed": [name for name, passed in checks if not passed]}
    results["suite"]["errors"] = {name: entry["reason"] for name, entry in benchmarks
                                  if entry["status"] == "error"}


def run_suite(cfg: DictConfig) -> dict:
    """Runs ``cfg.benchmarks``; returns the results (also written and printed)."""
    names = check_names(list(cfg.benchmarks))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    for logger in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    started = time.perf_counter()
    path = results_path(cfg.output_dir)  # chosen once: the file this run replaces as it goes
    results = {"suite": {"date": str(date.today()), "started": datetime.now().isoformat(),
                         "wall_s": None, "completed": False,
                         "config": OmegaConf.to_container(cfg, resolve=True)},
               "machine": machine_facts(cfg.device), "benchmarks": {}}
    if cfg.data_dir:  # kept: the synthetic datasets are written once and reused
        Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
    scratch_folder = (contextlib.nullcontext(cfg.data_dir) if cfg.data_dir
                      else tempfile.TemporaryDirectory(prefix="ecgexp-bench-"))

    def save() -> Path:
        summarise(results)
        results["suite"]["wall_s"] = time.perf_counter() - started
        return write_results(results, path)

    with scratch_folder as scratch:
        context = Context(cfg, Path(scratch))
        for name in names:
            print(f"ecgexp-bench: {name} ...", flush=True)
            results["benchmarks"][name] = entry = run_benchmark(name, cfg, context)
            if entry["status"] == "error":
                print(f"ecgexp-bench: {name}: error: {entry['reason']}", flush=True)
            elif entry["status"] == "failed":
                failed = [check["name"] for check in entry["checks"] if not check["passed"]]
                print(f"ecgexp-bench: {name}: check failed: {'; '.join(failed)}", flush=True)
            save()
    results["suite"]["completed"] = True
    path = save()
    print_table(results)
    print(f"Results: {path}")
    return results
