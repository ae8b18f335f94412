"""What a benchmark returns (figures against baselines, targets, its correctness checks), the
suite's results file and its printed table."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ecgexp.bench.checks import Check
from ecgexp.files import write_text_atomic

TARGET_SIGNS = {"at_least": ">=", "at_most": "<="}


@dataclass
class Figure:
    """One measured figure against a baseline measured in the same run.

    ``ratio`` is always ``value / baseline``. ``target`` is the ratio it should reach:
    ``at_least`` (throughput: higher is better) or ``at_most`` (time, memory); ``None`` when the
    figure is only reported.
    """

    name: str
    value: float
    baseline: float
    unit: str
    baseline_name: str
    target: float | None = None
    direction: str = "at_least"

    def __post_init__(self) -> None:
        self.value, self.baseline = float(self.value), float(self.baseline)
        if self.direction not in TARGET_SIGNS:
            raise ValueError(f"Figure {self.name}: direction must be one of {list(TARGET_SIGNS)}")

    @property
    def ratio(self) -> float:
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.direction == "at_least" else (
            self.ratio <= self.target)

    def as_dict(self) -> dict:
        target = (None if self.target is None
                  else {"op": TARGET_SIGNS[self.direction], "value": self.target})
        return {"name": self.name, "figure": self.value, "unit": self.unit,
                "baseline": self.baseline, "baseline_name": self.baseline_name,
                "ratio": self.ratio, "target": target, "met": self.met}


@dataclass
class Result:
    """A benchmark's figures, the measurements behind them (``details``), short notes printed
    under the table (bounds, what a target depends on) and the checks that its two sides
    computed the same thing (a failed one flags the figures; the benchmark still reports
    them)."""

    figures: list[Figure] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


class Skipped(Exception):
    """Raised by a benchmark that cannot run here (e.g. no CUDA device); the message is the
    recorded reason."""


def machine_facts(device: str) -> dict:
    """CPU count, torch threads and versions, the CPU kernels torch dispatches to
    (``ATEN_CPU_CAPABILITY``: DEFAULT, AVX2, AVX512), and the device the benchmarks ran on."""
    cuda = torch.cuda.is_available()
    return {"host": platform.node(), "cpu_count": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "processor": platform.processor()
            or platform.machine(), "device": device, "cuda_available": cuda,
            "cuda_device": torch.cuda.get_device_name() if cuda else None}


def results_path(output_dir: str | Path) -> Path:
    """A new results file of this suite run: ``<output_dir>/<date>-<host>.json``, or
    ``<date>-<host>-<k>.json`` (k = 2, 3, ...) when the day's earlier runs hold those names:
    an earlier run's results are never replaced."""
    stem = f"{date.today()}-{platform.node()}"
    path, k = Path(output_dir) / f"{stem}.json", 2
    while path.exists():
        path, k = Path(output_dir) / f"{stem}-{k}.json", k + 1
    return path


def write_results(results: dict, path: Path) -> Path:
    """Writes (replaces) this suite run's own results file ``path``, whole: under a
    temporary name, then renamed, so that a suite killed while writing (it writes after every
    benchmark) leaves the previous version; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, json.dumps(results, indent=2, default=_plain),
                             key="output_dir", replace=True)


def _plain(value):
    """NumPy scalars and arrays as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    shown = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{shown} {unit}".strip()


def print_table(results: dict, console: Console | None = None) -> None:
    """One row per figure: benchmark, figure, value, baseline, ratio, target, met; a benchmark
    whose check failed has its figures flagged and a row per failed check; a skipped benchmark
    or one that raised has a row with its reason (first line); then each benchmark's notes and
    the checks' summary."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file or a pipe: room for the whole table
            console = Console(width=160)
    table = Table(title=f"ecgexp-bench {results['suite']['date']} on {results['machine']['host']}"
                        f" ({results['machine']['device']}, {results['suite']['wall_s']:.0f} s)")
    for column in ("benchmark", "figure", "value", "baseline", "ratio", "target", "met"):
        table.add_column(column, justify="right" if column in ("value", "ratio") else "left")
    for name, entry in results["benchmarks"].items():
        if entry["status"] in ("skipped", "error"):
            reason = entry["reason"].splitlines()[0]
            table.add_row(name, escape(f"{entry['status']}: {reason}"), "", "", "", "",
                          "" if entry["status"] == "skipped" else "[bold red]ERROR[/]")
            continue
        flag = "[bold red](check failed)[/] " if entry["status"] == "failed" else ""
        for figure in entry["figures"]:
            target = figure["target"]
            met = {None: "", True: "yes", False: "NO"}[figure["met"]]
            table.add_row(name, flag + escape(figure["name"]),
                          _number(figure["figure"], figure["unit"]),
                          f"{_number(figure['baseline'], figure['unit'])} "
                          f"({escape(figure['baseline_name'])})",
                          f"{figure['ratio']:.3f}",
                          "" if target is None else f"{target['op']} {target['value']}", met)
        for check in entry["checks"]:
            if not check["passed"]:
                table.add_row(name, escape(f"check failed: {check['name']} "
                                           f"({check['measure']})"),
                              f"{check['observed']:.3g}", "", "",
                              f"<= {check['tolerance']:.3g}", "[bold red]FAILED[/]")
    console.print(table)
    for name, entry in results["benchmarks"].items():
        for note in entry.get("notes", []):
            console.print(f"[bold]{name}[/bold]: {escape(note)}", highlight=False)
    print_checks(results, console)


def print_checks(results: dict, console: Console) -> None:
    """How many checks passed and the smallest margin (tolerance / difference seen); every
    failed check and benchmark error in full."""
    summary = results["suite"]["checks"]
    margins = [(check["margin"], f"{name}: {check['name']}")
               for name, entry in results["benchmarks"].items() for check in entry["checks"]
               if check["passed"] and check["margin"] is not None]
    smallest = (f" (smallest margin {min(margins)[0]:.3g}x: {min(margins)[1]})"
                if margins else "")
    console.print(escape(f"checks: {summary['passed']} passed, {len(summary['failed'])} "
                         f"failed{smallest}"), highlight=False)
    for name, entry in results["benchmarks"].items():
        for check in entry["checks"]:
            if not check["passed"]:
                console.print(f"[bold red]CHECK FAILED[/] {escape(name)}: "
                              f"{escape(_check_line(check))}", highlight=False)
        if entry["status"] == "error":
            console.print(f"[bold red]ERROR[/] {escape(name)}: {escape(entry['reason'])}",
                          highlight=False)


def _check_line(check: dict) -> str:
    return (f"{check['name']}: {check['measure']} {check['observed']:.3g} > tolerance "
            f"{check['tolerance']:.3g} ({check['basis']})")
