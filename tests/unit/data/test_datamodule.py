"""Data layer: HDF5 layouts (docs/studies.md §4), label joins, split rules, loaders and bad inputs,
through ``HDF5Source`` and ``ExamDataModule``. The checks of the file readers themselves are
tested in tests/unit/data/test_hdf5.py (``ecgexp.data.hdf5``) and tests/unit/data/test_labels.py
(``ecgexp.data.labels``).

Every test writes its own small HDF5/CSV files under ``tmp_path``. Tracing values encode their
identity: lead ``j`` (in stored order) of the exam with key ``k`` holds ``1000 * k + j`` at every
sample, so an item read back tells which exam row it came from and which stored lead each output
lead is. The key is the exam id, or the row number for layouts without ids.
"""

from __future__ import annotations

import math
import pickle
import re
from functools import partial

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from ecgexp.data.datamodule import ExamDataModule
from ecgexp.data.dataset import ExamDataset, collate_exams
from ecgexp.data.source import HDF5Source
from ecgexp.data.splits import (
    column_split,
    first_n_split,
    last_fraction_split,
    random_split,
    single_split,
)
from ecgexp.errors import UserError

N_SAMPLES = 4096
# The encoded tracings are constant in time (no ECG amplitudes), so the set-up check of their
# units is off here; tests/unit/data/test_source.py tests it on real and synthetic exams.
UNCHECKED = {"amplitude_range": None}
CANONICAL = ["DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


# --------------------------------------------------------------------------------------------
# helpers


def encoded(keys, n_leads: int = 12, n_samples: int = N_SAMPLES) -> np.ndarray:
    """float32 (N, n_samples, n_leads): lead j of exam key k = 1000 * k + j."""
    keys = np.asarray(keys, dtype=np.float32)
    per_lead = 1000 * keys[:, None] + np.arange(n_leads, dtype=np.float32)
    return np.ascontiguousarray(np.repeat(per_lead[:, None, :], n_samples, axis=1))


def write_h5(path, tracings, exam_ids=None, tracings_name="tracings", id_name="exam_id"):
    with h5py.File(path, "w") as handle:
        handle.create_dataset(tracings_name, data=np.asarray(tracings, np.float32))
        if exam_ids is not None:
            handle.create_dataset(id_name, data=np.asarray(exam_ids, np.int64))
    return path


def lead_values(item) -> np.ndarray:
    """Per-lead value of an item's (leads, samples) tracing, checking it is constant in time."""
    tracing = item["tracing"]
    assert tracing.dtype == torch.float32
    assert tracing.shape[1] == N_SAMPLES
    values = tracing[:, 0]
    assert torch.equal(tracing, values[:, None].expand_as(tracing)), "tracing mixes leads/exams"
    return values.numpy()


def all_items(dataset):
    return [dataset[i] for i in range(len(dataset))]


def write_generic(tmp_path, exam_ids, label_ids=None, tracings=None, extra_columns=None):
    """tracings.hdf5 (``tracings`` + ``exam_id``) and labels.csv (``exam_id``, ``y``)."""
    exam_ids = np.asarray(exam_ids, np.int64)
    write_h5(tmp_path / "tracings.hdf5", encoded(exam_ids) if tracings is None else tracings,
             exam_ids)
    label_ids = exam_ids if label_ids is None else np.asarray(label_ids, np.int64)
    labels = pd.DataFrame({"exam_id": label_ids, "y": label_ids * 0.5})
    for name, values in (extra_columns or {}).items():
        labels[name] = values
    labels.to_csv(tmp_path / "labels.csv", index=False)
    return labels


def generic_source(tmp_path, **overrides) -> HDF5Source:
    kwargs = dict(name="generic", tracing_files=str(tmp_path / "tracings.hdf5"),
                  labels_csv=str(tmp_path / "labels.csv"),
                  split=partial(first_n_split, n_val=4), drop_padding_rows=False, **UNCHECKED)
    kwargs.update(overrides)
    return HDF5Source(**kwargs)


def loader_exam_ids(loader) -> list[int]:
    ids = []
    for batch in loader:
        if batch is not None:
            ids.extend(batch["exam_id"].tolist())
    return ids


# --------------------------------------------------------------------------------------------
# 1. layouts


def make_code15(tmp_path, parts=(0, 1, 2), per_part=6, seed=0):
    """CODE-15%: exams_part{p}.hdf5 with a padding row each; exams.csv in shuffled order."""
    rng = np.random.default_rng(seed)
    ids_by_part = {}
    for p in parts:
        ids = 100 * (p + 1) + np.arange(1, per_part + 1)
        ids_by_part[p] = ids
        tracings = np.concatenate([encoded(ids), np.zeros((1, N_SAMPLES, 12), np.float32)])
        write_h5(tmp_path / f"exams_part{p}.hdf5", tracings, np.append(ids, 0))
    all_ids = np.concatenate([ids_by_part[p] for p in parts])
    n = len(all_ids)
    labels = pd.DataFrame({
        "exam_id": all_ids,
        "age": rng.integers(18, 90, n) + 0.5,
        "is_male": rng.random(n) < 0.5,
        "AF": np.arange(n) % 3 == 0,
        "RBBB": np.arange(n) % 2 == 1,
        "patient_id": all_ids // 2,
        "trace_file": [f"exams_part{p}.hdf5" for p in parts for _ in range(per_part)],
    })
    labels = labels.iloc[rng.permutation(n)].reset_index(drop=True)
    labels.to_csv(tmp_path / "exams.csv", index=False)
    return ids_by_part, labels


def code15_source(tmp_path, **overrides) -> HDF5Source:
    kwargs = dict(name="code15", tracing_files=str(tmp_path / "exams_part*.hdf5"),
                  labels_csv=str(tmp_path / "exams.csv"),
                  split=partial(random_split, val_fraction=0.25, test_fraction=0.25, seed=1),
                  **UNCHECKED)
    kwargs.update(overrides)
    return HDF5Source(**kwargs)


def test_code15_parts_padding_and_join(tmp_path):
    ids_by_part, labels = make_code15(tmp_path, parts=(0, 1, 2))
    csv_text = (tmp_path / "exams.csv").read_text()
    assert "True" in csv_text and "False" in csv_text  # booleans stored as in exams.csv
    targets = ["age", "AF", "RBBB"]

    table, reader = code15_source(tmp_path).load(targets)
    expected_order = np.concatenate([ids_by_part[p] for p in (0, 1, 2)])
    assert (table.exam_id != 0).all()
    np.testing.assert_array_equal(table.exam_id, expected_order)  # tracing order, not CSV order
    assert set(table.split) <= {"train", "val", "test"}

    dm = ExamDataModule(code15_source(tmp_path), targets, leads=CANONICAL, batch_size=4)
    dm.setup("fit")
    by_id = labels.set_index("exam_id")
    seen = []
    for dataset in dm.datasets.values():
        for item in all_items(dataset):
            exam_id = int(item["exam_id"])
            seen.append(exam_id)
            assert item["exam_id"].dtype == torch.int64
            np.testing.assert_array_equal(lead_values(item), 1000 * exam_id + np.arange(12))
            row = by_id.loc[exam_id]
            assert item["target"].dtype == torch.float32
            np.testing.assert_array_equal(
                item["target"].numpy(), np.array([row.age, float(row.AF), float(row.RBBB)],
                                                 np.float32))
    assert sorted(seen) == sorted(expected_order.tolist())
    # boolean columns came out as 0/1
    all_targets = np.stack([it["target"].numpy() for ds in dm.datasets.values()
                            for it in all_items(ds)])
    assert set(np.unique(all_targets[:, 1:])) == {0.0, 1.0}


def test_code15_natural_part_order(tmp_path):
    ids_by_part, _ = make_code15(tmp_path, parts=(1, 2, 10), per_part=3)
    table, reader = code15_source(tmp_path).load(["age"])
    assert [f.name for f in reader.files] == ["exams_part1.hdf5", "exams_part2.hdf5",
                                             "exams_part10.hdf5"]
    np.testing.assert_array_equal(
        table.exam_id, np.concatenate([ids_by_part[1], ids_by_part[2], ids_by_part[10]]))
    part10 = table[table.exam_id.isin(ids_by_part[10])]
    assert (part10.file_index == 2).all()
    np.testing.assert_array_equal(part10.row, [0, 1, 2])
    for _, r in table.iterrows():  # reader locations point at the right rows
        tracing = reader.read(int(r.file_index), int(r.row))
        assert tracing.shape == (N_SAMPLES, 12)
        np.testing.assert_array_equal(tracing[0], 1000 * r.exam_id + np.arange(12))
    reader.close()


def test_code15_explicit_file_list(tmp_path):
    ids_by_part, _ = make_code15(tmp_path, parts=(0, 1), per_part=3)
    files = [str(tmp_path / "exams_part1.hdf5"), str(tmp_path / "exams_part0.hdf5")]
    table, reader = code15_source(tmp_path, tracing_files=files).load(["age"])
    np.testing.assert_array_equal(table.exam_id,
                                  np.concatenate([ids_by_part[1], ids_by_part[0]]))


def test_samitrop_row_order_ids_from_csv(tmp_path):
    n = 12
    rng = np.random.default_rng(3)
    write_h5(tmp_path / "exams.hdf5", encoded(np.arange(n)))  # key = row number; no exam_id
    exam_ids = rng.choice(np.arange(1, 9000), n, replace=False)
    labels = pd.DataFrame({"exam_id": exam_ids, "age": np.arange(n) + 30.0,
                           "death": np.arange(n) % 2 == 0})
    labels.to_csv(tmp_path / "exams.csv", index=False)
    source = HDF5Source(name="samitrop", tracing_files=str(tmp_path / "exams.hdf5"),
                        labels_csv=str(tmp_path / "exams.csv"), exam_id_dataset=None,
                        id_column="exam_id", join="row_order", drop_padding_rows=False,
                        split=partial(random_split, val_fraction=0.25, test_fraction=0.0,
                                      seed=0, group_column=None), **UNCHECKED)
    table, _ = source.load(["age", "death"])
    np.testing.assert_array_equal(table.exam_id, exam_ids)
    np.testing.assert_array_equal(table.row, np.arange(n))

    dm = ExamDataModule(source, ["age", "death"], leads=CANONICAL)
    dm.setup("fit")
    row_of = {int(e): r for r, e in enumerate(exam_ids)}
    items = [it for ds in dm.datasets.values() for it in all_items(ds)]
    assert sorted(int(it["exam_id"]) for it in items) == sorted(exam_ids.tolist())
    for item in items:
        r = row_of[int(item["exam_id"])]
        np.testing.assert_array_equal(lead_values(item), 1000 * r + np.arange(12))
        np.testing.assert_array_equal(item["target"].numpy(), [30.0 + r, float(r % 2 == 0)])


def test_code_test_row_order_without_ids(tmp_path):
    n = 9
    write_h5(tmp_path / "ecg_tracings.hdf5", encoded(np.arange(n)))
    classes = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
    annotations = pd.DataFrame((np.arange(n)[:, None] + np.arange(6)) % 2, columns=classes)
    (tmp_path / "annotations").mkdir()
    annotations.to_csv(tmp_path / "annotations" / "gold_standard.csv", index=False)
    source = HDF5Source(name="code_test", tracing_files=str(tmp_path / "ecg_tracings.hdf5"),
                        labels_csv=str(tmp_path / "annotations" / "gold_standard.csv"),
                        exam_id_dataset=None, id_column=None, join="row_order",
                        drop_padding_rows=False, split=partial(single_split, name="test"))
    table, reader = source.load(classes)
    np.testing.assert_array_equal(table.exam_id, np.arange(n))
    assert (table.split == "test").all()
    dataset = ExamDataset(table, reader, classes, lead_index=range(12))
    for r, item in enumerate(all_items(dataset)):
        assert int(item["exam_id"]) == r
        np.testing.assert_array_equal(lead_values(item), 1000 * r + np.arange(12))
        np.testing.assert_array_equal(item["target"].numpy(),
                                      annotations.iloc[r].to_numpy(np.float32))


# stored order -> position of each canonical lead in it (written out by hand)
STORED_LEADS = ["V1", "V2", "V3", "V4", "V5", "V6", "I", "II", "III", "aVL", "aVF", "aVR"]
CANONICAL_POSITIONS = [6, 7, 8, 11, 9, 10, 0, 1, 2, 3, 4, 5]


def test_generic_names_rename_lead_order_and_scale(tmp_path):
    ids = np.arange(501, 516)
    write_h5(tmp_path / "pair.h5", encoded(ids), ids, tracings_name="signal", id_name="id_exam")
    labels = pd.DataFrame({"id_exam": ids[::-1], "Idade": ids[::-1] % 70 + 20.0})
    labels.to_csv(tmp_path / "pair.csv", index=False)
    source = HDF5Source(name="generic", tracing_files=str(tmp_path / "pair.h5"),
                        labels_csv=str(tmp_path / "pair.csv"), tracings_dataset="signal",
                        exam_id_dataset="id_exam", id_column="id_exam",
                        rename_columns={"Idade": "age"}, leads=STORED_LEADS, scale=2.0,
                        split=partial(random_split, val_fraction=0.2, test_fraction=0.2,
                                      seed=0, group_column=None), **UNCHECKED)
    dm = ExamDataModule(source, ["age"], leads=CANONICAL)
    dm.setup("fit")
    items = [it for ds in dm.datasets.values() for it in all_items(ds)]
    assert sorted(int(it["exam_id"]) for it in items) == ids.tolist()
    for item in items:
        k = int(item["exam_id"])
        assert item["tracing"].shape == (12, N_SAMPLES)
        np.testing.assert_array_equal(lead_values(item),
                                      2.0 * (1000 * k + np.array(CANONICAL_POSITIONS)))
        assert float(item["target"]) == k % 70 + 20.0


def test_lead_subset_and_missing_lead(tmp_path):
    ids = np.arange(1, 11)
    stored = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]  # electrolyte layout, 8 leads
    write_generic(tmp_path, ids, tracings=encoded(ids, n_leads=8))
    source = generic_source(tmp_path, leads=stored)
    dm = ExamDataModule(source, ["y"], leads=["V6", "DI", "DII"])
    dm.setup("fit")
    for item in all_items(dm.datasets["train"]):
        k = int(item["exam_id"])
        np.testing.assert_array_equal(lead_values(item), 1000 * k + np.array([7, 0, 1]))
    with pytest.raises(ValueError, match=r"preprocessing\.leads.*AVR"):
        ExamDataModule(generic_source(tmp_path, leads=stored), ["y"], leads=CANONICAL)
    with pytest.raises(ValueError, match=r"preprocessing\.leads.*'V7'"):
        ExamDataModule(generic_source(tmp_path), ["y"], leads=["DI", "V7"])


