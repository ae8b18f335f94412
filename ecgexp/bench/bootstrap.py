"""Benchmark 4b, bootstrap: speed of the vectorised bootstrap (``bootstrap_threshold_metrics``)
against a per-resample Python loop computing the same precision, recall, specificity and F1
with NumPy on indexed arrays, on 6 labels x 827 exams and the same resamples.

Uses the published CODE-test DNN scores (``other_seeds/model_1.npy``) and gold standard from
``bootstrap.fixtures`` (by default ``tests/data/code_test`` of the repository) when present,
with the published thresholds; random scores and targets (seed 0) otherwise; the details say
which. Both must give the same intervals exactly: the confusion counts are integers (exact in
float64 matrix products), divided by the same expressions and read by the same percentile
function. Each is timed ``repeats`` times and the best counts. On a few shared cores a
multi-threaded BLAS can slow the small matrix products down; ``OPENBLAS_NUM_THREADS=1`` shows
the difference.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

import ecgexp
from ecgexp.bench.checks import exact
from ecgexp.bench.common import Context, interleaved
from ecgexp.bench.report import Figure, Result
from ecgexp.metrics.bootstrap import (
    bootstrap_threshold_metrics,
    percentile_interval,
    resample_counts,
)

LABELS = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
PUBLISHED_THRESHOLDS = [0.124, 0.07, 0.05, 0.278, 0.390, 0.174]  # docs/studies.md §3.1
COMPARED = ("precision", "recall", "specificity", "f1")
SEED = 123
# A relative ``bootstrap.fixtures`` is read from here: the folder holding the ecgexp package
# (the repository root of a clone), wherever the suite is started from.
PACKAGE_PARENT = Path(ecgexp.__file__).resolve().parent.parent


def load_data(code_test: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``scores (827, 6)``, ``targets (827, 6)``, ``thresholds (6,)`` and which source they
    come from."""
    scores_file = code_test / "dnn_predicts" / "other_seeds" / "model_1.npy"
    targets_file = code_test / "annotations" / "gold_standard.csv"
    if scores_file.exists() and targets_file.exists():
        return (np.load(scores_file).astype(np.float64),
                pd.read_csv(targets_file)[LABELS].to_numpy(),
                np.array(PUBLISHED_THRESHOLDS),
                f"CODE-test model_1 + gold standard ({code_test})")
    rng = np.random.default_rng(0)
    targets = (rng.random((827, 6)) < 0.05).astype(int)
    scores = np.clip(0.5 * targets + rng.normal(0.1, 0.15, (827, 6)), 0, 1)
    return (scores, targets, np.full(6, 0.3),
            f"random (seed 0): no {scores_file.relative_to(code_test)} and "
            f"{targets_file.relative_to(code_test)} in {code_test}")


def loop_bootstrap(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray,
                   n_resamples: int) -> dict:
    """The straightforward version: index the arrays per resample, count, divide."""
    n = len(scores)
    exams = np.arange(n)
    values = {metric: [] for metric in COMPARED}
    with np.errstate(divide="ignore", invalid="ignore"):
        for row in resample_counts(n, n_resamples, SEED):
            idx = np.repeat(exams, row)
            predicted, truth = scores[idx] >= thresholds, targets[idx] == 1
            tp = np.sum(predicted & truth, axis=0)
            fp = np.sum(predicted & ~truth, axis=0)
            tn = np.sum(~predicted & ~truth, axis=0)
            fn = np.sum(~predicted & truth, axis=0)
            values["precision"].append(tp / (tp + fp))
            values["recall"].append(tp / (tp + fn))
            values["specificity"].append(tn / (tn + fp))
            values["f1"].append(2 * tp / (2 * tp + fp + fn))
    return {metric: percentile_interval(np.array(v)) for metric, v in values.items()}


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.bootstrap
    scores, targets, thresholds, source = load_data(PACKAGE_PARENT / settings.fixtures)
    n = settings.resamples
    vectorised = bootstrap_threshold_metrics(scores, targets, thresholds, n, SEED)
    looped = loop_bootstrap(scores, targets, thresholds, n)
    sides = ("lower", "upper")
    same = exact(f"intervals: vectorised vs per-resample loop ({', '.join(COMPARED)})",
                 {(metric, side): vectorised[metric][side]
                  for metric in COMPARED for side in sides},
                 {(metric, side): bound
                  for metric in COMPARED for side, bound in zip(sides, looped[metric])},
                 "integer counts, the same divisions and percentiles")

    def rate(function) -> float:
        started = time.perf_counter()
        function()
        return n / (time.perf_counter() - started)

    rates = interleaved(
        {"vectorised": lambda: rate(lambda: bootstrap_threshold_metrics(
            scores, targets, thresholds, n, SEED)),
         "loop": lambda: rate(lambda: loop_bootstrap(scores, targets, thresholds, n)),
         "resample_counts": lambda: rate(lambda: resample_counts(len(scores), n, SEED))},
        settings.repeats)
    return Result(
        figures=[Figure("resamples/s, vectorised vs per-resample loop",
                        max(rates["vectorised"]), max(rates["loop"]), "resamples/s",
                        "per-resample loop", settings.target)],
        details={"data": source, "exams": len(scores), "labels": scores.shape[1],
                 "resamples": n, "repeats": settings.repeats,
                 "numpy": np.__version__,
                 "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                 "resamples_per_s": rates},
        checks=[same])
