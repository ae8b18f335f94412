"""``ecgexp-evaluate``: a run folder (or several, as a mean ensemble, or prediction files made
elsewhere) -> every metric of its task with bootstrap intervals, calibration, agreement,
strata, survival and plots, written to ``report/`` as CSV, Markdown and PNG.

It reads predictions tables and the run's resolved config; it never trains or predicts.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from ecgexp.data.labels import read_csv_table
from ecgexp.errors import UserError
from ecgexp.evaluation import plots
from ecgexp.evaluation.agreement import cohen_kappa, mcnemar
from ecgexp.evaluation.binary import binary_report, ranking_scores, scores_at_threshold
from ecgexp.evaluation.bootstrap import bootstrap_statistic, bootstrap_threshold_metrics
from ecgexp.evaluation.calibration import expected_calibration_error, reliability_table
from ecgexp.evaluation.regression import regression_metrics
from ecgexp.evaluation.report import flatten_report, print_report
from ecgexp.evaluation.stratify import age_bands, sex_groups, stratified
from ecgexp.evaluation.survival import (
    age_gap_cox,
    age_gap_groups,
    cox_hazard_ratios,
    kaplan_meier,
    score_bins,
)
from ecgexp.evaluation.tables import binary_column, finite_column, first_line, require_columns
from ecgexp.files import (
    confined_path,
    distinct_file_names,
    make_folder,
    writable_folder,
    write_text_atomic,
)
from ecgexp.run_folder import load_run_config, located_dataset

log = logging.getLogger(__name__)
SPLITS = ("val", "test")
# Marks a folder written by ecgexp-evaluate, whose files a new evaluation may replace.
REPORT_MARKER = ".ecgexp_report"


# ----------------------------------------------------------------------------- inputs
def predictions_columns(objective) -> list[str]:
    """The columns a run of ``objective`` writes to ``predictions_<split>.csv``."""
    return ["exam_id", *objective.prediction_columns,
            *(f"target_{name}" for name in objective.target_columns)]


def read_predictions(path: Path, objective, task: str, key: str = "run") -> pd.DataFrame:
    """A run's ``predictions_<split>.csv``, checked: the task's columns, finite predictions,
    numeric targets (0/1 for a binary label)."""
    expected = predictions_columns(objective)
    what = (f"the {task} task expects a predictions table with the columns "
            f"{', '.join(expected)}, as ecgexp writes it")
    table = read_csv_table(path, key, what)
    require_columns(table, expected, path, key, what)
    for column in objective.prediction_columns:
        finite_column(table, column, path, key)
    for name in objective.target_columns:
        column = f"target_{name}"
        if f"score_{name}" in table.columns:
            binary_column(table, column, path, key)
        else:
            finite_column(table, column, path, key, "targets")
    return table


def load_run(folder: str | Path, key: str = "run",
             ) -> tuple[DictConfig, dict[str, pd.DataFrame]]:
    """A run folder's resolved config and its checked predictions tables per split."""
    folder = Path(folder)
    run_config = load_run_config(folder, key)
    if "task" not in run_config:
        raise UserError(f"{key}: '{folder / 'config.yaml'}' has no task; it is not the "
                        f"config.yaml of an ecgexp run")
    objective = instantiate(run_config.task.objective)
    tables = {split: read_predictions(folder / f"predictions_{split}.csv", objective,
                                      run_config.task.name, key)
              for split in SPLITS if (folder / f"predictions_{split}.csv").is_file()}
    if not tables:
        raise FileNotFoundError(f"{key}: no predictions_<split>.csv in '{folder}'")
    return run_config, tables


def check_same_exams(members: Sequence[tuple[str, dict[str, pd.DataFrame]]],
                     key: str) -> None:
    """Every member predicted the same exams of every split, each once."""
    for name, tables in members:
        for split, table in tables.items():
            twice = table.exam_id[table.exam_id.duplicated()]
            if len(twice):
                raise UserError(f"{key}: {name} predicted exam_id {twice.iloc[0]} of the {split} "
                                f"split more than once ({len(twice)} repeats); an ensemble "
                                f"averages one prediction per exam")
    first_name, first = members[0]
    for name, tables in members[1:]:
        for split in [s for s in SPLITS if s in first or s in tables]:
            a = set(first[split].exam_id) if split in first else set()
            b = set(tables[split].exam_id) if split in tables else set()
            if a != b:
                raise UserError(f"{key}: {first_name} and {name} predicted different {split} "
                                f"exams ({len(a - b)} only in the first, {len(b - a)} only in "
                                f"the second); an ensemble needs runs of the same split (same "
                                f"dataset and split_seed)")