# --------------------------------------------------------------------------------------------
# 2. splits


def patient_table(n_patients=300, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, n_patients)
    patients = np.repeat(np.arange(1000, 1000 + n_patients), counts)
    return pd.DataFrame({"exam_id": np.arange(len(patients)) + 1,
                         "patient_id": rng.permutation(patients)})


def test_random_split_by_patient():
    table = patient_table()
    split = random_split(table, val_fraction=0.2, test_fraction=0.1, seed=7)
    assert set(split) == {"train", "val", "test"}
    per_patient = split.groupby(table.patient_id).nunique()
    assert (per_patient == 1).all()  # no patient in two splits
    patient_split = split.groupby(table.patient_id).first()
    fractions = patient_split.value_counts(normalize=True)
    assert fractions["test"] == pytest.approx(0.1, abs=1 / 300)
    assert fractions["val"] == pytest.approx(0.2, abs=1 / 300)
    pd.testing.assert_series_equal(split, random_split(table, 0.2, 0.1, seed=7))
    assert not split.equals(random_split(table, 0.2, 0.1, seed=8))


def test_random_split_without_groups_and_bad_arguments():
    table = pd.DataFrame({"exam_id": np.arange(200)})
    split = random_split(table, 0.1, 0.1, seed=0, group_column=None)
    assert split.value_counts().to_dict() == {"train": 160, "val": 20, "test": 20}
    with pytest.raises(KeyError, match=r"dataset\.split\.group_column.*patient_id"):
        random_split(table, 0.1, 0.1, seed=0)
    with pytest.raises(ValueError, match=r"dataset\.split"):
        random_split(table, 0.6, 0.4, seed=0, group_column=None)


