"""AF risk formulation (docs/studies.md §2.4): groups, classes, weeks and the patient split.

The timeline table below is written by hand; its expected columns were worked out by hand from
the dates (weeks = whole days // 7, truncated toward zero).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgexp.data.synthetic import synthesize_exams
from ecgexp.tasks.target_builders import af_risk_classes

NAN = np.nan

# patient, exam date, AF | group, class (min 0, max 1000), class (min 2, max 52),
# weeks to first AF, weeks to last exam. Rows deliberately out of date and patient order.
# Patient 11: group 1, five exams, last on 2016-01-01. 22: single exam with AF (group 2).
# 33: single exam without AF (group 0). 44: AF from 2015-01-01 (group 3), a sinus exam after
# the onset. 55: AF on the first exam, sinus in between (group 2). 66: AF 4 days after its only
# earlier exam (group 3, no class 3). 77: group 1, 104 weeks apart. 88: group 1, 2 days apart.
TIMELINE = [
    (44, "2015-01-01", 1, 3, 2, 2, 0, 25),
    (11, "2015-12-26", 0, 1, NAN, NAN, NAN, 0),  # 6 days before the last exam
    (22, "2014-05-05", 1, 2, 2, 2, 0, 0),
    (55, "2013-09-01", 0, 2, NAN, NAN, -26, 25),
    (11, "2015-01-01", 0, 1, 1, NAN, NAN, 52),  # exactly max_weeks = 52
    (44, "2015-07-01", 0, 3, NAN, NAN, -25, 0),  # sinus after the onset
    (66, "2016-02-05", 1, 3, 2, 2, 0, 0),
    (33, "2016-06-06", 0, 0, NAN, NAN, NAN, 0),
    (44, "2014-01-01", 0, 3, 3, NAN, 52, 78),  # exactly max_weeks = 52 before AF
    (11, "2016-01-01", 0, 1, NAN, NAN, NAN, 0),  # the last exam
    (77, "2012-01-01", 0, 1, NAN, NAN, NAN, 0),
    (55, "2014-03-01", 1, 2, 2, 2, -52, 0),
    (44, "2014-12-18", 0, 3, 3, NAN, 2, 27),  # exactly min_weeks = 2 before AF
    (11, "2015-12-18", 0, 1, 1, NAN, NAN, 2),  # exactly min_weeks = 2
    (88, "2017-03-03", 0, 1, NAN, NAN, NAN, 0),
    (44, "2015-06-01", 1, 3, 2, 2, -21, 4),
    (66, "2016-02-01", 0, 3, NAN, NAN, 0, 0),
    (77, "2010-01-01", 0, 1, 1, NAN, NAN, 104),
    (44, "2014-12-28", 0, 3, NAN, NAN, 0, 26),  # 4 days before AF
    (11, "2015-12-11", 0, 1, 1, 1, NAN, 3),
    (55, "2013-03-01", 1, 2, 2, 2, 0, 52),
    (88, "2017-03-01", 0, 1, NAN, NAN, NAN, 0),
    (44, "2014-12-11", 0, 3, 3, 3, 3, 28),
]
EXPECTED = pd.DataFrame(TIMELINE, columns=["patient_id", "exam_date", "AF", "af_group",
                                           "exam_class", "narrow_class", "weeks_to_first_af",
                                           "weeks_to_last_exam"])


def timeline_table() -> pd.DataFrame:
    """The exam columns of ``TIMELINE``, with a shuffled non-default index."""
    table = EXPECTED[["patient_id", "exam_date", "AF"]].copy()
    table.index = 100 + (np.arange(len(table)) * 7) % len(table)
    return table


def test_groups_classes_and_weeks_follow_the_rules():
    table = timeline_table()
    out = af_risk_classes(table)
    assert list(out.index) == list(table.index)
    pd.testing.assert_frame_equal(out[["patient_id", "exam_date", "AF"]], table)
    assert out.af_group.dtype == np.int64
    for column in ("exam_class", "weeks_to_first_af", "weeks_to_last_exam"):
        assert out[column].dtype == np.float64
    expected = EXPECTED.set_index(table.index)
    assert out.af_group.tolist() == expected.af_group.tolist()
    for column in ("exam_class", "weeks_to_first_af", "weeks_to_last_exam"):
        np.testing.assert_array_equal(out[column], expected[column], err_msg=column)


def test_week_bounds_are_strict():
    out = af_risk_classes(timeline_table(), min_weeks=2, max_weeks=52)
    np.testing.assert_array_equal(out.exam_class, EXPECTED.narrow_class)


def test_datetimes_give_the_same_result_as_iso_strings():
    table = timeline_table()
    with_datetimes = table.assign(exam_date=pd.to_datetime(table.exam_date)
                                  + pd.Timedelta(hours=3))
    out = af_risk_classes(with_datetimes)
    expected = af_risk_classes(table)
    for column in ("af_group", "exam_class", "weeks_to_first_af", "weeks_to_last_exam",
                   "af_split"):
        pd.testing.assert_series_equal(out[column], expected[column])


def test_partial_weeks_are_truncated():
    table = pd.DataFrame({"patient_id": [1, 1], "AF": [0, 0],
                          "exam_date": ["2015-01-01T00:00", "2015-01-14T23:00"]})
    assert af_risk_classes(table).weeks_to_last_exam.tolist() == [1.0, 0.0]


def test_split_is_per_patient_and_only_for_kept_exams():
    out = af_risk_classes(timeline_table())
    kept = out.exam_class.notna()
    assert out.af_split[~kept].isna().all()
    assert out.af_split[kept].isin(["train", "val", "test"]).all()
    assert (out[kept].groupby("patient_id").af_split.nunique() == 1).all()
    assert set(out.patient_id[kept]) == {11, 22, 44, 55, 66, 77}  # 33 and 88 have no class


def test_input_is_not_mutated():
    table = timeline_table()
    before = table.copy()
    af_risk_classes(table)
    pd.testing.assert_frame_equal(table, before)


def cohort(n_no_af: int, n_onset: int, n_first_af: int, n_onset_unseen: int) -> pd.DataFrame:
    """Patients with two exams, their ``kind`` in a column: ``no_af``, never AF, 10 weeks apart
    (group 1, class 1 then excluded); ``onset``, sinus then AF 10 weeks later (group 3, class 3
    then 2); ``first_af``, AF on both (group 2); ``onset_unseen``, sinus then AF 3 days later
    (group 3, class 2 only). Patient ids are shuffled across the kinds."""
    kinds = {"no_af": (n_no_af, 0, 70), "onset": (n_onset, 0, 70),
             "first_af": (n_first_af, 1, 70), "onset_unseen": (n_onset_unseen, 0, 3)}
    patients = [(kind, first_af, gap) for kind, (n, first_af, gap) in kinds.items()
                for _ in range(n)]
    ids = np.random.default_rng(1).permutation(len(patients)) + 1000
    rows = [(patient, kind, day, af) for patient, (kind, first_af, gap) in zip(ids, patients)
            for day, af in ((0, first_af), (gap, 1 if kind != "no_af" else 0))]
    table = pd.DataFrame(rows, columns=["patient_id", "kind", "day", "AF"])
    table["exam_date"] = pd.Timestamp("2012-01-01") + pd.to_timedelta(table.pop("day"), "D")
    return table


@pytest.mark.parametrize("kind, expected", [
    ("no_af", {"test": 600, "val": 200, "train": 1203}),  # floor(0.3 n), floor(0.1 n), rest
    ("onset", {"test": 90, "val": 30, "train": 181}),
    ("first_af", {"val": 20, "train": 183}),  # never test
    ("onset_unseen", {"val": 5, "train": 46}),
])
def test_split_counts_per_kind_of_patient(kind, expected):
    out = af_risk_classes(cohort(2003, 301, 203, 51))
    kept = out[out.exam_class.notna() & (out.kind == kind)]
    assert kept.groupby("patient_id").af_split.first().value_counts().to_dict() == expected


def test_split_depends_on_the_seed_only():
    table = cohort(300, 50, 30, 10)
    first = af_risk_classes(table, seed=3).af_split
    pd.testing.assert_series_equal(af_risk_classes(table, seed=3).af_split, first)
    assert not af_risk_classes(table, seed=4).af_split.equals(first)


def test_missing_column_names_the_config_key():
    with pytest.raises(KeyError, match=r"task\.targets\.af_column: column 'AF_label'.*"
                                       r"columns: patient_id, exam_date, AF"):
        af_risk_classes(timeline_table(), af_column="AF_label")


def test_unparseable_dates_are_reported():
    table = timeline_table()
    table.loc[table.index[3], "exam_date"] = "31/12/2015"
    with pytest.raises(ValueError, match=r"task\.targets\.date_column: 1 values.*'31/12/2015'"):
        af_risk_classes(table)


def test_missing_values_and_bad_af_values_are_reported():
    table = timeline_table()
    with pytest.raises(ValueError, match=r"task\.targets\.patient_column: .* 1 missing"):
        af_risk_classes(table.assign(patient_id=table.patient_id.mask(table.index == 100)))
    with pytest.raises(ValueError, match=r"task\.targets\.af_column: .*0/1.*found 2"):
        af_risk_classes(table.assign(AF=table.AF.replace(1, 2)))


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (-0.1, 0.3), (0.1, 1.2)])
def test_bad_fractions_are_rejected(fractions):
    val_fraction, test_fraction = fractions
    with pytest.raises(ValueError, match=r"task\.targets\.val_fraction"):
        af_risk_classes(timeline_table(), val_fraction=val_fraction, test_fraction=test_fraction)


def test_bad_week_window_is_rejected():
    with pytest.raises(ValueError, match=r"task\.targets\.min_weeks \(10\).*max_weeks \(10\)"):
        af_risk_classes(timeline_table(), min_weeks=10, max_weeks=10)


def test_synthetic_cohort_has_all_three_classes():
    _, table = synthesize_exams(3000, seed=0)
    out = af_risk_classes(table)
    counts = pd.crosstab(out.af_split, out.exam_class)
    print("\nexam class counts per split (synthesize_exams(3000, seed=0)):\n", counts)
    assert (counts.loc["train"] > 0).all() and list(counts.columns) == [1.0, 2.0, 3.0]
    totals = counts.sum()
    assert totals[1.0] > 500 and totals[2.0] > 100 and totals[3.0] > 15
    assert set(out.af_split[out.af_group == 2].dropna()) <= {"train", "val"}
