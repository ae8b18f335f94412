"""Split rules: each takes the exam table (in tracing order) and returns one split name per row.

A dataset config selects one rule with ``_target_`` and ``_partial_: true`` under
``dataset.split``; the names are ``train``, ``val`` and ``test``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"dataset.split: val_fraction ({val_fraction}) and test_fraction ({test_fraction}) "
            f"must be non-negative and sum to less than 1"
        )


def column_split(table: pd.DataFrame, column: str = "split", train: str = "train",
                 val: str = "val", test: str = "test") -> pd.Series:
    """Predefined split column; rows with any other value are left out (NaN)."""
    if column not in table.columns:
        raise KeyError(f"dataset.split.column: column '{column}' not in the label table "
                       f"(columns: {', '.join(map(str, table.columns))})")
    names = {train: "train", val: "val", test: "test"}
    return table[column].map(names)


def random_split(table: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
                 group_column: str | None = "patient_id",
                 stratify: Sequence[str] | bool = ()) -> pd.Series:
    """Random split; with ``group_column`` all exams of one patient land in the same split.

    ``stratify`` (0/1 label columns; ``true`` in a config: the task's own, see
    :func:`with_task_strata`) shares out every combination of those labels between the
    splits in the fractions asked, give or take one patient: a patient counts as positive for
    a label when any of their exams is. Without it the patients are drawn at random.
    """
    _check_fractions(val_fraction, test_fraction)
    if group_column is None:
        groups = pd.Series(np.arange(len(table)), index=table.index)
    elif group_column not in table.columns:
        raise KeyError(f"dataset.split.group_column: column '{group_column}' not in the label "
                       f"table (columns: {', '.join(map(str, table.columns))}); "
                       f"set it to null to split exams independently")
    else:
        groups = table[group_column]
    if stratify is True:
        raise ValueError("dataset.split.stratify: true stands for the task's labels, which "
                         "only a dataset source knows; name the label columns here")
    stratify = [] if stratify is False else list(stratify)
    missing = [c for c in stratify if c not in table.columns]
    if missing:
        raise KeyError(f"dataset.split.stratify: columns {missing} not in the label table "
                       f"(columns: {', '.join(map(str, table.columns))})")
    unique_groups = groups.unique()
    n_groups = len(unique_groups)
    order = np.random.default_rng(seed).permutation(n_groups)
    n_test = int(round(test_fraction * n_groups))
    n_val = int(round(val_fraction * n_groups))
    assignment = np.full(n_groups, "train", dtype=object)
    if not stratify:
        assignment[order[:n_test]] = "test"
        assignment[order[n_test:n_test + n_val]] = "val"
    else:
        # the patients in random order, then grouped by their label combination; the split
        # names dealt out evenly along that order, so each combination gets its share
        codes = pd.factorize(groups, use_na_sentinel=False)[0]  # in unique_groups' order
        strata = np.zeros((n_groups, len(stratify)), dtype=bool)
        np.logical_or.at(strata, codes, table[stratify].fillna(0).to_numpy() > 0)
        ranked = order[np.lexsort((np.arange(n_groups), *strata[order].T[::-1]))]
        assignment[ranked] = _dealt(n_groups, {"test": n_test, "val": n_val})
    return groups.map(dict(zip(unique_groups, assignment)))


def _dealt(n: int, counts: dict[str, int]) -> np.ndarray:
    """``n`` split names, ``counts[name]`` of each named one and ``train`` for the rest,
    spread evenly along the sequence (each name at the positions ``(k + 1/2) n / count``, as
    in a proportional apportionment; ties in the order of ``counts``), so that any stretch of
    the sequence holds every name in about its proportion."""
    counts = {**counts, "train": n - sum(counts.values())}
    names = np.array(list(counts), dtype=object)
    which = np.repeat(np.arange(len(names)), list(counts.values()))
    place = np.concatenate([(np.arange(c) + 0.5) / c for c in counts.values()])
    return names[which[np.lexsort((which, place))]]


def with_task_strata(rule: Callable[[pd.DataFrame], pd.Series],
                     labels: Sequence[str]) -> Callable[[pd.DataFrame], pd.Series]:
    """``rule``, a split rule bound from a config, with ``stratify: true`` (the task's labels)
    bound to ``labels``, the task's 0/1 target columns; any other rule as it is."""
    if (getattr(rule, "keywords", None) or {}).get("stratify") is True:
        return partial(rule, stratify=list(labels))
    return rule


def last_fraction_split(table: pd.DataFrame, val_fraction: float,
                        test_fraction: float = 0.0) -> pd.Series:
    """automatic-ecg-diagnosis rule: training is rows [0, ceil((1 - val - test) n)), then
    validation, then test, in tracing order."""
    _check_fractions(val_fraction, test_fraction)
    n = len(table)
    n_train = math.ceil((1 - val_fraction - test_fraction) * n)
    n_val = math.ceil((1 - test_fraction) * n) - n_train
    names = ["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val)
    return pd.Series(names, index=table.index, dtype=object)


def first_n_split(table: pd.DataFrame, n_val: int, n_test: int = 0) -> pd.Series:
    """ECG-age rule: the first ``n_val`` exams validate (the published ``<= n_val`` off-by-one
    is fixed), the next ``n_test`` test, the rest train."""
    if n_val < 0 or n_test < 0 or n_val + n_test >= len(table):
        raise ValueError(f"dataset.split: n_val ({n_val}) + n_test ({n_test}) must be "
                         f"non-negative and smaller than the {len(table)} exams")
    names = ["val"] * n_val + ["test"] * n_test + ["train"] * (len(table) - n_val - n_test)
    return pd.Series(names, index=table.index, dtype=object)


def single_split(table: pd.DataFrame, name: str = "test") -> pd.Series:
    """Every exam in one split (an external test set such as CODE-test)."""
    if name not in SPLITS:
        raise ValueError(f"dataset.split.name: '{name}' is not one of {SPLITS}")
    return pd.Series(name, index=table.index, dtype=object)


def age_balanced_split(table: pd.DataFrame, val_fraction: float = 0.05,
                       test_fraction: float = 0.15, seed: int = 0, age_column: str = "age",
                       group_column: str = "patient_id",
                       balanced_ages: tuple[float, float] = (16, 85)) -> pd.Series:
    """ECG-age ``formulate_problem.py`` rule (docs/studies.md §2.2), at patient level: test and val
    come out about uniform over the ages in ``balanced_ages`` (years, inclusive).

    Each patient gets the age at one randomly chosen exam of theirs (among the exams with an
    age). The ages, and the patients within each age, are shuffled; patients are then drawn one
    per age per pass, first over the ages in ``balanced_ages``, then over the others. Of the P
    patients, the first floor(test_fraction P) drawn go to test, the next floor(val_fraction P)
    to val and the rest to train; all exams of a patient share its split. Patients without
    any age are left out (NaN).
    """
    _check_fractions(val_fraction, test_fraction)
    if len(balanced_ages) != 2 or balanced_ages[0] > balanced_ages[1]:
        raise ValueError(f"dataset.split.balanced_ages: expected [lowest, highest] ages, got "
                         f"{list(balanced_ages)}")
    for key, column in (("age_column", age_column), ("group_column", group_column)):
        if column not in table.columns:
            raise KeyError(f"dataset.split.{key}: column '{column}' not in the label table "
                           f"(columns: {', '.join(map(str, table.columns))})")
    rng = np.random.default_rng(seed)
    exams = table[[group_column, age_column]].dropna(subset=[age_column])
    chosen = exams.iloc[rng.permutation(len(exams))].drop_duplicates(group_column)
    chosen = chosen.iloc[rng.permutation(len(chosen))]  # patients in random order
    order = _one_per_age_order(chosen[age_column].to_numpy(), balanced_ages, rng)
    n_test = math.floor(test_fraction * len(chosen))
    n_val = math.floor(val_fraction * len(chosen))
    names = np.full(len(chosen), "train", dtype=object)
    names[:n_test] = "test"
    names[n_test:n_test + n_val] = "val"
    return table[group_column].map(dict(zip(chosen[group_column].to_numpy()[order], names)))


def _one_per_age_order(ages: np.ndarray, balanced_ages, rng: np.random.Generator) -> np.ndarray:
    """Drawing order of patients (indices into ``ages``, one age per patient, patients already
    shuffled): pass k takes the k-th patient of every age that has one, ages in a shuffled
    order; all passes over the ages in ``balanced_ages`` come before those over the others."""
    unique_ages, age_index = np.unique(ages, return_inverse=True)
    age_position = rng.permutation(len(unique_ages))[age_index]
    draw_pass = pd.Series(age_index).groupby(age_index).cumcount().to_numpy()
    outside = (ages < balanced_ages[0]) | (ages > balanced_ages[1])
    return np.lexsort((age_position, draw_pass, outside))
