"""Chagas two-source training on the real layouts: SaMi-Trop (row-order HDF5, all positive)
plus CODE-15% parts with the Chagas labels in a separate CSV (``dataset=chagas_sources``)."""

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers.configs import QUARTER_LENGTHS
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from ecgexp.data.build import build_datamodule
from ecgexp.data.synthetic import write_code15

SAMITROP_ID_OFFSET = 10**9  # keeps the two sources' exam ids apart


@pytest.fixture
def chagas_layout(tmp_path):
    """``data/samitrop/{exams.hdf5,exams.csv}`` and ``data/code15/{exams_part*.hdf5,
    exams.csv, code15_chagas_labels.csv}`` built from synthetic exams."""
    data = tmp_path / "data"
    code15 = write_code15(data / "code15", n_exams=300, n_parts=2, seed=1)
    exams = pd.read_csv(code15 / "exams.csv")
    labels = exams[["exam_id", "chagas"]].iloc[:-20]  # the last 20 exams have no Chagas label
    labels.to_csv(code15 / "code15_chagas_labels.csv", index=False)
    exams.drop(columns="chagas").to_csv(code15 / "exams.csv", index=False)

    raw = write_code15(tmp_path / "samitrop_raw", n_exams=120, n_parts=1, seed=2)
    with h5py.File(raw / "exams_part0.hdf5", "r") as part:
        keep = part["exam_id"][:] != 0
        tracings, ids = part["tracings"][:][keep], part["exam_id"][:][keep]
    (data / "samitrop").mkdir()
    with h5py.File(data / "samitrop" / "exams.hdf5", "w") as handle:
        handle.create_dataset("tracings", data=tracings)
    samitrop = pd.read_csv(raw / "exams.csv").set_index("exam_id").loc[ids].reset_index()
    samitrop["exam_id"] += SAMITROP_ID_OFFSET
    samitrop.drop(columns="chagas").to_csv(data / "samitrop" / "exams.csv", index=False)
    return data, labels, tracings


OVERRIDES = ["task=chagas", "dataset=chagas_sources", "task.sampler.source_column=source",
             "task.sampler.source_a=samitrop", "model=resnet1d_small", QUARTER_LENGTHS,
             "loader.num_workers=0",
             "dataset.sources.samitrop.split.val_fraction=0.2",
             "dataset.sources.code15.split.val_fraction=0.2"]


def test_sources_are_joined_with_their_labels(compose_train, chagas_layout):
    _, labels, samitrop_tracings = chagas_layout
    datamodule = build_datamodule(compose_train(*OVERRIDES))
    datamodule.setup()
    table = datamodule.table
    assert set(table.source) == {"samitrop", "code15"}
    samitrop = table[table.source == "samitrop"]
    assert len(samitrop) == 120 and (samitrop.chagas == 1).all()
    code15 = table[table.source == "code15"].set_index("exam_id")
    assert len(code15) == 280  # the 20 exams without a Chagas label are left out
    expected = labels.set_index("exam_id").loc[code15.index, "chagas"]
    np.testing.assert_array_equal(code15.chagas.to_numpy(), expected.to_numpy())

    split, dataset = next((s, d) for s, d in datamodule.datasets.items()
                          if (d.exam_ids >= SAMITROP_ID_OFFSET).any())
    item = int(np.flatnonzero(dataset.exam_ids >= SAMITROP_ID_OFFSET)[0])
    row = int(table.loc[table.exam_id == dataset.exam_ids[item], "row"].iloc[0])
    np.testing.assert_array_equal(dataset[item]["tracing"].numpy(), samitrop_tracings[row].T)


def test_every_training_batch_mixes_the_sources_half_and_half(compose_train, chagas_layout):
    datamodule = build_datamodule(compose_train(*OVERRIDES, "loader.batch_size=16"))
    datamodule.setup()
    batches = list(datamodule.train_dataloader())
    n_samitrop_train = int(((datamodule.table.split == "train")
                            & (datamodule.table.source == "samitrop")).sum())
    assert len(batches) == -(-n_samitrop_train // 8)  # an epoch is one pass over SaMi-Trop
    for batch in batches[:-1]:
        from_samitrop = (batch["exam_id"] >= SAMITROP_ID_OFFSET).sum().item()
        assert (from_samitrop, len(batch["exam_id"]) - from_samitrop) == (8, 8)
    assert (batches[-1]["exam_id"] < SAMITROP_ID_OFFSET).sum().item() == 8


def test_sources_with_different_leads_are_refused(compose_train, chagas_layout):
    cfg = compose_train(*OVERRIDES, "dataset.sources.samitrop.leads=[DI,DII]")
    with pytest.raises(InstantiationException, match=r"dataset\.sources\.code15\.leads.*differs"):
        instantiate(cfg.dataset)
