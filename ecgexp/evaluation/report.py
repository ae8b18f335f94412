"""Metric reports: flattening for loggers and sweepers, and a printed table."""

from __future__ import annotations

import json
import math

from rich.console import Console
from rich.table import Table


def flatten(tree: dict, separator: str = "/", prefix: str = "") -> dict:
    """Nested keys joined by ``separator``: ``{"a": {"b": 1}}`` -> ``{"a/b": 1}``; values
    (lists included) are kept as they are, an empty dict is a value."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, separator, f"{prefix}{key}{separator}"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def flatten_report(report: dict) -> dict[str, float]:
    """``{"test": {"AF": {"auroc": 0.9}}}`` -> ``{"test/AF/auroc": 0.9}`` (what loggers and
    sweepers receive); an undefined value (NaN, or ``null`` read back from ``metrics.json``)
    is NaN."""
    return {name: math.nan if value is None else float(value)
            for name, value in flatten(report).items() if not isinstance(value, dict)}


def _json_value(value):
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def report_json(report: dict) -> str:
    """``report`` as strict JSON (``metrics.json``): an undefined value (NaN) is ``null``, an
    infinite threshold (nothing positive) the string ``"inf"``, which ``float`` and
    ``flatten_report`` read back."""
    return json.dumps(_json_value(report), indent=2, allow_nan=False)


# Metric names that count things (exams, events, ...): whole values print without decimals.
COUNT_NAMES = frozenset({"n", "count", "counts", "exams", "records", "patients", "positives",
                         "negatives", "events", "support", "tp", "fp", "tn", "fn"})


def is_count(metric: str) -> bool:
    """``n``, ``n_*`` and names ending in a count word: ``positives``, ``n_exams``,
    ``event_count``."""
    words = metric.lower().split("_")
    return words[0] == "n" or words[-1] in COUNT_NAMES


def format_value(metric: str, value) -> str:
    """A table cell: a count that is a whole number as an integer (``12``), any other number
    with three decimals (``0.912``, ``nan``), anything else as it is."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if is_count(metric) and number.is_integer():
        return str(int(number))
    return f"{number:.3f}"


def print_report(report: dict, title: str) -> None:
    """One table per split: a row per output (or threshold rule), a column per metric; as wide
    as the terminal (rich's default width when the output is not a terminal). A table too wide
    for it that fits the other way round is printed transposed: a row per metric, a column
    per output."""
    console = Console()
    for split, rows in report.items():
        metric_names = list(dict.fromkeys(m for values in rows.values() for m in values))
        cells = [[format_value(m, values[m]) if m in values else "" for m in metric_names]
                 for values in rows.values()]
        header, body = ["label", *metric_names], [[label, *row]
                                                  for label, row in zip(rows, cells)]
        if _width(header, body) > console.width:
            flipped_header = ["metric", *rows]
            flipped_body = [[name, *column] for name, column in zip(metric_names, zip(*cells))]
            if _width(flipped_header, flipped_body) < _width(header, body):
                header, body = flipped_header, flipped_body
        table = Table(title=f"{title}: {split} split")
        table.add_column(header[0])
        for name in header[1:]:
            table.add_column(name, justify="right")
        for row in body:
            table.add_row(*row)
        console.print(table)


def _width(header: list[str], body: list[list[str]]) -> int:
    """Characters a rich table needs without squeezing: each column's widest cell, its
    padding and the borders."""
    columns = zip(header, *body)
    return sum(max(map(len, column)) + 3 for column in columns) + 1
