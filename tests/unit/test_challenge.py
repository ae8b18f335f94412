"""The PhysioNet Challenge 2025 team-code interface (``ecgexp.challenge``) on real CODE-15%
records in the Challenge layout, called as the official ``train_model.py`` and
``run_model.py`` call it; and patient-grouped splits of Challenge-format folders."""

import logging
import os
import shutil

import numpy as np
import pytest
import torch
import wfdb
from helpers.commands import run_in_process
from helpers.configs import QUARTER_LENGTHS, compose_in
from helpers.records import FIXTURES, header_fields
from omegaconf import OmegaConf

from ecgexp.challenge import OVERRIDES_ENV, load_model, run_model, train_model
from ecgexp.data.build import build_datamodule
from ecgexp.errors import UserError
from ecgexp.signal.pipeline import SignalPipeline

RECORDS = FIXTURES / "code15_wfdb"
TINY = (f"model=resnet1d_small {QUARTER_LENGTHS} trainer.max_epochs=1 "
        "+trainer.limit_train_batches=2 loader.num_workers=0 loader.batch_size=8 "
        "callbacks.progress_bar=null logger=none "
        "dataset.split.val_fraction=0.3 dataset.split.test_fraction=0.2")
N_RECORDS = 40


def _chosen_records() -> list[str]:
    """40 records: every positive, every exam of a patient with several, then the first
    others by name."""
    fields = {p.stem: header_fields(p) for p in sorted(RECORDS.glob("*.hea"))}
    patients = [f["Patient ID"] for f in fields.values()]
    repeated = {p for p in patients if patients.count(p) > 1}
    first = [n for n, f in fields.items()
             if f["Chagas label"] == "True" or f["Patient ID"] in repeated]
    rest = [n for n in fields if n not in first]
    return sorted(first + rest[:N_RECORDS - len(first)])


def _copy_records(names, folder, keep_patient_ids=True):
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(RECORDS / f"{name}.dat", folder)
        header = (RECORDS / f"{name}.hea").read_text()
        if not keep_patient_ids:
            header = "".join(line for line in header.splitlines(keepends=True)
                             if not line.startswith("# Patient ID:"))
        (folder / f"{name}.hea").write_text(header)
    return folder


@pytest.fixture(scope="module")
def challenge(tmp_path_factory):
    """(data folder, model folder) of one tiny model trained as ``train_model.py`` does:
    the model folder created first, then ``train_model(data, model, verbose)``."""
    root = tmp_path_factory.mktemp("challenge")
    names = _chosen_records()
    data_folder = _copy_records(names, root / "data_folder")
    model_folder = root / "model"
    os.makedirs(model_folder, exist_ok=True)  # as the official train_model.py
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(OVERRIDES_ENV, TINY)
        train_model(str(data_folder), str(model_folder), verbose=False)
    return data_folder, model_folder


def test_chosen_records_hold_positives_and_repeated_patients():
    names = _chosen_records()
    fields = [header_fields(RECORDS / f"{n}.hea") for n in names]
    patients = [f["Patient ID"] for f in fields]
    assert len(names) == N_RECORDS
    assert sum(f["Chagas label"] == "True" for f in fields) == 9
    assert len({p for p in patients if patients.count(p) > 1}) == 4


def test_run_model_as_the_official_script(challenge, capsys):
    """Every record scored as ``run_model.py`` scores it: a probability in [0, 1], the binary
    output at the checkpoint card's validation threshold, the same twice, equal to the
    training run's own test predictions and to the model on a tracing made here (wfdb, the
    run's ``preprocessing`` steps)."""
    data_folder, model_folder = challenge
    card = torch.load(model_folder / "checkpoints" / "best.ckpt", weights_only=True)["ecgexp"]
    threshold = card["thresholds"]["chagas"]
    model = load_model(str(model_folder), False)
    names = sorted(p.stem for p in data_folder.glob("*.hea"))
    results = {}
    for name in names:
        binary, probability = run_model(os.path.join(data_folder, name), model, False)
        assert isinstance(binary, bool) and isinstance(probability, float)
        assert 0 <= probability <= 1
        assert binary == (probability >= threshold)
        results[int(name)] = probability
    assert run_model(str(data_folder / names[0]), model, False)[1] == results[int(names[0])]
    assert capsys.readouterr().out == ""  # verbose=False: nothing printed

    # the training run's test predictions (its data loader, Lightning's predict, best.ckpt)
    import pandas as pd

    test = pd.read_csv(model_folder / "predictions_test.csv")
    assert len(test) > 0
    np.testing.assert_allclose([results[i] for i in test.exam_id], test.score_chagas, atol=1e-5)

    # a tracing built here: wfdb's physical signal, the run config's preprocessing steps
    config = OmegaConf.load(model_folder / "config.yaml")
    steps = {k: v for k, v in OmegaConf.to_container(config.preprocessing).items()
             if k != "_target_"}
    pipeline = SignalPipeline(**steps)
    for name in names[:3]:
        record = wfdb.rdrecord(str(data_folder / name))
        assert record.units == ["mV"] * 12
        tracing = pipeline(record.p_signal, record.fs, record.sig_name)
        assert tracing.shape == (4096, 12)
        expected = model.predict(tracing.T[None].astype(np.float32)).score_chagas.iloc[0]
        assert results[int(name)] == pytest.approx(float(expected), abs=1e-5)


