"""Metric reports: flattening for loggers and sweepers, and a printed table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def flatten_report(report: dict, prefix: str = "") -> dict[str, float]:
    """``{"test": {"AF": {"auroc": 0.9}}}`` -> ``{"test/AF/auroc": 0.9}``."""
    flat = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_report(value, f"{name}/"))
        else:
            flat[name] = float(value)
    return flat


def print_report(report: dict, title: str) -> None:
    """One table per split: a row per output (or threshold rule), a column per metric."""
    console = Console(width=120)
    for split, rows in report.items():
        metric_names = list(dict.fromkeys(m for values in rows.values() for m in values))
        table = Table(title=f"{title}: {split} split")
        table.add_column("label")
        for name in metric_names:
            table.add_column(name, justify="right")
        for label, values in rows.items():
            table.add_row(label, *(f"{values[m]:.3f}" if m in values else "" for m in metric_names))
        console.print(table)
