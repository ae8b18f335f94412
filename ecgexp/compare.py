"""``ecgexp-compare``: two or more runs of one task (``runs=``, or every member of a sweep,
``multirun=``), or prediction files (:mod:`ecgexp.evaluation.entries`), compared on
the exams they share, with paired statistics (:mod:`ecgexp.metrics.significance`), each
against the first (``reference=first``) or against the run of the best validation metric
(``reference=best``).

``comparison`` (:mod:`ecgexp.evaluation.paired`): every metric of the task's report
(per binary label and their macro mean: AUROC, AP, precision, recall, specificity, F1; per
regression target: MAE, RMSE, R², Pearson's r; survival: Harrell's and Uno's C,
time-dependent AUROCs, IBS; ...) for both entries, with the difference's paired bootstrap
interval and p-value; AUROC differences take DeLong's test, and McNemar's test compares the
labels thresholded at each run's own validation threshold (or ``thresholds=``). p-values are
Holm-corrected across the targets (per pair, metric and test). The entries must have predicted
the same exams (checked by exam id, refused with the counts unless ``allow_partial``).

Beside it, for every binary label of every run on the same exams: ``calibration`` (ECE,
calibration slope and intercept) and the decision curve (``decision_curve`` table and a
figure per label); for ``multirun=``, ``members``: each member's differing overrides and
metrics (members are compared, never averaged). Each table is CSV beside Markdown.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ecgexp.columns import score_of, target_of
from ecgexp.config_checks import check
from ecgexp.errors import UserError
from ecgexp.evaluation import plots
from ecgexp.evaluation.analyses import figure_path
from ecgexp.evaluation.entries import (
    Compared,
    best_first,
    check_probabilities,
    compared_entries,
    member_table,
    run_folders,
)
from ecgexp.evaluation.outputs import write_table
from ecgexp.evaluation.paired import pairwise
from ecgexp.files import check_new_folder, distinct_file_names, staged_folder
from ecgexp.metrics.calibration import calibration_slope, expected_calibration_error
from ecgexp.metrics.decision_curve import net_benefit, treat_all
from ecgexp.tasks.objectives import MultiLabel

log = logging.getLogger(__name__)

# The decision-curve reference written to its table beside the runs (treating none is 0).
TREAT_ALL = "treat all"


def compare(cfg: DictConfig) -> pd.DataFrame:
    """Writes the comparison tables and figures into ``cfg.output_dir`` (and, with
    ``report_logger=wandb``, a W&B run of job type ``compare``); returns the comparison."""
    check(cfg, "compare")  # also when called from Python, without the command's callback
    thresholds_grid = decision_thresholds(cfg)
    entries, key = run_folders(cfg)
    if cfg.get("reference", "first") == "best":
        entries = best_first(entries, key)
    out = Path(cfg.output_dir)
    check_new_folder(out, "output_dir", "comparison")
    written = {"members": member_table(entries, cfg.compared_split)} if key == "multirun" else {}
    compared = compared_entries(cfg, entries, key, MultiLabel)
    objective, tables, names = compared.objective, compared.tables, compared.names
    labels = [n for n in objective.target_columns if score_of(n) in tables[0]]
    check_probabilities(compared, labels, cfg.compared_split, key)
    distinct_file_names(labels, "task.objective", "the label list")  # one figure each
    settings = (int(cfg.bootstrap.n_resamples), int(cfg.bootstrap.seed),
                float(cfg.bootstrap.level))
    table = comparison_table(compared, settings)
    written = {"comparison": table, **written}
    if labels:
        written["calibration"] = calibration_table(tables, names, labels,
                                                   int(cfg.calibration.n_bins))
        written["decision_curve"] = decision_curve_table(tables, names, labels,
                                                         thresholds_grid)

    with staged_folder(out, "output_dir", "comparison") as staging:
        for name, written_table in written.items():
            write_table(written_table, staging / name)
        for label in labels:
            plot_decision_curve(written["decision_curve"], tables[0], label, staging)
    print(table.drop(columns=["model_a", "model_b"]).to_string(index=False))
    print(f"Comparison: {(out / 'comparison.csv').resolve()}")
    if cfg.report_logger == "wandb":
        log_to_wandb(cfg, written, out)
    return table


# ----------------------------------------------------------------------------- inputs
def decision_thresholds(cfg: DictConfig) -> np.ndarray:
    """The threshold probabilities of the decision curves: ``decision_curve.thresholds``
    ``start``, ``start + step``, ... up to ``stop`` (included when on the grid)."""
    grid = cfg.decision_curve.thresholds
    if grid.stop < grid.start:
        raise UserError(f"decision_curve.thresholds: stop {grid.stop} is below start "
                        f"{grid.start}; set decision_curve.thresholds.stop=<value>")
    count = int(np.floor((grid.stop - grid.start) / grid.step + 1e-9)) + 1
    return np.round(grid.start + grid.step * np.arange(count), 12)


# ----------------------------------------------------------------------------- per run
def calibration_table(tables: list[pd.DataFrame], names: list[str], labels: list[str],
                      n_bins: int) -> pd.DataFrame:
    """One row per run and binary label (the aligned exams): ECE (``n_bins`` equal-width
    bins), calibration slope and intercept; a slope and intercept without a finite fit (one
    class, separated classes) are NaN, with a warning."""
    rows = []
    for name, table in zip(names, tables):
        for label in labels:
            scores = table[score_of(label)].to_numpy(float)
            target = table[target_of(label)].to_numpy().astype(int)
            row = {"run": name, "label": label,
                   "ece": expected_calibration_error(scores, target, n_bins)}
            try:
                row.update(calibration_slope(scores, target))
            except ValueError as error:
                log.warning("compare: label '%s' of '%s': %s; its calibration slope and "
                            "intercept are left undefined", label, name, error)
                row.update(slope=np.nan, intercept=np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def decision_curve_table(tables: list[pd.DataFrame], names: list[str], labels: list[str],
                         thresholds: np.ndarray) -> pd.DataFrame:
    """Net benefit per run, binary label and threshold probability, with the treat-all
    reference as the run ``treat all`` (on the first run's targets: the same exams)."""
    parts = []
    for label in labels:
        curves = {name: net_benefit(table[score_of(label)].to_numpy(float),
                                    table[target_of(label)].to_numpy().astype(int),
                                    thresholds)
                  for name, table in zip(names, tables)}
        curves[TREAT_ALL] = treat_all(tables[0][target_of(label)].to_numpy().astype(int),
                                      thresholds)
        for name, values in curves.items():
            parts.append(pd.DataFrame({"run": name, "label": label, "threshold": thresholds,
                                       "net_benefit": values}))
    return pd.concat(parts, ignore_index=True)


def plot_decision_curve(curves: pd.DataFrame, first: pd.DataFrame, label: str,
                        out: Path) -> Path:
    """``decision_curve_<label>.png``: every run's net benefit, treat all and treat none."""
    rows = curves[(curves.label == label) & (curves.run != TREAT_ALL)]
    by_run = {name: group.net_benefit.to_numpy()
              for name, group in rows.groupby("run", sort=False)}
    thresholds = rows.threshold.drop_duplicates().to_numpy()
    figure = plots.make_decision_curve(by_run, first[target_of(label)].to_numpy().astype(int),
                                 thresholds, label)
    return plots.save(figure, figure_path(out, "decision_curve", label))


# ----------------------------------------------------------------------------- pairs
def comparison_table(compared: Compared, settings: tuple[int, int, float]) -> pd.DataFrame:
    """:func:`pairwise` of the first entry (``model_a``) against each other (``model_b``), on
    the aligned tables, with each entry's thresholds."""
    rows = []
    for other in range(1, len(compared.tables)):
        pair = pairwise(compared.tables[0], compared.tables[other], compared.objective,
                        compared.thresholds[0], compared.thresholds[other], settings,
                        (compared.validation[0], compared.validation[other]))
        rows.append(pair.assign(model_a=compared.names[0], model_b=compared.names[other]))
    table = pd.concat(rows, ignore_index=True)
    return table[["model_a", "model_b", *[c for c in table.columns
                                          if c not in ("model_a", "model_b")]]]


# ----------------------------------------------------------------------------- W&B
def log_to_wandb(cfg: DictConfig, tables: dict[str, pd.DataFrame], out: Path) -> None:
    """``report_logger=wandb``: the tables (W&B tables) and the figures of ``out`` as a W&B
    run of job type ``compare`` (``wandb.project``, ``wandb.name``), through the publishing
    path of :mod:`ecgexp.tracking`."""
    import wandb

    from ecgexp.tracking import publish_to_wandb

    run = wandb.init(project=cfg.wandb.project, dir=str(out), job_type="compare",
                     name=cfg.wandb.name or "compare")
    run.log({name: wandb.Table(dataframe=table) for name, table in tables.items()})
    publish_to_wandb(run, {}, out)
