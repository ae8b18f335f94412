"""The analysis families of a run's report, chosen by its objective (``objective.analyses``)
and run by ``ecgexp-evaluate``. Each takes the same :class:`ReportInputs` and returns named
tables (written as ``<name>.csv``/``.md``); figures go into the report folder.

- ``binary``: bootstrap intervals at the validation thresholds and of AUROC, calibration
  (ECE), ROC/PR and reliability figures of every binary label;
- ``regression``: bootstrap intervals of MAE/RMSE/R²/Pearson, scatter and Bland–Altman
  figures in the target's units;
- ``classes``: bootstrap intervals of each class's one-vs-rest AUROC and of each contrast,
  calibration per class (multi-class objectives);
- ``strata``: the task's metrics per age band and per sex (needs the dataset's attributes);
- ``mortality``: the predicted-minus-true gap (ECG-age) against mortality, Cox and
  Kaplan–Meier (needs the attributes);
- ``contrast_survival``: each contrast's score against the time to its event (AF risk);
- ``survival``: bootstrap intervals of the time-to-event metrics, Kaplan–Meier curves per
  predicted risk group (numbers at risk, censorings) and, with predicted survival curves,
  their calibration against Kaplan–Meier at the horizons (survival objectives).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ecgexp.columns import score_of, survival_at, target_of
from ecgexp.evaluation import plots
from ecgexp.evaluation.binary import undefined_threshold
from ecgexp.evaluation.multiclass import class_indices, probabilities_of
from ecgexp.evaluation.report import flatten_report
from ecgexp.evaluation.stratify import age_bands, sex_groups, stratified
from ecgexp.evaluation.survival import (
    age_gap_cox,
    age_gap_groups,
    cox_hazard_ratios,
    kaplan_meier,
    score_bins,
)
from ecgexp.evaluation.survival_report import survival_arrays, survival_metrics
from ecgexp.files import confined_path
from ecgexp.metrics.bootstrap import Resamples, bootstrap, per_resample, threshold_statistic
from ecgexp.metrics.calibration import expected_calibration_error, reliability_table
from ecgexp.metrics.confusion import METRICS as THRESHOLD_METRICS
from ecgexp.metrics.errors import METRICS as REGRESSION_METRICS
from ecgexp.metrics.errors import regression_errors
from ecgexp.metrics.ranking import Ranking
from ecgexp.metrics.survival import kaplan_meier_at


@dataclass
class ReportInputs:
    """What every analysis receives.

    predictions: ``{split: predictions table}``; objective: the run's objective; thresholds:
    ``{label: threshold}`` used for the thresholded metrics; attributes: the exam table of the
    run's dataset (or None); settings: the ``ecgexp-evaluate`` config; out: the report folder.
    """

    predictions: dict[str, pd.DataFrame]
    objective: object
    thresholds: dict[str, float]
    attributes: pd.DataFrame | None
    settings: DictConfig
    out: Path

    def resamples(self, n: int) -> Resamples:
        """The report's resamples of ``n`` exams (``bootstrap.n_resamples``, ``.seed``)."""
        settings = self.settings.bootstrap
        return Resamples(n, settings.n_resamples, settings.seed)

    def bootstrap(self, statistic: Callable[[np.ndarray], np.ndarray], n: int) -> dict:
        """``{"value", "lower", "upper"}`` of a weighted statistic of ``n`` exams (counts
        ``(rows, n)`` to ``(rows, ...)``, see :mod:`ecgexp.metrics.bootstrap`)."""
        return bootstrap(statistic, self.resamples(n), self.settings.bootstrap.level)

    def test_with_attributes(self) -> pd.DataFrame | None:
        """The test predictions joined with the exam attributes, or None without either."""
        if "test" not in self.predictions or self.attributes is None:
            return None
        return self.predictions["test"].merge(self.attributes, on="exam_id", how="left",
                                              suffixes=("", "_exam"))


def _floats(interval: dict) -> dict[str, float]:
    return {key: float(value) for key, value in interval.items()}


def figure_path(out: Path, kind: str, label: str) -> Path:
    """``<out>/<kind>_<label>.png`` with the label (a column name of the predictions, i.e.
    data) made a plain file name, confined to ``out``: ``../x`` gives ``roc_pr_.._x.png``."""
    return confined_path(out, f"{kind}_{label}", f"label '{label}' (a column of the "
                         f"predictions table)", ".png")