def mean_ensemble(members: Sequence[dict[str, pd.DataFrame]], prediction_columns: list[str],
                  ) -> dict[str, pd.DataFrame]:
    """The members' prediction columns averaged per exam (members of the same exams: see
    :func:`check_same_exams`), in the first member's row order."""
    ensemble = {}
    for split in members[0]:
        tables = [m[split].set_index("exam_id") for m in members if split in m]
        common = tables[0].index
        for table in tables[1:]:
            common = common.intersection(table.index, sort=False)
        mean = sum(t.loc[common, prediction_columns] for t in tables) / len(tables)
        merged = tables[0].loc[common].copy()
        merged[prediction_columns] = mean
        ensemble[split] = merged.reset_index()
    return ensemble


def member_spread(reports: Sequence[dict]) -> pd.DataFrame:
    """Mean, standard deviation, min and max of every flattened metric over the members."""
    flat = pd.DataFrame([flatten_report(r) for r in reports])
    return flat.agg(["mean", "std", "min", "max"]).T.rename_axis("metric").reset_index()


def _load_scores(path: Path, names: list[str], n_rows: int, labels: Path) -> np.ndarray:
    """The scores of ``predictions=``: an ``.npy`` (N, labels) or a CSV with one column per
    label, checked against the labels table's shape and for finite values."""
    expected = (f"predictions expects an .npy of shape ({n_rows}, {len(names)}) or a CSV with "
                f"the score columns {', '.join(names)} (label_columns, default the columns of "
                f"{labels}) in the row order of {labels}")
    if path.suffix == ".npy":
        if not path.is_file():
            raise UserError(f"predictions: no file '{path}'; {expected}")
        try:
            scores = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise UserError(f"predictions: '{path}' is not a NumPy .npy array "
                            f"({first_line(error)}); {expected}") from error
        if not isinstance(scores, np.ndarray) or not np.issubdtype(scores.dtype, np.number):
            raise UserError(f"predictions: '{path}' does not hold a numeric array; {expected}")
        if scores.ndim == 1 and len(names) == 1:
            scores = scores[:, None]
        where = "array"
    else:
        table = read_csv_table(path, "predictions", expected)
        require_columns(table, names, path, "predictions", expected)
        scores = np.column_stack([finite_column(table, n, path, "predictions") for n in names])
        where = "table"
    if scores.shape != (n_rows, len(names)):
        raise UserError(f"predictions: '{path}' has shape {scores.shape}, but {labels} has "
                        f"{n_rows} rows and {len(names)} label columns; {expected}")
    bad = ~np.isfinite(scores.astype(np.float64))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise UserError(f"predictions: '{path}' holds {scores[row, column]} at row {row + 1}, "
                        f"column {column + 1} (label {names[column]}) of the {where} "
                        f"({int(bad.sum())} such values); scores must be finite numbers")
    return scores.astype(np.float64)


