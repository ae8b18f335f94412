"""Survival analysis with lifelines: Cox hazard ratios, ECG-age gap groups, score bins and
Kaplan–Meier curves (docs/studies.md §3.2 and §3.4).

Durations are in whatever unit the table holds (``timey`` is years for CODE-15% and SaMi-Trop;
the AF study counts weeks); hazard ratios do not depend on it, Kaplan–Meier times and medians
are reported in it. Events are 1 (event observed) or 0 (censored). Rows with a missing value
in a column used are an error rather than dropped silently; drop them first.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter

AGE_GAP_GROUPS = ("normal", "above", "below")
SCORE_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _key_error(key: str, message: str) -> ValueError:
    return ValueError(f"evaluation.survival.{key}: {message}")


def _check_columns(table: pd.DataFrame, columns: dict[str, Sequence[str]]) -> None:
    """``columns`` maps a config key to the column names it names."""
    for key, names in columns.items():
        for name in names:
            if name not in table.columns:
                raise _key_error(key, f"column {name!r} is not in the table "
                                      f"(columns: {list(table.columns)})")
            missing = int(table[name].isna().sum())
            if missing:
                raise _key_error(key, f"column {name!r} has {missing} missing values; "
                                      "drop those rows first")


def _check_survival(table: pd.DataFrame, duration_column: str, event_column: str) -> None:
    durations = table[duration_column].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(durations)) or np.any(durations < 0):
        raise _key_error("duration_column", f"durations in {duration_column!r} must be finite "
                                            "and non-negative")
    if not table[event_column].isin([0, 1]).all():
        raise _key_error("event_column", f"events in {event_column!r} must be 0 (censored) "
                                         "or 1 (event)")
    if not table[event_column].astype(bool).any():
        raise _key_error("event_column", f"no events in {event_column!r}; a survival model "
                                         "needs at least one")


def cox_hazard_ratios(table: pd.DataFrame, duration_column: str, event_column: str,
                      covariates: Sequence[str], penalizer: float = 0.0,
                      level: float = 0.95) -> pd.DataFrame:
    """Hazard ratios of a Cox proportional-hazards model (``lifelines.CoxPHFitter``).

    Each covariate enters as a numeric column: a categorical one must be passed as dummy columns
    with the reference level left out. ``penalizer`` is lifelines' L2 penalty on the
    coefficients (the AF study used 0.1 for the score-bin model). Returns one row per covariate,
    columns ``hazard_ratio`` (per unit of the covariate), ``lower`` and ``upper`` (the Wald
    ``level`` confidence interval) and ``p_value``; ``attrs`` holds ``n`` (rows) and ``events``.
    The proportional-hazards assumption is not checked (it fails for the AF score bins,
    docs/studies.md §6 item 26).
    """
    covariates = list(covariates)
    if not covariates:
        raise _key_error("covariates", "at least one covariate is needed")
    if not 0 < level < 1:
        raise _key_error("level", f"the confidence level must lie in (0, 1), got {level}")
    if penalizer < 0:
        raise _key_error("penalizer", f"the penalizer must be non-negative, got {penalizer}")
    _check_columns(table, {"duration_column": [duration_column], "event_column": [event_column],
                           "covariates": covariates})
    _check_survival(table, duration_column, event_column)
    categorical = [c for c in covariates if not pd.api.types.is_numeric_dtype(table[c])]
    if categorical:
        raise _key_error("covariates", f"covariates {categorical} are not numeric; pass a "
                                       "categorical covariate as dummy columns")
    constant = [c for c in covariates if table[c].nunique() < 2]
    if constant:
        raise _key_error("covariates", f"covariates {constant} take a single value, so their "
                                       "hazard ratios cannot be estimated")
    data = table[[duration_column, event_column, *covariates]].astype(np.float64)
    fitter = CoxPHFitter(penalizer=penalizer, alpha=1 - level)
    fitter.fit(data, duration_col=duration_column, event_col=event_column)
    bounds = np.exp(fitter.confidence_intervals_.loc[covariates].to_numpy())
    result = pd.DataFrame({"hazard_ratio": fitter.hazard_ratios_.loc[covariates].to_numpy(),
                           "lower": bounds[:, 0], "upper": bounds[:, 1],
                           "p_value": fitter.summary.loc[covariates, "p"].to_numpy()},
                          index=pd.Index(covariates, name="covariate"))
    result.attrs = {"n": len(data), "events": int(data[event_column].sum())}
    return result


def age_gap_groups(age_gap: Sequence[float], threshold: float = 8.0) -> pd.Categorical:
    """ECG-age gap groups (docs/studies.md §3.2): gap = predicted − chronological age, in years.

    ``"above"`` when gap > ``threshold``, ``"below"`` when gap < −``threshold`` (both strict),
    ``"normal"`` otherwise, so a gap of exactly ±8 years is normal. Missing gaps stay missing.
    """
    if threshold < 0:
        raise _key_error("threshold", f"the age-gap threshold must be non-negative (years), "
                                      f"got {threshold}")
    gap = np.asarray(age_gap, dtype=np.float64)
    labels = np.select([gap > threshold, gap < -threshold], ["above", "below"], "normal")
    labels = np.where(np.isnan(gap), None, labels)
    return pd.Categorical(labels, categories=list(AGE_GAP_GROUPS))


def age_gap_cox(table: pd.DataFrame, gap_column: str = "age_gap", duration_column: str = "timey",
                event_column: str = "death", covariates: Sequence[str] = ("age", "is_male"),
                threshold: float = 8.0, level: float = 0.95) -> pd.DataFrame:
    """Hazard ratios of the ``above`` and ``below`` ECG-age gap groups (reference ``normal``,
    see :func:`age_gap_groups`; gap and threshold in years), adjusted for ``covariates``.

    The published values are HR 1.79 (above) and 0.78 (below) on CODE-15%. Returns the rows
    ``above`` and ``below`` of :func:`cox_hazard_ratios`; ``attrs`` adds ``group_sizes``.
    """
    _check_columns(table, {"gap_column": [gap_column], "duration_column": [duration_column],
                           "event_column": [event_column], "covariates": list(covariates)})
    groups = age_gap_groups(table[gap_column], threshold)
    sizes = pd.Series(groups).value_counts().reindex(list(AGE_GAP_GROUPS))
    for group in AGE_GAP_GROUPS:
        if sizes[group] == 0:
            raise _key_error("threshold", f"no row falls in the {group!r} age-gap group with "
                                          f"threshold {threshold} years")
    data = table[[duration_column, event_column, *covariates]].copy()
    for group in ("above", "below"):
        if group in data.columns:
            raise _key_error("covariates", f"{group!r} names the age-gap dummy; rename that "
                                           "covariate")
        data[group] = (groups == group).astype(np.float64)
    result = cox_hazard_ratios(data, duration_column, event_column,
                               ["above", "below", *covariates], level=level)
    attrs = {**result.attrs, "group_sizes": {g: int(sizes[g]) for g in AGE_GAP_GROUPS}}
    result = result.loc[["above", "below"]]
    result.attrs = attrs
    return result


def score_bins(scores: Sequence[float], edges: Sequence[float] = SCORE_EDGES) -> pd.Categorical:
    """Right-closed bins of probability scores, labelled ``"(0.2, 0.4]"`` (docs/studies.md §3.4).

    Each bin holds lower < score ≤ upper, except that the lowest bin also holds its lower edge
    (a score of exactly 0 goes to ``"(0, 0.2]"``). Scores outside [edges[0], edges[-1]] are an
    error; missing scores stay missing. The categories are ordered from the lowest bin.
    """
    edges = [float(e) for e in edges]
    if len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise _key_error("score_edges", f"bin edges must be strictly increasing, got {edges}")
    values = np.asarray(scores, dtype=np.float64)
    present = values[~np.isnan(values)]
    if len(present) and (present.min() < edges[0] or present.max() > edges[-1]):
        raise _key_error("score_edges", f"scores in [{present.min()}, {present.max()}] fall "
                                        f"outside the bin edges {edges}")
    labels = [f"({low:g}, {high:g}]" for low, high in zip(edges[:-1], edges[1:])]
    return pd.cut(values, edges, right=True, include_lowest=True, labels=labels, ordered=True)


def kaplan_meier(table: pd.DataFrame, duration_column: str, event_column: str,
                 group_column: str, level: float = 0.95,
                 ) -> tuple[dict[Hashable, pd.DataFrame], pd.Series]:
    """Kaplan–Meier (product-limit) survival per group (``lifelines.KaplanMeierFitter``).

    Returns ``(curves, medians)``. ``curves[group]`` has columns ``time`` (the duration unit;
    starting at 0 with survival 1, then one row per distinct duration in the group),
    ``survival``, ``lower``/``upper`` (lifelines' exponential Greenwood ``level`` interval),
    ``at_risk`` (exams at risk just before the time) and ``censored`` (censored at it).
    ``medians[group]`` is the first time at which survival is ≤ 0.5, ``inf`` when it never gets
    there. Groups follow the category order of a categorical column (empty categories are left
    out), sorted order otherwise.
    """
    if not 0 < level < 1:
        raise _key_error("level", f"the confidence level must lie in (0, 1), got {level}")
    _check_columns(table, {"duration_column": [duration_column], "event_column": [event_column],
                           "group_column": [group_column]})
    _check_survival(table, duration_column, event_column)
    curves, medians = {}, {}
    for group, rows in table.groupby(group_column, observed=True, sort=True):
        fitter = KaplanMeierFitter(alpha=1 - level)
        fitter.fit(rows[duration_column].astype(np.float64), rows[event_column].astype(int))
        bounds = fitter.confidence_interval_.to_numpy()
        times = fitter.survival_function_.index.to_numpy()
        events = fitter.event_table.reindex(times)
        curves[group] = pd.DataFrame({"time": times,
                                      "survival": fitter.survival_function_.iloc[:, 0].to_numpy(),
                                      "lower": bounds[:, 0], "upper": bounds[:, 1],
                                      "at_risk": events["at_risk"].to_numpy(),
                                      "censored": events["censored"].to_numpy()})
        medians[group] = float(fitter.median_survival_time_)
    return curves, pd.Series(medians, name="median_survival", dtype=np.float64)
