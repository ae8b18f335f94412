"""Age-balanced patient split (docs/studies.md §2.2, ``formulate_problem.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgexp.data.splits import age_balanced_split

AGES = np.arange(10, 96)  # 86 ages; 16-85 (70 ages) are balanced
PER_AGE = 37  # 3182 patients: test floor(0.15 * 3182) = 477, val floor(0.05 * 3182) = 159


def cohort(per_age: int = PER_AGE) -> pd.DataFrame:
    """``per_age`` patients of every age in ``AGES``, two exams each at that age, rows shuffled
    and with a non-default index."""
    patients = np.arange(len(AGES) * per_age) + 500
    table = pd.DataFrame({"patient_id": np.repeat(patients, 2),
                          "age": np.repeat(np.repeat(AGES, per_age), 2)})
    table = table.sample(frac=1, random_state=0)
    table.index = table.index * 3 + 7
    return table


def patient_splits(table: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    return table.assign(split=split).drop_duplicates("patient_id")


def test_returns_split_names_aligned_with_the_table():
    table = cohort()
    split = age_balanced_split(table)
    assert split.index.equals(table.index)
    assert split.isin(["train", "val", "test"]).all()


def test_patients_never_straddle_splits():
    table = cohort()
    table["age"] += np.arange(len(table)) % 2  # a patient's two exams now differ in age
    split = age_balanced_split(table)
    assert (table.assign(split=split).groupby("patient_id").split.nunique() == 1).all()


def test_split_sizes_are_floors_of_the_fractions():
    counts = patient_splits(cohort(), age_balanced_split(cohort())).split.value_counts()
    assert counts.to_dict() == {"train": 2546, "test": 477, "val": 159}


def test_test_and_val_are_uniform_over_the_balanced_ages():
    table = cohort()
    patients = patient_splits(table, age_balanced_split(table))
    test = patients[patients.split == "test"].age.value_counts()
    held_out = patients[patients.split != "train"].age.value_counts()
    # 477 = 6 passes over the 70 balanced ages + 57; 477 + 159 = 636 = 9 passes + 6.
    assert set(test.index) == set(range(16, 86)) == set(held_out.index)
    assert test.value_counts().to_dict() == {7: 57, 6: 13}
    assert held_out.value_counts().to_dict() == {9: 64, 10: 6}


def test_balanced_ages_are_drawn_first():
    table = pd.DataFrame({"patient_id": range(11), "age": [50] + [10] * 10})
    split = age_balanced_split(table, val_fraction=0.1, test_fraction=0.1)  # 1 test, 1 val
    assert split.tolist()[0] == "test"
    assert split.value_counts().to_dict() == {"train": 9, "test": 1, "val": 1}


def test_one_patient_per_age_per_pass():
    table = pd.DataFrame({"patient_id": range(6), "age": [30] * 5 + [40]})
    for seed in range(5):
        split = age_balanced_split(table, val_fraction=0.0, test_fraction=0.34, seed=seed)
        test_ages = table.age[split == "test"].tolist()  # floor(0.34 * 6) = 2
        assert sorted(test_ages) == [30, 40]


def test_custom_balanced_range():
    table = cohort(per_age=11)  # 946 patients: test floor(0.15 * 946) = 141
    patients = patient_splits(table, age_balanced_split(table, balanced_ages=(20, 29)))
    test = patients[patients.split == "test"].age.value_counts()
    # ages 20-29 (11 patients each) are used up first (110), then 31 from the other 76 ages.
    assert (test[list(range(20, 30))] == 11).all()
    assert test.sum() == 141 and test.drop(list(range(20, 30))).max() == 1


def test_reproducible_with_the_seed():
    table = cohort()
    first = age_balanced_split(table, seed=5)
    pd.testing.assert_series_equal(age_balanced_split(table, seed=5), first)
    assert not age_balanced_split(table, seed=6).equals(first)


def test_patients_without_an_age_are_left_out():
    table = pd.DataFrame({"patient_id": [1, 1, 2, 3, 3],
                          "age": [40.0, np.nan, np.nan, 60.0, 61.0]})
    split = age_balanced_split(table)
    assert split[0] == split[1] and split[3] == split[4]
    assert split[:2].notna().all() and np.isnan(split[2])


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (-0.05, 0.15), (0.05, 1.0)])
def test_bad_fractions_are_rejected(fractions):
    val_fraction, test_fraction = fractions
    with pytest.raises(ValueError, match=r"dataset\.split: val_fraction"):
        age_balanced_split(cohort(2), val_fraction=val_fraction, test_fraction=test_fraction)


@pytest.mark.parametrize("key, column", [("age_column", "Idade"),
                                         ("group_column", "N_paciente_univoco")])
def test_missing_column_names_the_config_key(key, column):
    with pytest.raises(KeyError, match=rf"dataset\.split\.{key}: column '{column}'.*"
                                       r"columns: patient_id, age"):
        age_balanced_split(cohort(2), **{key: column})


@pytest.mark.parametrize("ages", [(85, 16), (16,)])
def test_bad_balanced_ages_are_rejected(ages):
    with pytest.raises(ValueError, match=r"dataset\.split\.balanced_ages"):
        age_balanced_split(cohort(2), balanced_ages=ages)