def test_a_final_entry_trains_on_every_record(tmp_path, monkeypatch):
    """``split=all`` (the README's final entry): all 40 records train, none validates or
    tests; the model folder holds their in-sample predictions, and ``run_model`` cuts at the
    card's threshold, one that maximises F1 on those predictions (computed here)."""
    import pandas as pd

    names = _chosen_records()
    data_folder = _copy_records(names, tmp_path / "data_folder")
    model_folder = tmp_path / "model"
    tiny = " ".join(o for o in TINY.split() if not o.startswith("dataset.split."))
    monkeypatch.setenv(OVERRIDES_ENV, f"{tiny} split=all")
    train_model(str(data_folder), str(model_folder), verbose=False)
    assert not list(model_folder.glob("predictions_va*")) + list(model_folder.glob("*_test*"))
    fitted = pd.read_csv(model_folder / "predictions_train.csv")
    assert sorted(fitted.exam_id) == sorted(int(name) for name in names)  # every record
    model = load_model(str(model_folder), False)
    threshold = model.thresholds["chagas"]

    scores = fitted.score_chagas.to_numpy(np.float32)  # the CSV's float32 values, exactly

    def f1(at: float) -> float:
        flagged, positive = scores >= np.float32(at), fitted.target_chagas.to_numpy() == 1
        hits = (flagged & positive).sum()
        return 2 * hits / (flagged.sum() + positive.sum())

    assert f1(threshold) == pytest.approx(max(f1(s) for s in scores))
    for name in names[:2]:
        binary, probability = run_model(str(data_folder / name), model, False)
        assert binary == (probability >= threshold)
    evaluated = run_in_process("ecgexp-evaluate", tmp_path, f"run={model_folder}")
    assert evaluated.returncode != 0 and "trained on every exam (split=all)" in evaluated.stderr


def test_a_record_without_an_ecg_is_never_answered_positive(challenge, tmp_path, capsys):
    """A real record of the set, its samples replaced by zeros (its header kept): (False, 0.0)
    and, with verbose, the reason."""
    data_folder, model_folder = challenge
    name = sorted(p.stem for p in data_folder.glob("*.hea"))[0]
    record = wfdb.rdrecord(str(data_folder / name))
    wfdb.wrsamp("zero", fs=record.fs, units=record.units, sig_name=record.sig_name,
                p_signal=np.zeros_like(record.p_signal), fmt=record.fmt,
                adc_gain=record.adc_gain, baseline=record.baseline, write_dir=str(tmp_path))
    model = load_model(str(model_folder), False)
    assert run_model(str(tmp_path / "zero"), model, True) == (False, 0.0)
    assert "no ECG: all-zero tracing; answered (False, 0.0)" in capsys.readouterr().out


def test_model_folder_must_be_new_or_empty(challenge, tmp_path, monkeypatch):
    """Nothing is written into a folder holding other files or another run."""
    data_folder, model_folder = challenge
    monkeypatch.setenv(OVERRIDES_ENV, TINY)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        train_model(str(data_folder), str(busy), verbose=False)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    with pytest.raises(UserError, match="already holds an ecgexp run"):
        train_model(str(data_folder), str(model_folder), verbose=False)


def _datamodule(root, data_folder):
    cfg = compose_in(root, "task=chagas", "dataset=wfdb_folder", f"dataset.path={data_folder}",
                     "dataset.ids=name")
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    return datamodule


def test_split_keeps_each_patient_in_one_split(challenge, tmp_path, caplog):
    data_folder, _ = challenge
    caplog.set_level(logging.INFO, logger="ecgexp.data.record_source")
    table = _datamodule(tmp_path, data_folder).table
    assert len(table) == N_RECORDS
    patient = {int(p.stem): header_fields(p)["Patient ID"] for p in data_folder.glob("*.hea")}
    splits = table.assign(patient=table.exam_id.map(patient)).groupby("patient").split.nunique()
    assert (splits == 1).all()
    assert (table.exam_id.map(patient).value_counts() > 1).sum() == 4
    assert "split by patient" in caplog.text