def binary_analyses(inputs: ReportInputs) -> dict[str, pd.DataFrame]:
    """Bootstrap intervals at fixed thresholds, AUROC intervals, calibration and figures."""
    settings, labels = inputs.settings, list(inputs.thresholds)
    rows, calibration_rows = [], []
    for split, table in inputs.predictions.items():
        scores = table[[score_of(n) for n in labels]].to_numpy(float)
        targets = table[[target_of(n) for n in labels]].to_numpy().astype(int)
        ranked = [i for i in range(len(labels)) if len(np.unique(targets[:, i])) == 2]
        cut = np.array([inputs.thresholds[n] for n in labels])
        intervals = inputs.bootstrap(_binary_statistic(scores, targets, cut, ranked),
                                     len(table))
        for m, metric in enumerate([*THRESHOLD_METRICS, "auroc"]):
            for i, label in enumerate(labels):
                if metric == "auroc":
                    if i not in ranked:
                        continue
                    undefined = False
                else:
                    undefined = undefined_threshold(inputs.thresholds[label])  # no val positives
                rows.append({"split": split, "label": label, "metric": metric,
                             **{k: math.nan if undefined else float(v[m, i])
                                for k, v in intervals.items()}})
        for i, label in enumerate(labels):
            if split == "test":
                _binary_figures(scores[:, i], targets[:, i], label,
                                settings.calibration.n_bins, inputs.out)
            calibration_rows.append({"split": split, "label": label,
                                     "ece": expected_calibration_error(
                                         scores[:, i], targets[:, i],
                                         settings.calibration.n_bins)})
    return {"bootstrap": pd.DataFrame(rows), "calibration": pd.DataFrame(calibration_rows)}


def _binary_statistic(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray,
                      ranked: list[int]) -> Callable[[np.ndarray], np.ndarray]:
    """Counts ``(rows, n)`` -> ``(rows, metrics + 1, labels)``: the rates at the thresholds,
    then the AUROC of the ``ranked`` labels (NaN for the others), in one pass."""
    rankings = {i: Ranking(scores[:, i], targets[:, i]) for i in ranked}
    at_thresholds = threshold_statistic(scores, targets, thresholds)

    def statistic(counts: np.ndarray) -> np.ndarray:
        areas = np.full((len(counts), 1, scores.shape[1]), np.nan)
        for i, ranking in rankings.items():
            areas[:, 0, i] = ranking.auroc(counts)
        return np.concatenate([at_thresholds(counts), areas], axis=1)
    return statistic


def _binary_figures(scores, targets, label: str, n_bins: int, out: Path) -> None:
    if len(np.unique(targets)) == 2:
        plots.save(plots.make_roc_pr(scores, targets, label), figure_path(out, "roc_pr", label))
    plots.save(plots.make_reliability(reliability_table(scores, targets, n_bins)),
               figure_path(out, "reliability", label))


def regression_analyses(inputs: ReportInputs) -> dict[str, pd.DataFrame]:
    """Bootstrap intervals of MAE/RMSE/R²/Pearson, scatter and Bland–Altman figures."""
    objective, rows = inputs.objective, []
    name = objective.target_column
    for split, table in inputs.predictions.items():
        predicted = table[objective.predicted_column].to_numpy(float)
        target = table[target_of(name)].to_numpy(float)
        intervals = inputs.bootstrap(lambda counts, p=predicted, t=target: np.stack(
            [np.atleast_1d(v) for v in regression_errors(p, t, counts).values()], axis=-1),
            len(table))
        rows += [{"split": split, "label": name, "metric": metric,
                  **{k: float(v[j]) for k, v in intervals.items()}}
                 for j, metric in enumerate(REGRESSION_METRICS)]
        if split == "test":
            plots.save(plots.make_regression_scatter(predicted, target, objective.units, name),
                       figure_path(inputs.out, "scatter", name))
            plots.save(plots.make_bland_altman(predicted, target, objective.units, name),
                       figure_path(inputs.out, "bland_altman", name))
    return {"bootstrap": pd.DataFrame(rows)}


def class_analyses(inputs: ReportInputs) -> dict[str, pd.DataFrame]:
    """Bootstrap intervals of each class's one-vs-rest AUROC and of each contrast; the
    calibration (ECE) of each class's probability."""
    objective = inputs.objective
    label, rows, calibration_rows = objective.target_columns[0], [], []
    for split, table in inputs.predictions.items():
        probabilities = probabilities_of(table, objective.class_names)
        classes = class_indices(table, label, objective.classes)
        curves = {name: (probabilities[:, k], (classes == k).astype(int))
                  for k, name in enumerate(objective.class_names)}
        for contrast in objective.contrasts.values():
            curves[contrast.name] = contrast.scores(probabilities, classes)[1:]
        for row, (scores, positive) in curves.items():
            if positive.any() and not positive.all():
                rows.append({"split": split, "label": row, "metric": "auroc",
                             **_floats(inputs.bootstrap(Ranking(scores, positive).auroc,
                                                        len(scores)))})
        for k, name in enumerate(objective.class_names):
            calibration_rows.append({"split": split, "label": name,
                                     "ece": expected_calibration_error(
                                         probabilities[:, k], (classes == k).astype(int),
                                         inputs.settings.calibration.n_bins)})
    return {"bootstrap": pd.DataFrame(rows), "calibration": pd.DataFrame(calibration_rows)}


