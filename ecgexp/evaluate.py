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
from omegaconf import DictConfig, OmegaConf

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

log = logging.getLogger(__name__)
SPLITS = ("val", "test")


# ----------------------------------------------------------------------------- inputs
def load_run(folder: str | Path) -> tuple[DictConfig, dict[str, pd.DataFrame]]:
    """A run folder's resolved config and its predictions tables per split."""
    folder = Path(folder)
    config = folder / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"run: '{folder}' is not a run folder (no config.yaml)")
    tables = {split: pd.read_csv(folder / f"predictions_{split}.csv") for split in SPLITS
              if (folder / f"predictions_{split}.csv").is_file()}
    if not tables:
        raise FileNotFoundError(f"run: no predictions_<split>.csv in '{folder}'")
    return OmegaConf.load(config), tables


def mean_ensemble(members: Sequence[dict[str, pd.DataFrame]], prediction_columns: list[str],
                  ) -> dict[str, pd.DataFrame]:
    """The members' prediction columns averaged per exam (exams all members predicted)."""
    ensemble = {}
    for split in members[0]:
        tables = [m[split].set_index("exam_id") for m in members if split in m]
        common = tables[0].index
        for table in tables[1:]:
            common = common.intersection(table.index)
        mean = sum(t.loc[common, prediction_columns] for t in tables) / len(tables)
        merged = tables[0].loc[common].copy()
        merged[prediction_columns] = mean
        ensemble[split] = merged.reset_index()
    return ensemble


def member_spread(reports: Sequence[dict]) -> pd.DataFrame:
    """Mean, standard deviation, min and max of every flattened metric over the members."""
    flat = pd.DataFrame([flatten_report(r) for r in reports])
    return flat.agg(["mean", "std", "min", "max"]).T.rename_axis("metric").reset_index()


def prediction_files(predictions: str | Path, labels: str | Path,
                     label_columns: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Outputs made elsewhere as a ``test`` predictions table: an ``.npy`` (N, labels) or a
    CSV of scores in the row order of a labels CSV (e.g. CODE-test ``gold_standard.csv``)."""
    labels_table = pd.read_csv(labels)
    names = list(label_columns or labels_table.columns)
    missing = [n for n in names if n not in labels_table.columns]
    if missing:
        raise KeyError(f"label_columns: {missing} not in {labels} "
                       f"(columns: {', '.join(labels_table.columns)})")
    path = Path(predictions)
    scores = (np.load(path) if path.suffix == ".npy"
              else pd.read_csv(path)[names].to_numpy())
    if scores.shape != (len(labels_table), len(names)):
        raise ValueError(f"predictions: {path} has shape {scores.shape}, but {labels} has "
                         f"{len(labels_table)} rows and {len(names)} label columns")
    table = pd.DataFrame(scores, columns=[f"score_{n}" for n in names])
    table.insert(0, "exam_id", np.arange(len(table)))
    for name in names:
        table[f"target_{name}"] = labels_table[name].to_numpy()
    return {"test": table}


def exam_attributes(run_config: DictConfig) -> pd.DataFrame:
    """The exam table of the run's dataset (age, sex, death, timey, AF timelines, ...)."""
    from ecgexp.train import build_datamodule

    datamodule = build_datamodule(run_config)
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


def _binary_plots(scores, targets, label: str, n_bins: int, out: Path) -> None:
    if len(np.unique(targets)) == 2:
        plots.save(plots.make_roc_pr(scores, targets, label), out / f"roc_pr_{label}.png")
    plots.save(plots.make_reliability(reliability_table(scores, targets, n_bins)),
               out / f"reliability_{label}.png")


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
                           out / f"scatter_{name}.png")
                plots.save(plots.make_bland_altman(predicted, target, unit, name),
                           out / f"bland_altman_{name}.png")
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
    """CSV and Markdown side by side."""
    table.to_csv(path.with_suffix(".csv"), index=False)
    path.with_suffix(".md").write_text(markdown_table(table))


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


def challenge_export(table: pd.DataFrame, label: str, threshold: float, folder: Path,
                     names: pd.Series | None = None) -> int:
    """PhysioNet Challenge 2025 outputs: ``<record>.txt`` per exam with the record name,
    ``# Chagas label: True|False`` (score >= threshold) and ``# Chagas probability: p``."""
    records = names if names is not None else table.exam_id.astype(str)
    for record, probability in zip(records, table[f"score_{label}"]):
        path = folder / f"{record}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{Path(str(record)).name}\n# Chagas label: {probability >= threshold}\n"
                        f"# Chagas probability: {probability:.6f}\n")
    return len(records)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Runs every analysis the inputs allow; returns the flattened task metrics."""
    out, run_config, predictions, members = _inputs(cfg)
    out.mkdir(parents=True, exist_ok=True)
    tables: dict[str, pd.DataFrame] = {}
    if run_config is not None:
        objective = instantiate(run_config.task.objective)
        report = objective.evaluate(predictions)
        if members:
            tables["ensemble_members"] = member_spread(
                [objective.evaluate(m) for m in members])
        attributes = exam_attributes(run_config) if cfg.dataset_attributes else None
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
                table.to_csv(out / f"predictions_{split}.csv", index=False)
    else:
        report = {"test": {}}
        attributes = None
    first = next(iter(predictions.values()))
    if label_names(first, "score_"):
        thresholds = _thresholds(cfg, report, label_names(first, "score_"))
        if run_config is None:
            report = binary_report(predictions, list(thresholds), thresholds)
        tables.update(binary_analyses(predictions, thresholds, cfg, out))
        if cfg.compare:
            tables.update(_compare(cfg, predictions["test"], thresholds))
        if cfg.challenge_export and "test" in predictions:
            label = label_names(first, "score_")[0]
            names = (predictions["test"].merge(attributes, on="exam_id", how="left")["record"]
                     if attributes is not None and "record" in attributes else None)
            challenge_export(predictions["test"], label, thresholds[label],
                             Path(cfg.challenge_export), names)
    if label_names(first, "predicted_"):
        tables.update(regression_analyses(predictions, cfg, out))
    if label_names(first, "prob_class"):
        tables.update(class_probability_analyses(predictions, cfg))
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
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
        loaded = [load_run(folder) for folder in runs]
        run_config, tables = loaded[0]
        tasks = {config.task.name for config, _ in loaded}
        if len(tasks) > 1:
            raise ValueError(f"runs: an ensemble needs runs of one task, got {sorted(tasks)}")
        objective = instantiate(run_config.task.objective)
        members = [t for _, t in loaded]
        predictions = mean_ensemble(members, objective.prediction_columns)
        out = Path(cfg.output_dir or Path(runs[0]).parent / "ensemble_report")
        return out, run_config, predictions, members
    if cfg.run:
        run_config, predictions = load_run(cfg.run)
        return Path(cfg.output_dir or Path(cfg.run) / "report"), run_config, predictions, []
    if cfg.predictions and cfg.labels:
        predictions = prediction_files(cfg.predictions, cfg.labels, cfg.label_columns)
        return Path(cfg.output_dir or "report"), None, predictions, []
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
    others = {name: pd.read_csv(path)[labels] for name, path in cfg.compare.items()}
    for name, table in others.items():
        if len(table) != len(test):
            raise ValueError(f"compare.{name}: {len(table)} rows, the predictions have "
                             f"{len(test)}")
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
