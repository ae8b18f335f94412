"""Split rules: each takes the exam table (in tracing order) and returns one split name per row.

A dataset config selects one rule with ``_target_`` and ``_partial_: true`` under
``dataset.split``; the names are ``train``, ``val`` and ``test``.
"""

from __future__ import annotations

import math

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
                 group_column: str | None = "patient_id") -> pd.Series:
    """Random split; with ``group_column`` all exams of one patient land in the same split."""
    _check_fractions(val_fraction, test_fraction)
    if group_column is None:
        groups = pd.Series(np.arange(len(table)), index=table.index)
    elif group_column not in table.columns:
        raise KeyError(f"dataset.split.group_column: column '{group_column}' not in the label "
                       f"table (columns: {', '.join(map(str, table.columns))}); "
                       f"set it to null to split exams independently")
    else:
        groups = table[group_column]
    unique_groups = groups.unique()
    order = np.random.default_rng(seed).permutation(len(unique_groups))
    n_test = int(round(test_fraction * len(unique_groups)))
    n_val = int(round(val_fraction * len(unique_groups)))
    assignment = np.full(len(unique_groups), "train", dtype=object)
    assignment[order[:n_test]] = "test"
    assignment[order[n_test:n_test + n_val]] = "val"
    return groups.map(dict(zip(unique_groups, assignment)))


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