def strata_analyses(inputs: ReportInputs) -> dict[str, pd.DataFrame]:
    """The task's metrics per age band and per sex on the test split."""
    test, settings = inputs.test_with_attributes(), inputs.settings.stratify
    if test is None:
        return {}
    groupings = {}
    if settings.age_column in test.columns:
        groupings["age"] = pd.Series(age_bands(test[settings.age_column],
                                               list(settings.age_edges)), index=test.index)
    if settings.sex_column in test.columns:
        groupings["sex"] = pd.Series(sex_groups(test[settings.sex_column]), index=test.index)
    val = inputs.predictions.get("val")
    rows = []
    for kind, groups in groupings.items():
        reports = stratified(test, groups, lambda sub: flatten_report(inputs.objective.evaluate(
            {**({"val": val} if val is not None else {}), "test": sub})))
        for group, report in reports.items():
            metrics = {k: v for k, v in report.items() if not k.startswith("val/")}
            rows.append({"stratum": kind, "group": str(group), **metrics})
    return {"strata": pd.DataFrame(rows)}


def mortality_analyses(inputs: ReportInputs) -> dict[str, pd.DataFrame]:
    """The gap column (ECG-age minus age) against mortality: Cox hazard ratios of the gap
    groups and Kaplan–Meier curves per group (docs/studies.md §3.2)."""
    test, settings = inputs.test_with_attributes(), inputs.settings.survival.mortality
    gap = inputs.objective.gap_column
    if test is None or not {settings.duration_column, settings.event_column} <= set(test):
        return {}
    cohort = test.dropna(subset=[settings.duration_column, settings.event_column])
    event = cohort[settings.event_column].astype(float)
    if event.sum() == 0:
        raise ValueError(f"no {settings.event_column} event among the test exams")
    cohort = cohort.assign(**{settings.event_column: event})
    table = age_gap_cox(cohort, gap, settings.duration_column, settings.event_column,
                        list(settings.covariates), settings.gap_threshold).reset_index()
    groups = cohort.assign(group=age_gap_groups(cohort[gap], settings.gap_threshold))
    curves, _ = kaplan_meier(groups, settings.duration_column, settings.event_column, "group")
    plots.save(plots.make_kaplan_meier(curves, "years"), inputs.out / "km_age_gap.png")
    plots.save(plots.make_hazard_ratios(table.set_index("covariate")),
               inputs.out / "cox_age_gap.png")
    return {"cox_age_gap": table}


def contrast_survival_analyses(inputs: ReportInputs) -> dict[str, pd.DataFrame]:
    """Each contrast's score against the time to its event (time to the event for the
    positive class, censored at ``censor_time`` for the negative one): Cox hazard ratio of the
    score and Kaplan–Meier curves per score bin (AF risk, docs/studies.md §3.4)."""
    test, settings = inputs.test_with_attributes(), inputs.settings.survival.contrast
    objective, results = inputs.objective, {}
    if test is None:
        return results
    label = objective.target_columns[0]
    for contrast in objective.contrasts.values():
        times = {contrast.event_time, contrast.censor_time or contrast.event_time}
        if not contrast.event_time or not times <= set(test.columns):
            continue
        kept, scores, positive = contrast.scores(probabilities_of(test, objective.class_names),
                                                 class_indices(test, label, objective.classes))
        cohort = test[kept].assign(event=positive.astype(float), score=scores)
        cohort["time"] = np.where(cohort.event == 1, cohort[contrast.event_time],
                                  cohort[contrast.censor_time or contrast.event_time])
        if cohort.event.sum() == 0:
            continue
        name = f"cox_{contrast.name}"
        results[name] = cox_hazard_ratios(cohort, "time", "event", ["score"],
                                          settings.penalizer).reset_index()
        cohort["bin"] = score_bins(cohort.score, list(settings.bin_edges))
        curves, _ = kaplan_meier(cohort, "time", "event", "bin")
        plots.save(plots.make_kaplan_meier(curves, contrast.time_unit or contrast.event_time),
                   confined_path(inputs.out, f"km_{contrast.name}", "contrast", ".png"))
        plots.save(plots.make_hazard_ratios(results[name].set_index("covariate")),
                   confined_path(inputs.out, name, "contrast", ".png"))
    return results