def prediction_files(predictions: str | Path, labels: str | Path,
                     label_columns: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Outputs made elsewhere as a ``test`` predictions table: an ``.npy`` (N, labels) or a
    CSV of scores in the row order of a labels CSV (e.g. CODE-test ``gold_standard.csv``)."""
    labels = Path(labels)
    labels_table = read_csv_table(labels, "labels", "labels expects a CSV with one 0/1 column "
                                  "per label (e.g. CODE-test annotations/gold_standard.csv)")
    names = [str(n) for n in (label_columns or labels_table.columns)]
    missing = [n for n in names if n not in labels_table.columns]
    if missing:
        raise UserError(f"label_columns: {missing} not in {labels} "
                        f"(columns: {', '.join(map(str, labels_table.columns))})")
    targets = {name: binary_column(labels_table, name, labels, "labels") for name in names}
    scores = _load_scores(Path(predictions), names, len(labels_table), labels)
    table = pd.DataFrame(scores, columns=[f"score_{n}" for n in names])
    table.insert(0, "exam_id", np.arange(len(table)))
    for name in names:
        table[f"target_{name}"] = targets[name]
    return {"test": table}


def exam_attributes(run_config: DictConfig, run_folder: str | Path | None = None,
                    data_root: str | Path | None = None) -> pd.DataFrame:
    """The exam table of the run's dataset (age, sex, death, timey, AF timelines, ...), read
    where the run found it (:func:`located_dataset`)."""
    from ecgexp.data.build import build_datamodule

    datamodule = build_datamodule(located_dataset(run_config, run_folder, data_root))
    datamodule.setup()
    return datamodule.table.drop(columns=["file_index", "row"], errors="ignore")


# ----------------------------------------------------------------------------- analyses
def label_names(table: pd.DataFrame, prefix: str) -> list[str]:
    return [c[len(prefix):] for c in table.columns if c.startswith(prefix)]


def binary_analyses(predictions: dict[str, pd.DataFrame], thresholds: dict[str, float],
                    settings: DictConfig, out: Path) -> dict[str, pd.DataFrame]:
    """Bootstrap intervals at fixed thresholds, AUROC intervals, calibration and plots."""
    bootstrap, calibration = settings.bootstrap, settings.calibration
    rows, calibration_rows = [], []
    for split, table in predictions.items():
        labels = label_names(table, "score_")
        scores = table[[f"score_{n}" for n in labels]].to_numpy(float)
        targets = table[[f"target_{n}" for n in labels]].to_numpy().astype(int)
        at_threshold = bootstrap_threshold_metrics(
            scores, targets, np.array([thresholds[n] for n in labels]), bootstrap.n_resamples,
            bootstrap.seed, bootstrap.level)
        for metric, values in at_threshold.items():
            for i, label in enumerate(labels):
                rows.append({"split": split, "label": label, "metric": metric,
                             **{k: float(np.asarray(v)[i]) for k, v in values.items()}})
        for i, label in enumerate(labels):
            if len(np.unique(targets[:, i])) == 2:
                auroc = bootstrap_statistic(_auroc, [scores[:, i], targets[:, i]],
                                            bootstrap.n_resamples, bootstrap.seed,
                                            bootstrap.level)
                rows.append({"split": split, "label": label, "metric": "auroc", **auroc})
            if split == "test":
                _binary_plots(scores[:, i], targets[:, i], label, calibration.n_bins, out)
            calibration_rows.append({"split": split, "label": label,
                                     "ece": expected_calibration_error(
                                         scores[:, i], targets[:, i], calibration.n_bins)})
    return {"bootstrap": pd.DataFrame(rows), "calibration": pd.DataFrame(calibration_rows)}


def _auroc(scores: np.ndarray, targets: np.ndarray) -> float:
    return ranking_scores(scores, targets)["auroc"]


def figure_path(out: Path, kind: str, label: str) -> Path:
    """``<out>/<kind>_<label>.png`` with the label (a column name of the predictions, i.e.
    data) made a plain file name, confined to ``out``: ``../x`` gives ``roc_pr_.._x.png``."""
    return confined_path(out, f"{kind}_{label}", f"label '{label}' (a column of the "
                         f"predictions table)", ".png")


def _binary_plots(scores, targets, label: str, n_bins: int, out: Path) -> None:
    if len(np.unique(targets)) == 2:
        plots.save(plots.make_roc_pr(scores, targets, label), figure_path(out, "roc_pr", label))
    plots.save(plots.make_reliability(reliability_table(scores, targets, n_bins)),
               figure_path(out, "reliability", label))


def regression_analyses(predictions: dict[str, pd.DataFrame], settings: DictConfig,
                        out: Path) -> dict[str, pd.DataFrame]:
    """Bootstrap intervals of MAE/RMSE/R²/Pearson, scatter and Bland–Altman plots."""
    rows = []
    bootstrap = settings.bootstrap
    for split, table in predictions.items():
        for name in label_names(table, "predicted_"):
            predicted, target = (table[f"predicted_{name}"].to_numpy(float),
                                 table[f"target_{name}"].to_numpy(float))
            for metric in ("mae", "rmse", "r2", "pearson"):
                interval = bootstrap_statistic(
                    lambda p, t, m=metric: regression_metrics(p, t)[m], [predicted, target],
                    bootstrap.n_resamples, bootstrap.seed, bootstrap.level)
                rows.append({"split": split, "label": name, "metric": metric, **interval})
            if split == "test":
                unit = settings.units.get(name, "")
                plots.save(plots.make_regression_scatter(predicted, target, unit, name),
                           figure_path(out, "scatter", name))
                plots.save(plots.make_bland_altman(predicted, target, unit, name),
                           figure_path(out, "bland_altman", name))
    return {"bootstrap": pd.DataFrame(rows)}


def class_probability_analyses(predictions: dict[str, pd.DataFrame],
                               settings: DictConfig) -> dict[str, pd.DataFrame]:
    """Bootstrap intervals of each class's one-vs-rest AUROC and, for AF risk, of class 3 vs 1
    on p3 / (p1 + p3) without class-2 exams."""
    rows, bootstrap = [], settings.bootstrap
    for split, table in predictions.items():
        target = table[next(c for c in table.columns if c.startswith("target_"))].to_numpy()
        curves = {f"class{k}": (table[f"prob_class{k}"].to_numpy(float), target == k)
                  for k in label_names(table, "prob_class")}
        if {"class1", "class3"} <= set(curves):
            kept = np.isin(target, [1, 3])
            p1, p3 = table.prob_class1.to_numpy(float), table.prob_class3.to_numpy(float)
            curves["class3_vs_1"] = ((p3 / (p1 + p3))[kept], target[kept] == 3)
        for row, (scores, positive) in curves.items():
            if positive.any() and not positive.all():
                rows.append({"split": split, "label": row, "metric": "auroc",
                             **bootstrap_statistic(_auroc, [scores, positive.astype(int)],
                                                   bootstrap.n_resamples, bootstrap.seed,
                                                   bootstrap.level)})
    return {"bootstrap": pd.DataFrame(rows)}


def strata_analyses(predictions: dict[str, pd.DataFrame], attributes: pd.DataFrame,
                    objective, settings: DictConfig) -> pd.DataFrame:
    """The task's metrics per age band and per sex on the test split."""
    if "test" not in predictions or attributes is None:
        return pd.DataFrame()
    test = predictions["test"].merge(attributes, on="exam_id", how="left",
                                     suffixes=("", "_exam"))
    groupings = {}
    if settings.age_column in test.columns:
        groupings["age"] = pd.Series(age_bands(test[settings.age_column],
                                               list(settings.age_edges)), index=test.index)
    if settings.sex_column in test.columns:
        groupings["sex"] = pd.Series(sex_groups(test[settings.sex_column]), index=test.index)
    val = predictions.get("val")
    rows = []
    for kind, groups in groupings.items():
        reports = stratified(test, groups, lambda sub: flatten_report(
            objective.evaluate({**({"val": val} if val is not None else {}), "test": sub})))
        for group, report in reports.items():
            metrics = {k: v for k, v in report.items() if not k.startswith("val/")}
            rows.append({"stratum": kind, "group": str(group), **metrics})
    return pd.DataFrame(rows)


def survival_analyses(predictions: dict[str, pd.DataFrame], attributes: pd.DataFrame,
                      settings: DictConfig, out: Path) -> dict[str, pd.DataFrame]:
    """ECG-age gap vs mortality (Cox, Kaplan–Meier) and AF-risk score bins vs time to AF."""
    if "test" not in predictions or attributes is None:
        return {}
    test = predictions["test"].merge(attributes, on="exam_id", how="left",
                                     suffixes=("", "_exam"))
    results = {}
    mortality = settings.mortality
    if "age_gap" in test.columns and {mortality.duration_column,
                                      mortality.event_column} <= set(test.columns):
        cohort = test.dropna(subset=[mortality.duration_column, mortality.event_column])
        if cohort[mortality.event_column].astype(float).sum() > 0:
            results["cox_age_gap"] = age_gap_cox(
                cohort.assign(**{mortality.event_column:
                                 cohort[mortality.event_column].astype(float)}),
                "age_gap", mortality.duration_column, mortality.event_column,
                list(mortality.covariates), mortality.gap_threshold).reset_index()
            groups = cohort.assign(group=age_gap_groups(cohort.age_gap,
                                                        mortality.gap_threshold))
            curves, _ = kaplan_meier(groups, mortality.duration_column,
                                     mortality.event_column, "group")
            plots.save(plots.make_kaplan_meier(curves, "years"), out / "km_age_gap.png")
    if {"prob_class1", "prob_class3", "weeks_to_first_af",
            "weeks_to_last_exam"} <= set(test.columns):
        cohort = test[test.target_exam_class.isin([1, 3])].copy()
        cohort["event"] = (cohort.target_exam_class == 3).astype(float)
        cohort["weeks"] = np.where(cohort.event == 1, cohort.weeks_to_first_af,
                                   cohort.weeks_to_last_exam)
        cohort["p3_norm"] = cohort.prob_class3 / (cohort.prob_class1 + cohort.prob_class3)
        if cohort.event.sum() > 0:
            results["cox_af_risk"] = cox_hazard_ratios(
                cohort, "weeks", "event", ["p3_norm"], settings.af_risk.penalizer).reset_index()
            cohort["bin"] = score_bins(cohort.p3_norm, list(settings.af_risk.bin_edges))
            curves, _ = kaplan_meier(cohort, "weeks", "event", "bin")
            plots.save(plots.make_kaplan_meier(curves, "weeks"), out / "km_af_risk.png")
    for name, table in results.items():
        plots.save(plots.make_hazard_ratios(table.set_index("covariate")), out / f"{name}.png")
    return results


def agreement_analyses(predicted: pd.DataFrame, others: dict[str, pd.DataFrame],
                       truth: pd.DataFrame, labels: list[str]) -> dict[str, pd.DataFrame]:
    """Each annotation set's scores against the truth, and κ / McNemar against ``predicted``
    (0/1 tables in the same row order, one column per label)."""
    scores, agreement = [], []
    for name, table in {"model": predicted, **others}.items():
        for label in labels:
            scores.append({"predictor": name, "label": label, **scores_at_threshold(
                table[label].to_numpy(), truth[label].to_numpy().astype(int), 0.5)})
            if name != "model":
                test = mcnemar(predicted[label].to_numpy(), table[label].to_numpy(),
                               truth[label].to_numpy())
                agreement.append({"pair": f"model vs {name}", "label": label,
                                  "kappa": cohen_kappa(predicted[label].to_numpy(),
                                                       table[label].to_numpy()),
                                  "mcnemar_statistic": test["statistic"],
                                  "mcnemar_p": test["p_value"]})
    return {"reader_scores": pd.DataFrame(scores), "agreement": pd.DataFrame(agreement)}


# ----------------------------------------------------------------------------- outputs
def write_table(table: pd.DataFrame, path: Path) -> None:
    """CSV and Markdown side by side, each written whole (the report folder's own files)."""
    write_text_atomic(path.with_suffix(".csv"), table.to_csv(index=False), "output_dir",
                      replace=True)
    write_text_atomic(path.with_suffix(".md"), markdown_table(table), "output_dir",
                      replace=True)


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table; numbers with 3 decimals."""
    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float | np.floating) else str(value)
    lines = ["| " + " | ".join(map(str, table.columns)) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def report_thresholds(report: dict) -> dict[str, float]:
    """The validation-chosen thresholds in a task report (``threshold`` of each label)."""
    any_split = next(iter(report.values()))
    return {row: values["threshold"] for row, values in any_split.items()
            if "threshold" in values}


def check_report_folder(out: Path) -> None:
    """The report folder can be written and holds nothing but an earlier ecgexp report (its
    files are replaced): a folder of other files is refused, not written into."""
    writable_folder(out, "output_dir")
    if out.is_dir() and any(out.iterdir()) and not (out / REPORT_MARKER).is_file():
        raise UserError(f"output_dir: '{out}' holds files that are not an ecgexp report; give a "
                        f"new or empty folder (or an earlier report folder) so that nothing "
                        f"in it is overwritten")


def check_export_folder(folder: Path) -> None:
    """``challenge_export`` must be a new or empty folder (no stale outputs mixed in)."""
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise UserError(f"challenge_export: '{folder}' is a file, not a folder; give a new "
                            f"or empty folder")
        entries = sorted(p.name for p in folder.iterdir())
        if entries:
            raise UserError(f"challenge_export: '{folder}' is not empty ({len(entries)} "
                            f"entries, e.g. '{entries[0]}'); give a new or empty folder so "
                            f"that no earlier output is mixed in or overwritten")


def challenge_export(table: pd.DataFrame, label: str, threshold: float, folder: Path,
                     names: Sequence | pd.Series | None = None) -> int:
    """PhysioNet Challenge 2025 outputs: ``<record>.txt`` per exam with the record name (its
    basename), ``# Chagas label: True|False`` (score >= threshold) and
    ``# Chagas probability: p``.

    ``names`` (the dataset's ``record`` column, in the table's row order; default the exam
    ids) are data: each file name is made a plain name inside ``folder`` (``../x`` gives
    ``_x.txt``), two records giving one file are refused, ``folder`` must be new or empty,
    and each file is written whole. Nothing is written unless every check passes."""
    folder = Path(folder)
    column = "record" if names is not None else "exam_id"
    records = pd.Series(list(names) if names is not None else list(table.exam_id))
    if len(records) != len(table):
        raise UserError(f"challenge_export: {len(records)} record names for {len(table)} "
                        f"predicted exams")
    if records.isna().any():
        position = int(np.argmax(records.isna().to_numpy()))
        raise UserError(f"challenge_export: exam_id {table.exam_id.iloc[position]} has no "
                        f"value in the dataset's column '{column}' "
                        f"({int(records.isna().sum())} exams without one)")
    records = records.astype(str).tolist()
    files = distinct_file_names(records, "challenge_export", f"the column '{column}'", ".txt",
                                ids=list(table.exam_id))
    check_export_folder(folder)
    make_folder(folder, "challenge_export")
    for record, file_name, probability in zip(records, files, table[f"score_{label}"]):
        path = confined_path(folder, file_name.removesuffix(".txt"), "challenge_export",
                             ".txt")
        write_text_atomic(path, f"{Path(record).name}\n# Chagas label: "
                          f"{probability >= threshold}\n# Chagas probability: "
                          f"{probability:.6f}\n", "challenge_export")
    return len(records)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Runs every analysis the inputs allow; returns the flattened task metrics."""
    out, run_config, predictions, members, run_folder = _inputs(cfg)
    first = next(iter(predictions.values()))
    label_key = "task.target_columns" if run_config is not None else "label_columns"
    for prefix in ("score_", "predicted_"):  # one figure file per label
        distinct_file_names(label_names(first, prefix), label_key, "the label list")
    check_report_folder(out)
    if cfg.challenge_export:
        check_export_folder(Path(cfg.challenge_export))
        writable_folder(cfg.challenge_export, "challenge_export")
    attributes = (exam_attributes(run_config, run_folder, cfg.get("data_root"))
                  if run_config is not None and cfg.dataset_attributes else None)
    make_folder(out, "output_dir")
    (out / REPORT_MARKER).touch()
    tables: dict[str, pd.DataFrame] = {}
    if run_config is not None:
        objective = instantiate(run_config.task.objective)
        report = objective.evaluate(predictions)
        if members:
            tables["ensemble_members"] = member_spread(
                [objective.evaluate(m) for m in members])
        skipped = []
        for name, analysis in {
                "strata": lambda: {"strata": strata_analyses(predictions, attributes, objective,
                                                             cfg.stratify)},
                "survival": lambda: survival_analyses(predictions, attributes, cfg.survival,
                                                      out)}.items():
            try:
                tables.update(analysis())
            except ValueError as error:  # e.g. no events, an empty age-gap group
                log.warning("%s analysis skipped: %s", name, error)
                skipped.append({"analysis": name, "reason": str(error)})
        if skipped:
            tables["skipped"] = pd.DataFrame(skipped)
        if members:
            for split, table in predictions.items():
                write_text_atomic(out / f"predictions_{split}.csv", table.to_csv(index=False),
                                  "output_dir", replace=True)
    else:
        report = {"test": {}}
    if label_names(first, "score_"):
        thresholds = _thresholds(cfg, report, label_names(first, "score_"))
        if run_config is None:
            report = binary_report(predictions, list(thresholds), thresholds)
        tables.update(binary_analyses(predictions, thresholds, cfg, out))
        if cfg.compare:
            tables.update(_compare(cfg, predictions["test"], thresholds))
        if cfg.challenge_export and "test" in predictions:
            label = label_names(first, "score_")[0]
            names = None
            if attributes is not None and "record" in attributes:
                records = attributes.drop_duplicates("exam_id").set_index("exam_id").record
                names = predictions["test"].exam_id.map(records)
            challenge_export(predictions["test"], label, thresholds[label],
                             Path(cfg.challenge_export), names)
    if label_names(first, "predicted_"):
        tables.update(regression_analyses(predictions, cfg, out))
    if label_names(first, "prob_class"):
        tables.update(class_probability_analyses(predictions, cfg))
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=2), "output_dir",
                      replace=True)
    write_table(pd.Series(flatten_report(report), name="value").rename_axis("metric")
                .reset_index(), out / "metrics")
    for name, table in tables.items():
        write_table(table, out / name)
    print_report(report, title="evaluation")
    print(f"Report folder: {out.resolve()}")
    _log(cfg, flatten_report(report), out)
    return flatten_report(report)