@pytest.mark.parametrize("seed", range(5))
def test_stratified_random_split_shares_out_every_label_combination(seed):
    """300 patients, 1-4 exams each; two labels (a patient positive when one of their exams
    is): each combination's patients, counted here, go to val and test in the fractions asked
    (give or take one patient), and no patient is in two splits."""
    table = patient_table(seed=seed)
    rng = np.random.default_rng(seed)
    table["AF"] = (rng.random(len(table)) < 0.05).astype(int)
    table["RBBB"] = (rng.random(len(table)) < 0.15).astype(float)
    table.loc[3, "RBBB"] = np.nan  # a missing label counts as negative
    split = random_split(table, 0.2, 0.1, seed=seed, stratify=["AF", "RBBB"])
    assert (split.groupby(table.patient_id).nunique() == 1).all()
    patients = pd.DataFrame({"split": split.groupby(table.patient_id).first(),
                             "AF": table.groupby("patient_id").AF.max() > 0,
                             "RBBB": table.groupby("patient_id").RBBB.max() > 0})
    for _, members in patients.groupby(["AF", "RBBB"]):
        counts = members.split.value_counts()
        for name, fraction in (("val", 0.2), ("test", 0.1)):
            assert abs(counts.get(name, 0) - fraction * len(members)) <= 1, (name, counts)
    overall = patients.split.value_counts()
    assert (overall["val"], overall["test"]) == (60, 30)  # round(fraction x 300 patients)
    pd.testing.assert_series_equal(split, random_split(table, 0.2, 0.1, seed, "patient_id",
                                                       ["AF", "RBBB"]))
    assert not split.equals(random_split(table, 0.2, 0.1, seed + 1, stratify=["AF", "RBBB"]))