@pytest.mark.parametrize("split_seed", [0, 1, 2])
def test_chagas_positives_are_shared_out_between_the_splits(tmp_path, split_seed):
    """All 153 real CODE-15% records (9 Chagas-positive patients, read here from the headers)
    split 70/10/20 by patient: each split gets its share of the positives, give or take one
    patient (the unstratified draw gave the test split none of them)."""
    cfg = compose_in(tmp_path, "task=chagas", "dataset=wfdb_folder", f"dataset.path={RECORDS}",
                     "dataset.ids=name", f"split_seed={split_seed}",
                     "dataset.split.val_fraction=0.1", "dataset.split.test_fraction=0.2")
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    fields = {int(p.stem): header_fields(p) for p in RECORDS.glob("*.hea")}
    table = datamodule.table.assign(
        patient=lambda t: t.exam_id.map(lambda e: fields[e]["Patient ID"]),
        positive=lambda t: t.exam_id.map(lambda e: fields[e]["Chagas label"] == "True"))
    assert len(table) == len(fields) == 153
    patients = table.groupby("patient").agg(split=("split", "first"), n=("split", "nunique"),
                                            positive=("positive", "max"))
    assert (patients.n == 1).all()
    positives = patients[patients.positive].split.value_counts()
    assert positives.sum() == 9
    for name, fraction in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs(positives.get(name, 0) - fraction * 9) <= 1, positives.to_dict()


def test_split_without_patient_ids_warns(tmp_path, caplog):
    folder = _copy_records(_chosen_records(), tmp_path / "anonymous", keep_patient_ids=False)
    caplog.set_level(logging.WARNING, logger="ecgexp.data.record_source")
    table = _datamodule(tmp_path, folder).table
    assert len(table) == N_RECORDS and "patient_id" not in table.columns
    assert "exams of one patient may fall into different splits" in caplog.text
    assert "dataset.split.group_column" in caplog.text


def test_whole_predicted_folder_exported_for_the_scorer(challenge, tmp_path):
    """``ecgexp-predict`` on the whole labelled folder, then ``ecgexp-evaluate run=
    predictions= challenge_export=``: one ``<record>.txt`` per record, named as the record,
    its label at the run's validation threshold; a second export into the folder is refused
    and leaves it as it was."""
    import pandas as pd
    from helpers.configs import compose_evaluate

    from ecgexp.evaluate import evaluate
    from ecgexp.predict import predict

    data_folder, model_folder = challenge
    output = tmp_path / "holdout.csv"
    predict(compose_in(tmp_path, f"run={model_folder}", "dataset=wfdb_folder",
                       f"dataset.path={data_folder}", "dataset.ids=name", f"output={output}",
                       "num_workers=0", "progress_bar=false", config_name="predict"))
    export = tmp_path / "holdout_outputs"
    evaluate(compose_evaluate(f"run={model_folder}", f"predictions={output}",
                              f"challenge_export={export}", "bootstrap.n_resamples=100"))
    names = sorted(p.stem for p in data_folder.glob("*.hea"))
    assert sorted(p.name for p in export.iterdir()) == [f"{n}.txt" for n in names]
    threshold = torch.load(model_folder / "checkpoints" / "best.ckpt",
                           weights_only=True)["ecgexp"]["thresholds"]["chagas"]
    scores = pd.read_csv(output, dtype={"record": str}).set_index("record").score_chagas
    for name in names:
        lines = (export / f"{name}.txt").read_text().splitlines()
        probability = float(lines[2].removeprefix("# Chagas probability: "))
        assert lines[0] == name
        assert probability == pytest.approx(scores.loc[name], abs=1e-6)
        assert lines[1] == f"# Chagas label: {scores.loc[name] >= threshold}"
    test = pd.read_csv(model_folder / "predictions_test.csv")  # the training run's own
    exported = {int(n): float((export / f"{n}.txt").read_text().splitlines()[2].split(": ")[1])
                for n in names}
    np.testing.assert_allclose([exported[i] for i in test.exam_id], test.score_chagas,
                               atol=1e-5)

    before = {p.name: p.read_bytes() for p in export.iterdir()}
    with pytest.raises(UserError, match="challenge_export: .* is not empty"):
        evaluate(compose_evaluate(f"run={model_folder}", f"predictions={output}",
                                  f"challenge_export={export}", f"output_dir={tmp_path / 'r2'}"))
    assert {p.name: p.read_bytes() for p in export.iterdir()} == before
