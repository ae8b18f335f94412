"""``ecgexp-compare``: two or more runs of one task compared on the exams they share, with
paired statistics (:mod:`ecgexp.evaluation.comparison`), each run against the first.

Per binary label: both AUROCs, their difference with DeLong's test and a paired bootstrap
interval, and McNemar's test of the labels thresholded at each run's own validation
threshold against the targets; p-values Holm-corrected across the labels (per run pair and
test). Per regression target: both MAEs and the difference's paired bootstrap interval and
p-value. Runs must have predicted the same exams of the split (checked by exam id, refused
with the counts unless ``allow_partial``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from ecgexp.errors import UserError
from ecgexp.evaluation.agreement import mcnemar
from ecgexp.evaluation.binary import ranking_scores, undefined_threshold
from ecgexp.evaluation.comparison import delong_test, holm, paired_bootstrap
from ecgexp.evaluation.inputs import load_run
from ecgexp.evaluation.outputs import REPORT_MARKER, check_report_folder, write_table
from ecgexp.files import make_folder

log = logging.getLogger(__name__)


def compare(cfg: DictConfig) -> pd.DataFrame:
    """Writes ``comparison.csv``/``.md`` into ``cfg.output_dir``; returns the table."""
    runs = [Path(r) for r in cfg.runs]
    if len(runs) < 2:
        raise UserError("runs: give two or more run folders to compare, runs=[<A>,<B>]")
    loaded = [load_run(folder, "runs") for folder in runs]
    tasks = {config.task.name for config, _ in loaded}
    if len(tasks) > 1:
        raise UserError(f"runs: the runs are of different tasks ({', '.join(sorted(tasks))}); "
                        f"compare runs of one task")
    objective = instantiate(loaded[0][0].task.objective)
    tables = []
    for folder, (_, predictions) in zip(runs, loaded):
        if cfg.split not in predictions:
            raise UserError(f"split: '{folder}' has no predictions_{cfg.split}.csv (splits: "
                            f"{', '.join(predictions)})")
        tables.append(predictions[cfg.split])
    tables = aligned(tables, runs, bool(cfg.allow_partial))
    thresholds = [objective.thresholds(objective.evaluate(p)) if "val" in p else {}
                  for _, p in loaded]
    settings = (int(cfg.bootstrap.n_resamples), int(cfg.bootstrap.seed))
    rows = []
    for other in range(1, len(runs)):
        pair = pairwise(tables[0], tables[other], objective, thresholds[0],
                        thresholds[other], settings)
        rows.append(pair.assign(model_a=str(runs[0]), model_b=str(runs[other])))
    table = pd.concat(rows, ignore_index=True)
    table = table[["model_a", "model_b", *[c for c in table.columns
                                           if c not in ("model_a", "model_b")]]]
    out = Path(cfg.output_dir)
    check_report_folder(out)
    make_folder(out, "output_dir")
    (out / REPORT_MARKER).touch()
    write_table(table, out / "comparison")
    print(table.drop(columns=["model_a", "model_b"]).to_string(index=False))
    print(f"Comparison: {(out / 'comparison.csv').resolve()}")
    return table


def aligned(tables: list[pd.DataFrame], runs: list[Path], allow_partial: bool
            ) -> list[pd.DataFrame]:
    """The tables restricted to their shared exams, in one exam order; refused with the
    counts when the runs predicted different exams (unless ``allow_partial``)."""
    shared = set(tables[0].exam_id)
    for table in tables[1:]:
        shared &= set(table.exam_id)
    for folder, table in zip(runs, tables):
        if len(shared) < len(table) and not allow_partial:
            raise UserError(f"runs: the runs share {len(shared)} exams, but '{folder}' "
                            f"predicted {len(table)} (different splits or datasets); compare "
                            f"runs of one split, or set allow_partial=true to compare the "
                            f"shared exams only")
    if not shared:
        raise UserError("runs: the runs share no exam; they predicted different datasets")
    order = sorted(shared, key=str)
    return [t.set_index("exam_id").loc[order].reset_index() for t in tables]


def pairwise(a: pd.DataFrame, b: pd.DataFrame, objective, thresholds_a: dict,
             thresholds_b: dict, settings: tuple[int, int]) -> pd.DataFrame:
    """One row per target and test of run ``a`` against run ``b`` (aligned tables)."""
    n_resamples, seed = settings
    rows = []
    for name in objective.target_columns:
        target = a[f"target_{name}"].to_numpy()
        if f"score_{name}" in a:
            rows += _binary_rows(name, a[f"score_{name}"].to_numpy(),
                                 b[f"score_{name}"].to_numpy(), target.astype(int),
                                 thresholds_a.get(name), thresholds_b.get(name), n_resamples,
                                 seed)
        elif f"predicted_{name}" in a:
            errors_a = a[f"predicted_{name}"].to_numpy() - target
            errors_b = b[f"predicted_{name}"].to_numpy() - target
            test = paired_bootstrap(_mae, [errors_a], [errors_b], n_resamples, seed)
            rows.append({"target": name, "metric": "mae", "value_a": _mae(errors_a),
                         "value_b": _mae(errors_b), "difference": test["difference"],
                         "lower": test["lower"], "upper": test["upper"], "test": "bootstrap",
                         "p_value": test["p_value"]})
    table = pd.DataFrame(rows)
    table["p_holm"] = np.nan
    for _, group in table.groupby("test"):
        table.loc[group.index, "p_holm"] = holm(group.p_value.to_numpy())
    return table


def _binary_rows(name, scores_a, scores_b, target, threshold_a, threshold_b, n_resamples, seed):
    if len(np.unique(target)) < 2:
        log.warning("compare: label '%s' has one class in the compared exams; its AUROC "
                    "difference is undefined and it is left out", name)
        return []
    delong = delong_test(scores_a, scores_b, target)
    bootstrap = paired_bootstrap(_auroc, [scores_a, target], [scores_b, target], n_resamples,
                                 seed)
    rows = [{"target": name, "metric": "auroc", "value_a": delong["auroc_a"],
             "value_b": delong["auroc_b"], "difference": delong["difference"],
             "lower": bootstrap["lower"], "upper": bootstrap["upper"], "test": "delong",
             "p_value": delong["p_value"]}]
    if threshold_a is None or threshold_b is None or undefined_threshold(threshold_a) \
            or undefined_threshold(threshold_b):
        return rows
    labels_a, labels_b = (scores_a >= threshold_a).astype(int), (scores_b >= threshold_b)
    test = mcnemar(labels_a, labels_b.astype(int), target)
    accuracy_a, accuracy_b = float(np.mean(labels_a == target)), float(np.mean(labels_b == target))
    rows.append({"target": name, "metric": "accuracy", "value_a": accuracy_a,
                 "value_b": accuracy_b, "difference": accuracy_a - accuracy_b, "lower": np.nan,
                 "upper": np.nan, "test": "mcnemar", "p_value": test["p_value"]})
    return rows


def _mae(errors: np.ndarray) -> float:
    return float(np.mean(np.abs(errors)))


def _auroc(scores: np.ndarray, targets: np.ndarray) -> float:
    if len(np.unique(targets)) < 2:
        return np.nan
    return ranking_scores(scores, targets.astype(int))["auroc"]