def survival_analyses(inputs: ReportInputs) -> dict[str, pd.DataFrame]:
    """Time-to-event objectives: bootstrap intervals of every metric of the report per split;
    on the test split, Kaplan–Meier curves per predicted risk group (``risk_groups`` groups of
    equal size by ``risk_score``) with numbers at risk and censoring marks, and, when the model
    predicts survival curves, the mean predicted survival at each horizon against the
    Kaplan–Meier estimate and its bootstrap interval, overall and per risk group."""
    objective, settings = inputs.objective, inputs.settings.survival
    horizons, columns = objective.horizons, objective.survival_columns
    rows, tables = [], {}
    for split, table in inputs.predictions.items():
        arrays = survival_arrays(table, objective.time_column, objective.event_column, columns)
        if not arrays[1].any():
            continue
        names = [m for m in survival_metrics(*arrays, horizons) if m not in ("n", "events")]

        def statistic(*resampled, names=names):
            metrics = survival_metrics(*resampled, horizons)
            return np.array([metrics[m] for m in names])

        intervals = inputs.bootstrap(per_resample(statistic, list(arrays)), len(arrays[0]))
        rows += [{"split": split, "label": objective.event_column, "metric": metric,
                  **{k: float(v[i]) for k, v in intervals.items()}}
                 for i, metric in enumerate(names)]
    tables["bootstrap"] = pd.DataFrame(rows)
    test = inputs.predictions.get("test")
    if test is None or not test[target_of(objective.event_column)].any():
        return tables
    time, event, risk, survival = survival_arrays(test, objective.time_column,
                                                  objective.event_column, columns)
    groups = risk_groups(risk, int(settings.risk_groups))
    cohort = pd.DataFrame({"time": time, "event": event, "group": groups})
    curves, medians = kaplan_meier(cohort, "time", "event", "group")
    plots.save(plots.make_kaplan_meier(curves, objective.time_unit, horizons),
               inputs.out / "km_risk_groups.png")
    tables["km_risk_groups"] = pd.DataFrame(
        [{"group": str(g), "n": int((groups == g).sum()), "events": int(event[groups == g].sum()),
          "median_survival": medians[g],
          **{survival_at(h): s for h, s in zip(horizons, kaplan_meier_at(
              time[groups == g], event[groups == g], horizons))}} for g in curves])
    if columns:
        tables["survival_calibration"] = survival_calibration(inputs, time, event, survival,
                                                              groups)
    return tables


def risk_groups(risk: np.ndarray, n_groups: int) -> pd.Categorical:
    """``n_groups`` groups of (nearly) equal size by increasing risk, ``risk 1/3`` (lowest)
    to ``risk 3/3`` (highest); ties in risk share a group."""
    if n_groups < 1:
        raise ValueError(f"survival.risk_groups: give at least 1 group, got {n_groups}")
    ranks = pd.Series(risk).rank(method="min").to_numpy() - 1
    index = np.minimum((ranks * n_groups / len(risk)).astype(int), n_groups - 1)
    names = [f"risk {k + 1}/{n_groups}" for k in range(n_groups)]
    return pd.Categorical(np.asarray(names)[index], categories=names, ordered=True)


def survival_calibration(inputs: ReportInputs, time, event, survival, groups) -> pd.DataFrame:
    """Mean predicted survival at each horizon against the Kaplan–Meier estimate, with the
    latter's bootstrap interval, for all test exams and per risk group."""
    objective, rows = inputs.objective, []
    cohorts = {"all": np.ones(len(time), bool),
               **{str(g): np.asarray(groups == g) for g in groups.categories}}
    for cohort, rows_in in cohorts.items():
        if not event[rows_in].any():
            continue
        for i, h in enumerate(objective.horizons):
            observed = _floats(inputs.bootstrap(
                per_resample(lambda t, e, h=h: kaplan_meier_at(t, e, [h])[0],
                             [time[rows_in], event[rows_in]]), int(rows_in.sum())))
            rows.append({"group": cohort, "horizon": h,
                         "predicted": float(survival[rows_in, i].mean()),
                         "kaplan_meier": observed["value"], "lower": observed["lower"],
                         "upper": observed["upper"]})
    return pd.DataFrame(rows)


ANALYSES: dict[str, Callable[[ReportInputs], dict[str, pd.DataFrame]]] = {
    "binary": binary_analyses, "regression": regression_analyses, "classes": class_analyses,
    "strata": strata_analyses, "mortality": mortality_analyses,
    "contrast_survival": contrast_survival_analyses, "survival": survival_analyses}
# Analyses that relate predictions to the dataset's attributes and are skipped, with a
# warning and a row in skipped.csv, when the data cannot support them (no events, ...).
OPTIONAL = ("strata", "mortality", "contrast_survival")