def test_stratify_names_its_key():
    table = patient_table()
    with pytest.raises(KeyError, match=r"dataset\.split\.stratify: columns \['AF'\] not in"):
        random_split(table, 0.1, 0.1, seed=0, stratify=["AF"])
    with pytest.raises(ValueError, match=r"dataset\.split\.stratify: true stands for the task"):
        random_split(table, 0.1, 0.1, seed=0, stratify=True)
    assert random_split(table, 0.1, 0.1, 0, stratify=False).equals(
        random_split(table, 0.1, 0.1, 0))


@pytest.mark.parametrize("n", [1, 2, 49, 50, 51, 99, 100, 101, 1234, 10007])
def test_last_fraction_split_published_rule(n):
    split = last_fraction_split(pd.DataFrame(index=range(n)), val_fraction=0.02)
    first_val = math.ceil(0.98 * n)  # automatic-ecg-diagnosis: train = rows [0, ceil(0.98 n))
    assert (split.iloc[:first_val] == "train").all()
    assert (split.iloc[first_val:] == "val").all()
    assert "test" not in set(split)


def test_last_fraction_split_with_test():
    split = last_fraction_split(pd.DataFrame(index=range(100)), val_fraction=0.1,
                                test_fraction=0.05)
    assert split.tolist() == ["train"] * 85 + ["val"] * 10 + ["test"] * 5


