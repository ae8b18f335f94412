"""Shared output of the benchmark scripts: a JSON file per run and a printed table."""

from __future__ import annotations

import json
import platform
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def write_results(name: str, results: dict) -> Path:
    """Writes ``benchmarks/results/<name>-<date>-<host>.json``; returns its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{date.today()}-{platform.node()}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def print_results(results: dict, decimals: int = 3) -> None:
    width = max(map(len, results)) + 2
    for key, value in results.items():
        shown = f"{value:.{decimals}f}" if isinstance(value, float) else value
        print(f"{key:{width}s} {shown}")
