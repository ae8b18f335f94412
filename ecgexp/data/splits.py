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