def test_first_n_split():
    table = pd.DataFrame({"exam_id": np.arange(30)})
    split = first_n_split(table, n_val=7)
    assert split.tolist() == ["val"] * 7 + ["train"] * 23  # exactly n, not n + 1
    split = first_n_split(table, n_val=5, n_test=3)
    assert split.tolist() == ["val"] * 5 + ["test"] * 3 + ["train"] * 22
    with pytest.raises(ValueError, match=r"dataset\.split"):
        first_n_split(table, n_val=30)


def test_column_split_maps_and_load_drops_others(tmp_path):
    folds = ["training", "validation", "holdout", "unused", None] * 4
    ids = np.arange(1, 21)
    write_generic(tmp_path, ids, extra_columns={"fold": folds})
    labels = pd.read_csv(tmp_path / "labels.csv")
    rule = partial(column_split, column="fold", train="training", val="validation",
                   test="holdout")
    mapped = rule(labels)
    expected = {"training": "train", "validation": "val", "holdout": "test"}
    for fold, name in zip(labels.fold, mapped):
        if fold in expected:
            assert name == expected[fold]
        else:
            assert pd.isna(name)

    table, _ = generic_source(tmp_path, split=rule).load(["y"])
    kept = {int(i): expected[f] for i, f in zip(ids, folds) if f in expected}
    assert dict(zip(table.exam_id.tolist(), table.split)) == kept
    with pytest.raises(KeyError, match=r"dataset\.split\.column.*'split'"):
        column_split(labels)