def multirun_members(folder: str | Path) -> list[Path]:
    """The run folders of a multirun (``<sweep folder>/<job number>``), in job order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"multirun: no folder '{folder}'")
    members = sorted((p.parent for p in folder.glob("*/metrics.json")),
                     key=lambda p: int(p.name) if p.name.isdigit() else math.inf)
    if not members:
        raise FileNotFoundError(f"multirun: no finished run (<job>/metrics.json) in '{folder}'")
    return members


def _inputs(cfg: DictConfig):
    runs = list(cfg.runs) or (multirun_members(cfg.multirun) if cfg.multirun else [])
    if runs:
        key = "runs" if cfg.runs else "multirun"
        loaded = [load_run(folder, key) for folder in runs]
        run_config, tables = loaded[0]
        tasks = {config.task.name for config, _ in loaded}
        if len(tasks) > 1:
            raise ValueError(f"runs: an ensemble needs runs of one task, got {sorted(tasks)}")
        objective = instantiate(run_config.task.objective)
        members = [t for _, t in loaded]
        check_same_exams(list(zip(map(str, runs), members)), key)
        predictions = mean_ensemble(members, objective.prediction_columns)
        out = Path(cfg.output_dir or Path(runs[0]).parent / "ensemble_report")
        return out, run_config, predictions, members, Path(runs[0])
    if cfg.run:
        run_config, predictions = load_run(cfg.run)
        return (Path(cfg.output_dir or Path(cfg.run) / "report"), run_config, predictions, [],
                Path(cfg.run))
    if cfg.predictions and cfg.labels:
        predictions = prediction_files(cfg.predictions, cfg.labels, cfg.label_columns)
        return Path(cfg.output_dir or "report"), None, predictions, [], None
    raise ValueError("evaluate: give run=<run folder>, runs=[...], multirun=<sweep folder> or "
                     "predictions=<file> labels=<csv>")


def _thresholds(cfg: DictConfig, report: dict, labels: list[str]) -> dict[str, float]:
    if cfg.thresholds is not None:
        values = list(cfg.thresholds)
        if len(values) != len(labels):
            raise ValueError(f"thresholds: {len(values)} values for {len(labels)} labels "
                             f"{labels}")
        return dict(zip(labels, values))
    chosen = report_thresholds(report)
    if not all(label in chosen for label in labels):  # single-label report: max_f1 rule
        return {label: chosen.get("max_f1", 0.5) for label in labels}
    return chosen


def _compare(cfg: DictConfig, test: pd.DataFrame, thresholds: dict[str, float]):
    labels = list(thresholds)
    predicted = pd.DataFrame({label: (test[f"score_{label}"] >= thresholds[label]).astype(int)
                              for label in labels})
    truth = pd.DataFrame({label: test[f"target_{label}"].to_numpy() for label in labels})
    others = {}
    for name, path in cfg.compare.items():
        key, path = f"compare.{name}", Path(path)
        expected = (f"{key} expects a CSV of 0/1 annotations with the columns "
                    f"{', '.join(labels)}, in the row order of the predictions")
        table = read_csv_table(path, key, expected)
        require_columns(table, labels, path, key, expected)
        if len(table) != len(test):
            raise UserError(f"compare.{name}: '{path}' has {len(table)} rows, the predictions "
                            f"have {len(test)}; {expected}")
        others[name] = pd.DataFrame({label: binary_column(table, label, path, key)
                                     for label in labels})
    return agreement_analyses(predicted, others, truth, labels)


def _log(cfg: DictConfig, metrics: dict[str, float], out: Path) -> None:
    """Logs the metrics and plots to W&B when ``report_logger=wandb``."""
    if cfg.report_logger != "wandb":
        return
    import wandb

    run = wandb.init(project=cfg.wandb.project, dir=str(out), job_type="evaluate",
                     name=cfg.wandb.name)
    run.log({**metrics, **{f"plots/{p.stem}": wandb.Image(str(p))
                           for p in sorted(out.glob("*.png"))}})
    run.finish()
