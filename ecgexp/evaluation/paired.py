"""The paired statistics of ``ecgexp-compare`` for one pair of aligned predictions tables (the
same exams, in one order): every metric of the task's report with its paired bootstrap
interval and p-value, DeLong's test for the AUROCs and McNemar's test of the thresholded
labels, Holm-corrected across the targets.

The metrics are the task's own (:meth:`Objective.evaluate` on the one table), without the
counts and thresholds; for binary labels, the ranking metrics (AUROC, AP) and the
thresholded ones (precision, recall, specificity, F1 at each run's threshold; none without
one) per label and their macro mean over the labels.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd

from ecgexp.columns import score_of, target_of
from ecgexp.errors import UserError
from ecgexp.evaluation.agreement import mcnemar
from ecgexp.evaluation.binary import (
    missing_class,
    nanmean,
    ranking_scores,
    scores_at_threshold,
    undefined_threshold,
)
from ecgexp.evaluation.report import is_count
from ecgexp.evaluation.tables import first_line
from ecgexp.metrics.bootstrap import Resamples, paired_bootstrap, per_resample
from ecgexp.metrics.confusion import rates, threshold_confusion
from ecgexp.metrics.ranking import Ranking
from ecgexp.metrics.significance import delong_test, holm

log = logging.getLogger(__name__)

PAIR_COLUMNS = ["target", "metric", "value_a", "value_b", "difference", "lower", "upper",
                "test", "p_value", "p_holm"]
THRESHOLDED = ("precision", "recall", "specificity", "f1")


def pairwise(a: pd.DataFrame, b: pd.DataFrame, objective, thresholds_a: dict,
             thresholds_b: dict, settings: tuple[int, int, float],
             validation: tuple[pd.DataFrame | None, pd.DataFrame | None] = (None, None)
             ) -> pd.DataFrame:
    """One row per target (and ``macro``), metric and test of run ``a`` against run ``b``:
    ``bootstrap`` rows for every metric; the AUROC rows of binary labels take DeLong's
    AUROCs and p-value (``test`` ``delong``, the interval stays the bootstrap's);
    ``mcnemar`` rows (metric ``accuracy``) where both runs have a threshold. ``p_holm``:
    Holm across the targets of each metric and test (a ``macro`` row is a family of its
    own). A metric undefined for either run (a label with one class; a thresholded metric
    of a run without threshold) is left out. ``validation``: each run's validation
    predictions, for a task that chooses its thresholds there within its report (the
    AF-risk contrasts)."""
    n_resamples, seed, level = settings
    report_a = report_metrics(objective, a, thresholds_a, validation[0])
    keys = [(row, metric) for row, metrics in report_a.items() for metric in metrics]

    def vector(table: pd.DataFrame, thresholds: dict, val: pd.DataFrame | None) -> np.ndarray:
        report = report_metrics(objective, table, thresholds, val)
        return np.array([report.get(row, {}).get(metric, np.nan) for row, metric in keys])

    def weighted(table: pd.DataFrame, thresholds: dict, val: pd.DataFrame | None):
        """The report's metrics of each resample (counts ``(rows, n)`` to ``(rows, keys)``):
        weighted binary metrics in one pass per chunk, any other task's report per
        resample."""
        labels = binary_labels(objective, table)
        if labels:
            columns = _binary_columns(table, labels, thresholds)
            return lambda counts: _binary_resampled(columns, counts, keys)
        return per_resample(lambda rows: vector(table.iloc[rows], thresholds, val),
                            [np.arange(len(table))])

    value_a = np.array([report_a[row][metric] for row, metric in keys])
    value_b = vector(b, thresholds_b, validation[1])
    with _quiet():
        resampled = paired_bootstrap(weighted(a, thresholds_a, validation[0]),
                                     weighted(b, thresholds_b, validation[1]),
                                     Resamples(len(a), n_resamples, seed), level)
    rows = [{"target": row, "metric": metric, "value_a": value_a[k], "value_b": value_b[k],
             "difference": resampled["difference"][k], "lower": resampled["lower"][k],
             "upper": resampled["upper"][k], "test": "bootstrap",
             "p_value": resampled["p_value"][k]}
            for k, (row, metric) in enumerate(keys)
            if np.isfinite(value_a[k]) and np.isfinite(value_b[k])]
    for name in binary_labels(objective, a):
        rows += _binary_tests(rows, name, a, b, thresholds_a.get(name), thresholds_b.get(name))
    table = pd.DataFrame(rows, columns=PAIR_COLUMNS[:-1])
    order = {row: i for i, row in enumerate(dict.fromkeys(row for row, _ in keys))}
    table = table.sort_values("target", key=lambda s: s.map(order), kind="stable")
    table = table.reset_index(drop=True)
    table["p_holm"] = np.nan
    summary = table.target == "macro"  # one test of its own, not one of the labels' family
    for _, group in table.groupby(["test", "metric", summary]):
        table.loc[group.index, "p_holm"] = holm(group.p_value.to_numpy())
    return table


def report_metrics(objective, table: pd.DataFrame, thresholds: dict,
                   validation: pd.DataFrame | None = None) -> dict[str, dict]:
    """``{row: {metric: value}}`` of one predictions table: binary labels as in the module
    docstring, any other task through its own report (counts and thresholds left out; with
    the ``validation`` predictions when given)."""
    labels = binary_labels(objective, table)
    if labels:
        rows = {label: _binary_metrics(table, label, thresholds.get(label)) for label in labels}
        if len(labels) > 1:
            rows["macro"] = {metric: nanmean([rows[label][metric] for label in labels])
                             for metric in rows[labels[0]]}
        return rows
    predictions = {"test": table} if validation is None else {"val": validation, "test": table}
    try:
        report = objective.evaluate(predictions)["test"]
    except ValueError as error:  # e.g. thresholds chosen on a validation split it lacks
        raise UserError(f"runs: {first_line(error)}; compare run folders with their "
                        f"validation predictions") from None
    return {row: {metric: float(value) for metric, value in metrics.items()
                  if metric != "threshold" and not is_count(metric)
                  and isinstance(value, (int, float))}
            for row, metrics in report.items()}


def binary_labels(objective, table: pd.DataFrame) -> list[str]:
    """The binary labels of a multi-label or binary task (``score_<label>`` columns)."""
    return [name for name in objective.thresholded_labels if score_of(name) in table]


def _binary_metrics(table: pd.DataFrame, label: str, threshold: float | None) -> dict:
    scores = table[score_of(label)].to_numpy()
    targets = table[target_of(label)].to_numpy().astype(int)
    if missing_class(targets) is not None:
        return {"auroc": np.nan, "ap": np.nan, **dict.fromkeys(THRESHOLDED, np.nan)}
    return {**ranking_scores(scores, targets), **scores_at_threshold(scores, targets, threshold)}


def _binary_columns(table: pd.DataFrame, labels: list[str], thresholds: dict) -> dict:
    """``{label: (targets, Ranking, Confusion at the threshold or None)}`` of a predictions
    table, built once for every chunk of resamples."""
    columns = {}
    for label in labels:
        scores = table[score_of(label)].to_numpy(float)
        targets = table[target_of(label)].to_numpy().astype(int)
        threshold = thresholds.get(label)
        columns[label] = (targets, Ranking(scores, targets),
                          None if undefined_threshold(threshold)
                          else threshold_confusion(scores, targets, threshold))
    return columns


def _binary_resampled(columns: dict, counts: np.ndarray,
                      keys: list[tuple[str, str]]) -> np.ndarray:
    """:func:`report_metrics` of binary labels (``_binary_columns``) for each row of
    ``counts (rows, n)``: ``(rows, keys)``, NaN where a key is undefined (every metric of a
    label whose resample lacks a class, as for the full table)."""
    values, labels = {}, list(columns)
    for label, (targets, ranking, confusion) in columns.items():
        both = (counts @ targets > 0) & (counts @ (1 - targets) > 0)
        metrics = {"auroc": ranking.auroc(counts), "ap": ranking.average_precision(counts)}
        at = (dict.fromkeys(THRESHOLDED, np.full(len(counts), np.nan)) if confusion is None
              else rates(**confusion.counts(counts)))
        metrics.update({name: np.where(both, at[name], np.nan) for name in THRESHOLDED})
        values.update({(label, name): value for name, value in metrics.items()})
    if len(labels) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all labels undefined: NaN
            for name in ("auroc", "ap", *THRESHOLDED):
                values[("macro", name)] = np.nanmean(
                    np.stack([values[(label, name)] for label in labels]), axis=0)
    missing = np.full(len(counts), np.nan)
    return np.stack([values.get(key, missing) for key in keys], axis=-1)


def _binary_tests(rows: list[dict], name: str, a: pd.DataFrame, b: pd.DataFrame,
                  threshold_a: float | None, threshold_b: float | None) -> list[dict]:
    """DeLong's AUROCs and p-value into the label's AUROC row; its McNemar row, returned."""
    target = a[target_of(name)].to_numpy().astype(int)
    if missing_class(target) is not None:
        log.warning("compare: label '%s' has one class in the compared exams; its AUROC "
                    "difference is undefined and it is left out", name)
        return []
    scores_a, scores_b = a[score_of(name)].to_numpy(), b[score_of(name)].to_numpy()
    auroc = next(row for row in rows if (row["target"], row["metric"]) == (name, "auroc"))
    delong = delong_test(scores_a, scores_b, target)  # exact (float64) AUROCs from midranks
    auroc.update(value_a=delong["auroc_a"], value_b=delong["auroc_b"],
                 difference=delong["difference"], test="delong", p_value=delong["p_value"])
    if any(t is None or undefined_threshold(t) for t in (threshold_a, threshold_b)):
        return []
    labels_a = (scores_a >= threshold_a).astype(int)
    labels_b = (scores_b >= threshold_b).astype(int)
    accuracy_a, accuracy_b = float(np.mean(labels_a == target)), float(np.mean(labels_b == target))
    return [{"target": name, "metric": "accuracy", "value_a": accuracy_a, "value_b": accuracy_b,
             "difference": accuracy_a - accuracy_b, "lower": np.nan, "upper": np.nan,
             "test": "mcnemar", "p_value": mcnemar(labels_a, labels_b, target)["p_value"]}]


@contextmanager
def _quiet():
    """No log line or warning from the metrics of a resample (a resample may lack a class
    or an event; the full table's warnings have been given)."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