def test_training_loader_shuffles_reproducibly(tmp_path):
    ids = np.arange(1, 41)
    write_generic(tmp_path, ids)

    def module(seed):
        dm = ExamDataModule(generic_source(tmp_path, split=partial(first_n_split, n_val=5)),
                            ["y"], leads=CANONICAL, batch_size=4, seed=seed)
        dm.setup("fit")
        return dm

    dm = module(seed=3)
    file_order = ids[5:].tolist()
    loader = dm.train_dataloader()
    epoch1 = loader_exam_ids(loader)
    loader.sampler.set_epoch(1)  # as Lightning does before each epoch
    epoch2 = loader_exam_ids(loader)
    assert sorted(epoch1) == sorted(epoch2) == file_order
    assert epoch1 != file_order and epoch2 != file_order and epoch1 != epoch2
    loader.sampler.set_epoch(0)  # an epoch's order depends only on seed and epoch (resume)
    assert loader_exam_ids(loader) == epoch1
    assert loader_exam_ids(module(seed=3).train_dataloader()) == epoch1
    assert loader_exam_ids(module(seed=4).train_dataloader()) != epoch1
    assert loader_exam_ids(dm.val_dataloader()) == ids[:5].tolist()  # val stays in order


# --------------------------------------------------------------------------------------------
# 3. bad inputs


def test_labelled_exams_missing_from_tracings(tmp_path):
    tracing_ids = np.arange(1, 18)
    label_ids = np.arange(1, 21)  # 18, 19, 20 have no tracing
    write_generic(tmp_path, tracing_ids, label_ids=label_ids)
    with pytest.raises(ValueError, match=r"3 of 20 exam_ids.*dataset\.missing_exams=drop"):
        generic_source(tmp_path).load(["y"])
    table, _ = generic_source(tmp_path, missing_exams="drop").load(["y"])
    assert table.exam_id.tolist() == tracing_ids.tolist()
    np.testing.assert_array_equal(table.y, tracing_ids * 0.5)
    with pytest.raises(ValueError, match=r"dataset\.missing_exams.*'ignore'"):
        generic_source(tmp_path, missing_exams="ignore").load(["y"])


def test_invalid_policy_values(tmp_path):
    write_generic(tmp_path, np.arange(1, 11))
    with pytest.raises(ValueError, match=r"dataset\.nan_policy.*'ignore'"):
        generic_source(tmp_path, nan_policy="ignore")
    with pytest.raises(ValueError, match=r"dataset\.join.*'by_row'"):
        generic_source(tmp_path, join="by_row").load(["y"])
    with pytest.raises(ValueError, match=r"dataset\.id_column"):
        generic_source(tmp_path, id_column=None, join="exam_id")


