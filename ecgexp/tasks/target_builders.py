"""Target builders: the derived target columns a task needs, computed from the exam table.

A task config selects one builder with ``_target_`` and ``_partial_: true`` under
``task.targets``. The builder is called with the joined exam table (a pandas DataFrame, one row
per exam, in tracing order) and returns a new table: the input columns plus the added ones, with
the same index and row order. The input table is never mutated. Exams that take no part in the
task get a NaN target, and downstream code drops them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WEEK = pd.Timedelta(weeks=1)


def af_risk_classes(table: pd.DataFrame, patient_column: str = "patient_id",
                    date_column: str = "exam_date", af_column: str = "AF", min_weeks: int = 0,
                    max_weeks: int = 1000, val_fraction: float = 0.1, test_fraction: float = 0.3,
                    seed: int = 0) -> pd.DataFrame:
    """AF risk formulation (docs/studies.md §2.4): patient groups, exam classes and a patient split.

    Patient groups: 1, at least two exams and never AF; 2, AF on the first (earliest) exam,
    single-exam patients included; 3, AF first appears on a later exam; 0, everyone else.
    Exam classes, with times truncated to whole weeks and strict comparisons:
    1, a group-1 exam before the patient's last exam with min_weeks < weeks_to_last_exam <
    max_weeks; 2, any exam with AF; 3, a group-3 exam before the first AF with
    min_weeks < weeks_to_first_af < max_weeks; other exams are excluded.

    Split, per patient (legacy ``RandomState(seed)``; patients in ascending id order, as in the
    published formulation): patients with class-1 exams in group 1, then patients with class-3
    exams in group 3, are each shuffled and cut into test, val and train (floor of the
    fractions). Group-2 patients, then group-3 patients with class-2 but no class-3 exams, go to
    val (floor of ``val_fraction``) or train only.

    Exams on the same date count as simultaneous: an exam on the patient's last date is a last
    exam, and one on the date of the first AF is not before it.

    Args:
        table: one row per exam, with ``patient_column``, ``date_column`` (ISO date strings or
            datetimes) and ``af_column`` (0/1 or booleans); any order.
    Returns:
        A copy of ``table`` with ``af_group`` (int, 0-3), ``exam_class`` (float 1/2/3, NaN for
        excluded exams), ``weeks_to_first_af`` (float weeks from the exam to the patient's first
        AF exam, negative after it, NaN for patients never with AF), ``weeks_to_last_exam``
        (float weeks from the exam to the patient's last exam, 0 at the last) and ``af_split``
        (``train``/``val``/``test``, NaN for excluded exams).
    """
    _check_arguments(min_weeks, max_weeks, val_fraction, test_fraction)
    patients = _column(table, "patient_column", patient_column)
    timeline = _timeline(patients, _exam_dates(table, date_column), _af_flags(table, af_column))
    group = _af_groups(timeline)
    weeks_to_first_af = np.trunc((timeline.first_af - timeline.date) / WEEK)
    weeks_to_last_exam = np.trunc((timeline["last"] - timeline.date) / WEEK)

    def within(weeks: pd.Series) -> pd.Series:
        return (weeks > min_weeks) & (weeks < max_weeks)

    no_af = (group == 1) & (timeline.date < timeline["last"]) & within(weeks_to_last_exam)
    before_af = (group == 3) & (timeline.date < timeline.first_af) & within(weeks_to_first_af)
    exam_class = pd.Series(np.select([timeline.af, before_af, no_af], [2.0, 3.0, 1.0], np.nan))
    split = _patient_splits(patients, group, exam_class, val_fraction, test_fraction, seed)
    return table.assign(af_group=group.to_numpy(), exam_class=exam_class.to_numpy(),
                        weeks_to_first_af=weeks_to_first_af.to_numpy(),
                        weeks_to_last_exam=weeks_to_last_exam.to_numpy(),
                        af_split=patients.map(split).where(exam_class.notna()).to_numpy())


def af_time_to_event(table: pd.DataFrame, **formulation) -> pd.DataFrame:
    """Time to a first AF per exam, from the AF-risk formulation (:func:`af_risk_classes`,
    same arguments and split): a class-3 exam (no AF yet, AF on a later exam) is an event
    (``af_event`` 1) at ``af_time = weeks_to_first_af``; a class-1 exam (a patient never with
    AF) is censored (``af_event`` 0) at ``af_time = weeks_to_last_exam``; every other exam (AF
    now, or outside the week limits) has NaN in both and is left out."""
    classes = af_risk_classes(table, **formulation)
    event = classes.exam_class.map({3.0: 1.0, 1.0: 0.0})
    time = np.where(event == 1, classes.weeks_to_first_af,
                    np.where(event == 0, classes.weeks_to_last_exam, np.nan))
    return classes.assign(af_time=time, af_event=event.to_numpy())


def _check_arguments(min_weeks, max_weeks, val_fraction, test_fraction) -> None:
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"task.targets.val_fraction ({val_fraction}) and "
                         f"task.targets.test_fraction ({test_fraction}) must be non-negative "
                         f"and sum to less than 1")
    if min_weeks >= max_weeks:
        raise ValueError(f"task.targets.min_weeks ({min_weeks}) must be smaller than "
                         f"task.targets.max_weeks ({max_weeks})")


def _column(table: pd.DataFrame, key: str, column: str) -> pd.Series:
    """The column ``column`` (named by the config key ``task.targets.<key>``) on a fresh
    ``RangeIndex``; it must exist and have no missing values."""
    if column not in table.columns:
        raise KeyError(f"task.targets.{key}: column '{column}' not in the exam table "
                       f"(columns: {', '.join(map(str, table.columns))})")
    values = table[column].reset_index(drop=True)
    if values.isna().any():
        raise ValueError(f"task.targets.{key}: column '{column}' has {int(values.isna().sum())} "
                         f"missing values")
    return values


def _exam_dates(table: pd.DataFrame, date_column: str) -> pd.Series:
    """Exam dates (datetime64) parsed from ISO strings or datetimes."""
    raw = _column(table, "date_column", date_column)
    dates = pd.to_datetime(raw, errors="coerce", format="ISO8601")
    if dates.isna().any():
        examples = ", ".join(repr(value) for value in raw[dates.isna()].unique()[:3])
        raise ValueError(f"task.targets.date_column: {int(dates.isna().sum())} values of column "
                         f"'{date_column}' are not dates (e.g. {examples}); expected ISO dates "
                         f"such as '2015-03-31' or datetimes")
    return dates


def _af_flags(table: pd.DataFrame, af_column: str) -> pd.Series:
    """AF per exam (bool) from 0/1 or boolean values."""
    values = _column(table, "af_column", af_column)
    if not values.isin([0, 1]).all():
        examples = ", ".join(map(str, values[~values.isin([0, 1])].unique()[:3]))
        raise ValueError(f"task.targets.af_column: column '{af_column}' must hold 0/1 or "
                         f"booleans, found {examples}")
    return values.astype(bool)


def _timeline(patients: pd.Series, dates: pd.Series, af: pd.Series) -> pd.DataFrame:
    """Per exam: its ``date`` and ``af``, and its patient's ``first`` and ``last`` exam dates,
    ``first_af`` date (NaT without AF) and number of exams ``n_exams``."""
    keys = patients.to_numpy()
    by_patient = dates.groupby(keys, sort=False)
    return pd.DataFrame({"date": dates, "af": af, "first": by_patient.transform("min"),
                         "last": by_patient.transform("max"),
                         "first_af": dates.where(af).groupby(keys, sort=False).transform("min"),
                         "n_exams": by_patient.transform("size")})


def _af_groups(timeline: pd.DataFrame) -> pd.Series:
    """Patient group (0-3) per exam."""
    has_af = timeline.first_af.notna()
    groups = np.select([(timeline.n_exams >= 2) & ~has_af,
                        has_af & (timeline.first_af == timeline["first"]),
                        has_af & (timeline.first_af > timeline["first"])], [1, 2, 3], 0)
    return pd.Series(groups, index=timeline.index)


def _patient_splits(patients: pd.Series, group: pd.Series, exam_class: pd.Series,
                    val_fraction: float, test_fraction: float, seed: int) -> dict:
    """Split name per patient id, for the patients with at least one exam in a class."""
    has_class = (pd.crosstab(patients, exam_class).reindex(columns=[1.0, 2.0, 3.0], fill_value=0)
                 > 0)
    patient_group = group.groupby(patients.to_numpy()).first()  # ascending patient ids
    has_class = has_class.reindex(patient_group.index, fill_value=False)
    groups_with = {(g, c): patient_group.index[(patient_group == g) & has_class[c]]
                   for g, c in ((1, 1.0), (2, 2.0), (3, 2.0), (3, 3.0))}
    onset_unseen = groups_with[3, 2.0].difference(groups_with[3, 3.0], sort=False)
    rng = np.random.RandomState(seed)
    split = {}
    for ids in (groups_with[1, 1.0], groups_with[3, 3.0]):
        split.update(_shuffled_split(ids, rng, val_fraction, test_fraction))
    for ids in (groups_with[2, 2.0], onset_unseen):
        split.update(_shuffled_split(ids, rng, val_fraction, 0.0))
    return split


def _shuffled_split(ids: pd.Index, rng: np.random.RandomState, val_fraction: float,
                    test_fraction: float) -> dict:
    """Shuffles ``ids``; the first floor(test_fraction n) go to test, the next
    floor(val_fraction n) to val, the rest to train."""
    ids = ids.to_numpy().copy()
    rng.shuffle(ids)
    n_test = int(np.floor(test_fraction * len(ids)))
    n_val = int(np.floor(val_fraction * len(ids)))
    names = ["test"] * n_test + ["val"] * n_val + ["train"] * (len(ids) - n_test - n_val)
    return dict(zip(ids, names))
