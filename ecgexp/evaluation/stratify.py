"""Subgroup evaluation by age band and sex (docs/studies.md §3.3).

The published Chagas strata 0–40/40–50/50–60/60–70/70+ used strict inequalities on both sides,
so ages of exactly 40, 50, 60 and 70 fell in no stratum (docs/studies.md §6 item 21). Here
every band is half-open, [lower, upper), and the bounds are written into the labels.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np
import pandas as pd

AGE_EDGES = (0, 40, 50, 60, 70, None)
SEX_GROUPS = ("female", "male")


def _key_error(key: str, message: str) -> ValueError:
    return ValueError(f"evaluation.stratify.{key}: {message}")


def age_bands(ages: Sequence[float],
              edges: Sequence[float | None] = AGE_EDGES) -> pd.Categorical:
    """Age bands in years: each band holds lower ≤ age < upper, labelled ``"[40, 50)"``.

    A last edge of ``None`` leaves the top band open, labelled ``"≥70"``. Every age from the
    first edge on (below the last edge when it is a number) falls in exactly one band: 40 goes to
    ``"[40, 50)"`` and 70 to ``"≥70"``. Ages outside the edges are an error; missing ages stay
    missing. The categories are ordered from the youngest band.
    """
    edges = list(edges)
    open_top = edges[-1] is None
    bounds = [float(e) for e in (edges[:-1] if open_top else edges)]
    if len(bounds) < (1 if open_top else 2) or np.any(np.diff(bounds) <= 0):
        raise _key_error("age_edges", f"age edges must be strictly increasing numbers (the last "
                                      f"may be None), got {edges}")
    labels = [f"[{low:g}, {high:g})" for low, high in zip(bounds[:-1], bounds[1:])]
    if open_top:
        labels.append(f"≥{bounds[-1]:g}")
        bounds.append(np.inf)
    values = np.asarray(ages, dtype=np.float64)
    present = values[~np.isnan(values)]
    if len(present) and (present.min() < bounds[0] or present.max() >= bounds[-1]):
        raise _key_error("age_edges", f"ages in [{present.min()}, {present.max()}] fall outside "
                                      f"the bands {labels}")
    return pd.cut(values, bounds, right=False, labels=labels, ordered=True)


def sex_groups(is_male: Sequence[float | bool]) -> pd.Categorical:
    """``"male"`` where ``is_male`` is 1/True, ``"female"`` where it is 0/False; missing stays
    missing, any other value is an error."""
    values = pd.Series(np.asarray(is_male, dtype=object))
    present = values.dropna()
    if not present.isin([0, 1]).all():
        raise _key_error("sex_column", f"is_male must be 0/1 or False/True, got "
                                       f"{sorted(set(present.astype(str)))}")
    labels = values.map(lambda v: None if pd.isna(v) else SEX_GROUPS[int(v)])
    return pd.Categorical(labels, categories=list(SEX_GROUPS))


def stratified(predictions: pd.DataFrame, groups: pd.Series | pd.Categorical | Sequence,
               report: Callable[[pd.DataFrame], dict]) -> dict[Hashable, dict]:
    """``report`` applied to the rows of ``predictions`` in each group: ``{group: report(rows)}``.

    ``groups`` is a Series on the same index as ``predictions`` or, otherwise, one value per row
    in row order. Groups follow the category order of a categorical (every category is listed,
    empty ones included), sorted order otherwise; rows with a missing group are left out. A group
    with fewer than 2 rows is reported as ``{"n": rows}`` without calling ``report``.
    """
    if isinstance(groups, pd.Series):
        if not groups.index.equals(predictions.index):
            raise ValueError("evaluation.stratify: the groups Series is not indexed like the "
                             "predictions")
        groups = groups.array
    if len(groups) != len(predictions):
        raise ValueError(f"evaluation.stratify: {len(groups)} group values for "
                         f"{len(predictions)} prediction rows")
    groups = pd.Series(groups, index=predictions.index)
    result = {}
    for group, rows in predictions.groupby(groups, observed=False, sort=True):
        result[group] = {"n": len(rows)} if len(rows) < 2 else report(rows)
    return result