def test_unlabelled_rows_left_out(tmp_path):
    ids = np.arange(1, 13)
    write_generic(tmp_path, ids)
    labels = pd.read_csv(tmp_path / "labels.csv")
    labels.loc[[2, 6, 7], "y"] = np.nan
    labels["AF"] = ["True", "False", "True", ""] * 3  # boolean column with a gap
    labels.to_csv(tmp_path / "labels.csv", index=False)
    table, _ = generic_source(tmp_path).load(["y"])
    assert table.exam_id.tolist() == [i for i in ids.tolist() if i not in (3, 7, 8)]
    table, reader = generic_source(tmp_path).load(["y", "AF"])
    assert table.exam_id.tolist() == [1, 2, 5, 6, 9, 10, 11]  # y gaps 3, 7, 8; AF gaps 4, 8, 12
    dataset = ExamDataset(table, reader, ["y", "AF"], lead_index=range(12))
    targets = np.stack([it["target"].numpy() for it in all_items(dataset)])
    np.testing.assert_array_equal(targets, [[0.5, 1], [1.0, 0], [2.5, 1], [3.0, 0], [4.5, 1],
                                            [5.0, 0], [5.5, 1]])


def write_with_bad_exams(tmp_path):
    """12 exams; val = the first 4 (ids 1-4), ids 3 and 4 (one val batch of 2) are bad, and
    train ids 8 (one NaN sample) and 10 (Inf) are bad."""
    ids = np.arange(1, 13)
    tracings = encoded(ids)
    tracings[2, :, 0] = np.nan
    tracings[3, 10, 5] = np.inf
    tracings[7, 100, 3] = np.nan
    tracings[9, :, :] = -np.inf
    write_generic(tmp_path, ids, tracings=tracings)
    return ids


def test_nan_policy_error(tmp_path):
    write_with_bad_exams(tmp_path)
    dm = ExamDataModule(generic_source(tmp_path, nan_policy="error"), ["y"], leads=CANONICAL,
                        batch_size=2)
    path = re.escape(str(tmp_path / "tracings.hdf5"))
    with pytest.raises(ValueError, match=rf"dataset\.tracing_files: 4 of 12 exams .*"
                                         rf"exam_id 3 \(row 2, NaN/Inf samples\).*{path}.*"
                                         rf"dataset\.nan_policy=skip"):
        dm.setup("fit")  # the set-up scan reads every exam before training
    # a dataset built without the scan still refuses a bad exam when it reads it
    table, reader = generic_source(tmp_path, nan_policy="error").load(["y"])
    dataset = ExamDataset(table, reader, ["y"], lead_index=range(12))
    np.testing.assert_array_equal(lead_values(dataset[0]), 1000 + np.arange(12))
    with pytest.raises(ValueError, match=r"exam_id 3 .*NaN/Inf.*dataset\.nan_policy=skip"):
        dataset[2]


def test_nan_policy_skip(tmp_path):
    ids = write_with_bad_exams(tmp_path)
    dm = ExamDataModule(generic_source(tmp_path, nan_policy="skip"), ["y"], leads=CANONICAL,
                        batch_size=2)
    dm.setup("fit")  # the bad exams are left out of the table here, before any batch
    assert sorted(dm.table.exam_id) == sorted(set(ids.tolist()) - {3, 4, 8, 10})
    val_batches = list(dm.val_dataloader())
    assert [b["exam_id"].tolist() for b in val_batches] == [[1, 2]]
    train_ids = loader_exam_ids(dm.train_dataloader())
    assert sorted(train_ids) == [5, 6, 7, 9, 11, 12]
    assert collate_exams([None, None]) is None
    # without the scan, the dataset leaves them out of their batches as it reads them
    table, reader = generic_source(tmp_path, nan_policy="skip").load(["y"])
    dataset = ExamDataset(table, reader, ["y"], lead_index=range(12), nan_policy="skip")
    assert dataset.__getitems__([2, 3]) is None
    assert dataset.__getitems__([1, 2, 4])["exam_id"].tolist() == [2, 5]


# --------------------------------------------------------------------------------------------
# 4. per-worker handles


