"""Runs the chosen benchmarks, writes ``<output_dir>/<date>-<host>.json`` and prints the table.

The results file holds ``suite`` (date, start, wall time, the resolved bench config),
``machine`` (CPU count, torch threads and version, device) and ``benchmarks``: per name its
``status`` (``ok`` or ``skipped``), the skip ``reason``, its wall time, its ``figures`` (name,
figure, unit, baseline, baseline_name, ratio = figure / baseline, target ``{op, value}`` or
null, met), its ``details`` (every measurement behind the figures) and ``notes``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import tempfile
import time
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ecgexp.bench.common import Context
from ecgexp.bench.report import Result, Skipped, machine_facts, print_table, write_results

# Modules of ecgexp.bench with a ``run(cfg, context) -> Result``, in suite order.
BENCHMARKS = ("training", "data", "inference", "predict", "preprocess", "bootstrap", "heatmap",
              "gpu", "scaling")


def check_names(names: Sequence[str]) -> list[str]:
    """The chosen benchmark names, in suite order; ``ValueError`` listing the valid ones for
    an unknown name."""
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"benchmarks: unknown benchmark {', '.join(map(repr, unknown))}; "
                         f"valid names: {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in names]


def run_benchmark(name: str, cfg: DictConfig, context: Context) -> dict:
    """One benchmark's entry of the results file."""
    module = importlib.import_module(f"ecgexp.bench.{name}")
    started = time.perf_counter()
    try:
        result: Result = module.run(cfg, context)
    except Skipped as skipped:
        return {"status": "skipped", "reason": str(skipped),
                "wall_s": time.perf_counter() - started, "figures": [], "details": {},
                "notes": []}
    return {"status": "ok", "reason": None, "wall_s": time.perf_counter() - started,
            "figures": [figure.as_dict() for figure in result.figures],
            "details": result.details, "notes": result.notes}


def run_suite(cfg: DictConfig) -> dict:
    """Runs ``cfg.benchmarks``; returns the results (also written and printed)."""
    names = check_names(list(cfg.benchmarks))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    for logger in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    started = time.perf_counter()
    results = {"suite": {"date": str(date.today()), "started": datetime.now().isoformat(),
                         "wall_s": None, "config": OmegaConf.to_container(cfg, resolve=True)},
               "machine": machine_facts(cfg.device), "benchmarks": {}}
    if cfg.data_dir:  # kept: the synthetic datasets are written once and reused
        Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
    scratch_folder = (contextlib.nullcontext(cfg.data_dir) if cfg.data_dir
                      else tempfile.TemporaryDirectory(prefix="ecgexp-bench-"))
    with scratch_folder as scratch:
        context = Context(cfg, Path(scratch))
        for name in names:
            print(f"ecgexp-bench: {name} ...", flush=True)
            results["benchmarks"][name] = run_benchmark(name, cfg, context)
    results["suite"]["wall_s"] = time.perf_counter() - started
    path = write_results(results, cfg.output_dir)
    print_table(results)
    print(f"Results: {path}")
    return results
