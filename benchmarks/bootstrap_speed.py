"""Speed of the vectorised bootstrap (``bootstrap_threshold_metrics``) against a per-resample
Python loop computing the same precision, recall, specificity and F1 with NumPy on indexed
arrays, on 6 labels x 827 exams and the same resamples.

    .venv/bin/python benchmarks/bootstrap_speed.py [n_resamples] [repeats]

Uses the published CODE-test DNN scores (``other_seeds/model_1.npy``) and gold standard from
``../shared/fixtures/code_test`` when present, with the published thresholds; random scores and
targets (seed 0) otherwise. Checks that both give the same intervals, prints both times (best
of ``repeats``) and their ratio, and writes them as JSON to
``benchmarks/results/bootstrap-<date>-<host>.json``. On a few shared cores, a multi-threaded
BLAS can slow the small matrix products down; ``OPENBLAS_NUM_THREADS=1`` shows the difference.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from report import print_results, write_results

from ecgexp.evaluation.bootstrap import (
    bootstrap_threshold_metrics,
    percentile_interval,
    resample_counts,
)

CODE_TEST = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "code_test"
LABELS = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
PUBLISHED_THRESHOLDS = [0.124, 0.07, 0.05, 0.278, 0.390, 0.174]  # studies.md §3.1
COMPARED = ("precision", "recall", "specificity", "f1")
SEED = 123


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``scores (827, 6)``, ``targets (827, 6)``, ``thresholds (6,)`` and the source's name."""
    scores_file = CODE_TEST / "dnn_predicts" / "other_seeds" / "model_1.npy"
    targets_file = CODE_TEST / "annotations" / "gold_standard.csv"
    if scores_file.exists() and targets_file.exists():
        return (np.load(scores_file).astype(np.float64),
                pd.read_csv(targets_file)[LABELS].to_numpy(),
                np.array(PUBLISHED_THRESHOLDS), "CODE-test model_1 + gold standard")
    rng = np.random.default_rng(0)
    targets = (rng.random((827, 6)) < 0.05).astype(int)
    scores = np.clip(0.5 * targets + rng.normal(0.1, 0.15, (827, 6)), 0, 1)
    return scores, targets, np.full(6, 0.3), "random (seed 0)"


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


def best_time(function, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def main(n_resamples: int = 1000, repeats: int = 10) -> dict:
    scores, targets, thresholds, source = load_data()
    vectorised_s, vectorised = best_time(
        lambda: bootstrap_threshold_metrics(scores, targets, thresholds, n_resamples, SEED),
        repeats)
    loop_s, looped = best_time(
        lambda: loop_bootstrap(scores, targets, thresholds, n_resamples), repeats)
    for metric in COMPARED:
        for side, bound in zip(("lower", "upper"), looped[metric]):
            assert np.allclose(vectorised[metric][side], bound, equal_nan=True), (metric, side)
    counts_s, _ = best_time(lambda: resample_counts(len(scores), n_resamples, SEED), repeats)
    results = {"data": source, "exams": len(scores), "labels": scores.shape[1],
               "n_resamples": n_resamples, "repeats": repeats,
               "numpy": np.__version__, "python": platform.python_version(),
               "cpu_count": os.cpu_count(),
               "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
               "vectorised_s": vectorised_s, "loop_s": loop_s,
               "ratio_loop_to_vectorised": loop_s / vectorised_s,
               "resample_counts_s": counts_s, "same_intervals": True}
    write_results("bootstrap", results)
    return results


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:]]
    print_results(main(*arguments), decimals=4)