def test_workers_read_every_exam_once(tmp_path):
    ids = np.arange(1, 31)
    write_generic(tmp_path, ids)
    dm = ExamDataModule(generic_source(tmp_path, leads=STORED_LEADS, scale=0.5), ["y"],
                        leads=CANONICAL)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    first = dataset[0]  # the parent process opens its handles before the workers fork
    assert dataset.reader._handles
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_exams)
    seen = []
    for batch in loader:
        for exam_id, tracing, target in zip(batch["exam_id"], batch["tracing"], batch["target"]):
            k = int(exam_id)
            seen.append(k)
            np.testing.assert_array_equal(tracing[:, 0].numpy(),
                                          0.5 * (1000 * k + np.array(CANONICAL_POSITIONS)))
            assert torch.equal(tracing, tracing[:, :1].expand_as(tracing))
            assert float(target) == 0.5 * k
    assert sorted(seen) == ids[4:].tolist()
    assert torch.equal(dataset[0]["tracing"], first["tracing"])  # parent handles still fine


def test_pickle_dataset_with_open_handles(tmp_path):
    write_generic(tmp_path, np.arange(1, 11))
    table, reader = generic_source(tmp_path).load(["y"])
    dataset = ExamDataset(table, reader, ["y"], lead_index=range(12))
    before = dataset[3]
    assert reader._handles  # a handle is open
    clone = pickle.loads(pickle.dumps(dataset))
    after = clone[3]
    assert int(after["exam_id"]) == int(before["exam_id"]) == 4
    assert torch.equal(after["tracing"], before["tracing"])
    assert torch.equal(dataset[5]["tracing"], clone[5]["tracing"])
    reader.close()
    clone.reader.close()


def test_item_target_is_writable(tmp_path):
    write_generic(tmp_path, np.arange(1, 11))
    table, reader = generic_source(tmp_path).load(["y"])
    dataset = ExamDataset(table, reader, ["y"], lead_index=range(12))
    assert dataset.targets.flags.writeable


def test_targets_outside_their_plausible_range_are_left_out_and_named(tmp_path, caplog):
    """Ages -5 and 250 (as CinC headers hold them) are left out with a warning that names them
    and the key; survival times below 0 likewise."""
    from ecgexp.tasks.regression import Regression
    from ecgexp.tasks.survival import CoxSurvival

    ids = np.arange(1, 21)
    ages = [40.0] * 20
    ages[3], ages[11] = -5.0, 250.0
    write_generic(tmp_path, ids, extra_columns={"age": ages, "timey": [1.0] * 19 + [-0.5],
                                                "death": [0] * 20})
    objective = Regression("age", valid_range=[0, 120])
    module = ExamDataModule(generic_source(tmp_path), objective.target_columns,
                            ["DI"], valid_ranges=objective.valid_ranges)
    with caplog.at_level("WARNING"):
        module.setup()
    assert sorted(module.table.exam_id) == [i for i in ids if i not in (4, 12)]
    assert ("generic: 2 exams with age outside [0, 120] left out (exam_id 4: -5, exam_id 12: "
            "250); set task.objective.valid_range to change the range") in caplog.text
    survival = CoxSurvival("timey", "death")
    module = ExamDataModule(generic_source(tmp_path), survival.target_columns, ["DI"],
                            binary_columns=survival.binary_columns,
                            valid_ranges=survival.valid_ranges)
    module.setup()
    assert 20 not in set(module.table.exam_id) and len(module.table) == 19
    with pytest.raises(UserError, match=r"^task.objective.valid_range: \[low, high\] with low "):
        Regression("age", valid_range=[10, 5])


def test_a_split_without_positives_is_named_at_start_up(tmp_path, caplog):
    """A label whose positives are all in training (first_n_split: rows 1-4 validate): the
    validation split is named."""
    ids = np.arange(1, 21)
    y2 = [0] * 4 + [1] * 3 + [0] * 13
    write_generic(tmp_path, ids, extra_columns={"y2": y2})
    module = ExamDataModule(generic_source(tmp_path), ["y2"], ["DI"], binary_columns=["y2"])
    with caplog.at_level("WARNING"):
        module.setup()
    assert ("generic: no positive 'y2' exam in the val (0 of 4) split; its metrics there are "
            "undefined") in caplog.text
