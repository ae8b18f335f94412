"""Evaluation figures: ROC/PR, reliability, regression scatter, Bland–Altman, Kaplan–Meier and
hazard-ratio forest plots.

Each ``make_<plot>`` builds a ``matplotlib.figure.Figure`` without pyplot (no global figure
state, no display needed) and :func:`save` writes one as PNG through the Agg canvas. The
``<plot>(..., path)`` functions do both and return the path.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
    binary_roc,
)

from ecgexp.figures import save_figure
from ecgexp.metrics.decision_curve import checked_thresholds, treat_all

DPI = 100
# Fixed margins (fractions of the figure) of the figures drawn for every label and split, whose
# texts do not depend on the data: matplotlib's constrained layout, which measures every text
# at each draw, took 40 % of their time (0.21 s a figure on 2 CPU cores).
ROC_PR_LAYOUT = {"left": 0.07, "right": 0.975, "bottom": 0.12, "top": 0.86, "wspace": 0.22}
RELIABILITY_LAYOUT = {"left": 0.13, "right": 0.97, "bottom": 0.08, "top": 0.95, "hspace": 0.08}
HAZARD_RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)


def save(figure: Figure, path: str | Path) -> Path:
    """Writes ``figure`` to ``path`` as PNG (``DPI`` dots per inch) through
    ``ecgexp.figures.save_figure``: complete or not at all, a report's own figure replaced.
    ``path`` is taken as given: a name built from data (a label) is made safe by the caller
    (``ecgexp.files.confined_path``)."""
    return save_figure(figure, path, DPI, "output_dir")


def _finite_pairs(first, second) -> tuple[np.ndarray, np.ndarray]:
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    keep = np.isfinite(first) & np.isfinite(second)
    if not keep.any():
        raise ValueError("plots: no pair of finite values to plot")
    return first[keep], second[keep]


def make_roc_pr(scores, targets, label: str) -> Figure:
    """ROC (with AUROC and the chance diagonal) and precision–recall (with average precision and
    the prevalence line) of binary ``scores`` against 0/1 ``targets``. Scores outside [0, 1] are
    passed through a sigmoid by torchmetrics, which leaves both curves unchanged."""
    scores, targets = _finite_pairs(scores, targets)
    if set(np.unique(targets)) != {0.0, 1.0}:
        raise ValueError(f"plots: ROC/PR curves of {label!r} need 0/1 targets with both classes")
    s, t = torch.from_numpy(scores), torch.from_numpy(targets).long()
    fpr, tpr, _ = binary_roc(s, t)
    precision, recall, _ = binary_precision_recall_curve(s, t)
    figure = Figure(figsize=(10, 4.5))
    roc, pr = figure.subplots(1, 2, gridspec_kw=ROC_PR_LAYOUT)
    roc.plot(fpr.numpy(), tpr.numpy(), label=f"{label} (AUROC {float(binary_auroc(s, t)):.3f})")
    roc.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    figure.suptitle(label)
    roc.set(title="ROC", xlabel="false positive rate (1 − specificity)",
            ylabel="true positive rate (sensitivity)", xlim=(0, 1), ylim=(0, 1.02))
    average_precision = float(binary_average_precision(s, t))
    pr.plot(recall.numpy(), precision.numpy(), label=f"{label} (AP {average_precision:.3f})")
    pr.axhline(targets.mean(), linestyle="--", color="grey",
               label=f"prevalence {targets.mean():.3f}")
    pr.set(title="Precision–recall", xlabel="recall (sensitivity)",
           ylabel="precision (PPV)", xlim=(0, 1), ylim=(0, 1.02))
    for axes in (roc, pr):
        axes.legend(loc="lower right" if axes is roc else "upper right")
        axes.grid(alpha=0.3)
    return figure


def make_reliability(table: pd.DataFrame) -> Figure:
    """Reliability diagram from a table with one row per probability bin: columns
    ``bin_lower``, ``bin_upper``, ``count``, ``mean_probability`` and ``observed_rate``.

    Top: the observed event rate per bin (bars spanning the bin, points at the bin's mean
    predicted probability) against the diagonal of perfect calibration. Bottom: records per bin.
    Empty bins (no mean probability) draw no point.
    """
    widths = table["bin_upper"] - table["bin_lower"]
    figure = Figure(figsize=(6, 6.5))
    rates, counts = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1],
                                    gridspec_kw=RELIABILITY_LAYOUT)
    rates.bar(table["bin_lower"], table["observed_rate"], width=widths, align="edge",
              alpha=0.3, edgecolor="C0", label="observed rate per bin")
    rates.plot(table["mean_probability"], table["observed_rate"], marker="o", color="C0",
               label="at mean predicted probability")
    rates.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    rates.set(title="Reliability diagram", ylabel="observed event rate", xlim=(0, 1),
              ylim=(0, 1))
    rates.legend(loc="upper left")
    rates.grid(alpha=0.3)
    counts.bar(table["bin_lower"], table["count"], width=widths, align="edge", color="grey")
    counts.set(xlabel="predicted probability", ylabel="records")
    return figure


def make_regression_scatter(predicted, target, unit: str, name: str = "value") -> Figure:
    """Predicted against target ``name`` (both in ``unit``) with the identity line; the mean
    absolute error is in the title. Non-finite pairs are left out."""
    predicted, target = _finite_pairs(predicted, target)
    mae = float(np.mean(np.abs(predicted - target)))
    figure = Figure(figsize=(6, 6), layout="constrained")
    axes = figure.subplots()
    axes.scatter(target, predicted, s=6, alpha=min(1.0, max(0.05, 300 / len(target))),
                 edgecolors="none")
    low, high = min(target.min(), predicted.min()), max(target.max(), predicted.max())
    axes.plot([low, high], [low, high], linestyle="--", color="grey", label="identity")
    axes.set(title=f"Predicted vs true {name}: MAE {mae:.3g} {unit} (n={len(target)})",
             xlabel=f"true {name} ({unit})", ylabel=f"predicted {name} ({unit})")
    axes.set_aspect("equal", adjustable="datalim")
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    return figure


def make_bland_altman(predicted, target, unit: str, name: str = "value") -> Figure:
    """Bland–Altman plot: difference (predicted − target) against the pair mean, both in
    ``unit``, with the mean difference (bias) and the limits of agreement bias ± 1.96 SD
    (sample SD). Non-finite pairs are left out."""
    predicted, target = _finite_pairs(predicted, target)
    mean, difference = (predicted + target) / 2, predicted - target
    bias = float(difference.mean())
    spread = 1.96 * float(difference.std(ddof=1)) if len(difference) > 1 else 0.0
    figure = Figure(figsize=(7, 5), layout="constrained")
    axes = figure.subplots()
    axes.scatter(mean, difference, s=6, alpha=min(1.0, max(0.05, 300 / len(mean))),
                 edgecolors="none")
    axes.axhline(bias, color="C1", label=f"mean difference {bias:.3g} {unit}")
    axes.axhline(bias - spread, color="C1", linestyle="--",
                 label=f"±1.96 SD ({bias - spread:.3g} to {bias + spread:.3g} {unit})")
    axes.axhline(bias + spread, color="C1", linestyle="--")
    axes.set(title=f"Bland–Altman: {name} (n={len(mean)})",
             xlabel=f"mean of predicted and true {name} ({unit})",
             ylabel=f"predicted − true {name} ({unit})")
    axes.legend(loc="upper right")
    axes.grid(alpha=0.3)
    return figure


def make_kaplan_meier(curves: Mapping[Hashable, pd.DataFrame], time_unit: str,
                      at_risk_times: Sequence[float] | None = None) -> Figure:
    """Kaplan–Meier step curves with their confidence bands, one per group, from
    :func:`ecgexp.evaluation.survival.kaplan_meier` (columns ``time`` in ``time_unit``,
    ``survival``, ``lower``, ``upper``, ``at_risk``, ``censored``): censorings are marked
    ``|`` on the curves, and with ``at_risk_times`` a table under the axes gives each group's
    number at risk at those times."""
    figure = Figure(figsize=(7, 6.5 if at_risk_times else 5), layout="constrained")
    if at_risk_times:
        axes, table_axes = figure.subplots(2, 1, height_ratios=[4, 1])
    else:
        axes = figure.subplots()
    for index, (group, curve) in enumerate(curves.items()):
        color = f"C{index % 10}"
        axes.step(curve["time"], curve["survival"], where="post", color=color, label=str(group))
        axes.fill_between(curve["time"], curve["lower"], curve["upper"], step="post",
                          color=color, alpha=0.2)
        censored = curve[curve["censored"] > 0] if "censored" in curve else curve.iloc[:0]
        axes.plot(censored["time"], censored["survival"], "|", color=color, markersize=6)
    axes.set(title="Kaplan–Meier survival", xlabel=f"time ({time_unit})",
             ylabel="survival probability", ylim=(0, 1.02))
    axes.set_xlim(left=0)
    axes.legend(loc="lower left")
    axes.grid(alpha=0.3)
    if at_risk_times:
        rows = [[str(_at_risk(curve, t)) for t in at_risk_times] for curve in curves.values()]
        table_axes.axis("off")
        table_axes.table(cellText=rows, rowLabels=[str(g) for g in curves],
                         colLabels=[f"{t:g} {time_unit}" for t in at_risk_times],
                         loc="center", edges="open")
        table_axes.set_title("numbers at risk", loc="left", fontsize="small")
    return figure


def _at_risk(curve: pd.DataFrame, time: float) -> int:
    """Exams still at risk at ``time``: those at risk at the first curve time at or after it
    (none after the last, where every exam has left)."""
    later = curve[curve["time"] >= time]
    return int(later["at_risk"].iloc[0]) if len(later) else 0


def make_hazard_ratios(table: pd.DataFrame) -> Figure:
    """Forest plot of the ``hazard_ratio`` column with its ``lower``–``upper`` interval, one row
    per index entry (as from :func:`ecgexp.evaluation.survival.cox_hazard_ratios`), on a log
    axis with a reference line at 1 (no effect)."""
    positions = np.arange(len(table))[::-1]
    ratio = table["hazard_ratio"].to_numpy(dtype=np.float64)
    errors = np.vstack([ratio - table["lower"].to_numpy(), table["upper"].to_numpy() - ratio])
    figure = Figure(figsize=(7, max(3.0, 1.5 + 0.5 * len(table))), layout="constrained")
    axes = figure.subplots()
    axes.errorbar(ratio, positions, xerr=errors, fmt="o", capsize=4)
    axes.axvline(1.0, color="grey", linestyle="--")
    axes.set_xscale("log")
    low, high = min(table["lower"].min(), 1.0), max(table["upper"].max(), 1.0)
    ticks = [t for t in HAZARD_RATIO_TICKS if low / 1.5 <= t <= high * 1.5]
    axes.set_xticks(ticks, [f"{t:g}" for t in ticks])
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_yticks(positions, [str(name) for name in table.index])
    axes.set(title="Hazard ratios with confidence intervals",
             xlabel="hazard ratio (log scale)", ylabel="covariate")
    axes.grid(alpha=0.3, axis="x", which="both")
    return figure


def make_decision_curve(curves: Mapping[str, np.ndarray], targets, thresholds,
                        label: str) -> Figure:
    """Net benefit against the threshold probability: one line per model of ``curves``
    (``{name: net_benefit(...)}`` at ``thresholds``), treat all and treat none. The y axis
    spans from a little below 0 to a little above the largest net benefit (treat all falls
    steeply at high thresholds and is cut off)."""
    thresholds = checked_thresholds(thresholds)
    everyone = treat_all(targets, thresholds)
    figure = Figure(figsize=(7, 5), layout="constrained")
    axes = figure.subplots()
    for name, values in curves.items():
        axes.plot(thresholds, values, label=name)
    axes.plot(thresholds, everyone, color="grey", linestyle="--", label="treat all")
    axes.axhline(0, color="black", linewidth=1, label="treat none")
    top = max(0.01, *(float(np.max(v)) for v in [*curves.values(), everyone]))
    axes.set(title=f"Decision curve: {label}", xlabel="threshold probability",
             ylabel="net benefit", xlim=(thresholds.min(), thresholds.max()),
             ylim=(-0.1 * top, 1.1 * top))
    axes.legend(loc="upper right", fontsize="small")
    axes.grid(alpha=0.3)
    return figure
