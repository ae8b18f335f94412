"""Real public records in without hand-made tables: converted files read back whole, record
names as exam ids, label CSVs joined on them. Expected values come from the files themselves
(file names, header lines parsed here), not from ecgexp."""

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers.configs import QUARTER_LENGTHS, compose_in
from helpers.records import FIXTURES, header_fields
from hydra.utils import instantiate

from ecgexp.data.convert import convert
from ecgexp.data.record_source import RecordReader
from ecgexp.errors import UserError
from ecgexp.signal.pipeline import SignalPipeline

CODE15 = FIXTURES / "code15_wfdb"
CINC = FIXTURES / "cinc2021"


def _copy(source, names, folder, suffixes):
    folder.mkdir(parents=True)
    for name in names:
        for suffix in suffixes:
            shutil.copy(source / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


def _exam_table(source) -> pd.DataFrame:
    return source.exam_table(*source.records())


def test_converted_records_read_back_whole_through_the_generic_dataset(tmp_path):
    """``ecgexp-preprocess`` numbers the first record 0; ``dataset=generic`` keeps it (it used
    to drop exam_id 0 as a CODE-15% padding row)."""
    names = sorted(p.stem for p in CODE15.glob("*.hea"))[:4]
    folder = _copy(CODE15, names, tmp_path / "records", (".hea", ".dat"))
    convert(folder, tmp_path / "out.h5", SignalPipeline(), workers=1)
    with h5py.File(tmp_path / "out.h5", "r") as handle:
        stored = handle["exam_id"][:].tolist()
    assert stored == [0, 1, 2, 3]
    cfg = compose_in(tmp_path, "dataset=generic", f"dataset.tracing_files={tmp_path / 'out.h5'}",
                     f"dataset.labels_csv={tmp_path / 'out.csv'}")
    table, _ = instantiate(cfg.dataset).load([])
    assert sorted(table.exam_id) == [0, 1, 2, 3]
    assert table.set_index("exam_id").record.to_dict() == dict(enumerate(names))


# --------------------------------------------------------------------- PhysioNet/CinC 2021
# The six CODE labels by SNOMED-CT code, as the issue lists them (written here, not read from
# ecgexp's YAML).
CODE6 = {"1dAVb": {"270492004"}, "RBBB": {"59118001", "713427006"},
         "LBBB": {"164909002", "733534002"}, "SB": {"426177001"}, "AF": {"164889003"},
         "ST": {"427084000"}}


def _cinc_expected() -> pd.DataFrame:
    rows = []
    for path in sorted(CINC.glob("*.hea")):
        fields = header_fields(path)
        codes = set(fields["Dx"].split(","))
        rows.append({"exam_id": path.stem, "age": float(fields["Age"]),
                     "is_male": {"Male": 1, "Female": 0}[fields["Sex"]],
                     **{label: int(bool(codes & positive)) for label, positive in CODE6.items()}})
    return pd.DataFrame(rows).set_index("exam_id")


def _cinc_source(root, *overrides):
    cfg = compose_in(root, "task=abnormality", "dataset=cinc2021", f"dataset.path={CINC}",
                     "labels=snomed_code6", *overrides)
    return cfg, instantiate(cfg.dataset)


def test_cinc2021_headers_give_the_six_labels_by_record_name(tmp_path, caplog):
    expected = _cinc_expected()
    assert len(expected) == 30
    assert expected[list(CODE6)].sum().to_dict() == {"1dAVb": 0, "RBBB": 2, "LBBB": 0, "SB": 5,
                                                     "AF": 0, "ST": 7}  # as the README says
    caplog.set_level("INFO", logger="ecgexp.data.label_maps")
    _, source = _cinc_source(tmp_path)
    table = source.exam_table(*source.records()).set_index("exam_id")
    assert sorted(table.index) == sorted(expected.index)  # E07500 ... HR06009: names are ids
    columns = ["age", "is_male", *CODE6]
    pd.testing.assert_frame_equal(table.loc[expected.index, columns].astype(float),
                                  expected[columns].astype(float))
    assert "426783006" in caplog.text  # sinus rhythm: a code of no label, listed

    _, scored = _cinc_source(tmp_path / "scored", "labels=cinc2021_scored")
    scored_table = _exam_table(scored).set_index("exam_id")
    dx = {p.stem: set(header_fields(p)["Dx"].split(",")) for p in CINC.glob("*.hea")}
    for label, codes in {"NSR": {"426783006"}, "STach": {"427084000"},
                         "RBBB": {"59118001", "713427006"}}.items():
        assert scored_table[label].to_dict() == {n: int(bool(c & codes)) for n, c in dx.items()}


def test_cinc2021_without_a_label_map_names_the_option(tmp_path):
    cfg = compose_in(tmp_path, "task=abnormality", "dataset=cinc2021", f"dataset.path={CINC}")
    with pytest.raises(UserError, match=r"^task.objective: columns 1dAVb, RBBB, .* labels="
                                        r"snomed_code6"):
        instantiate(cfg.dataset).load(["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"])


def test_label_csv_joins_on_record_names(tmp_path):
    """``ids=name`` on non-integer names with a label CSV keyed by those names; a CSV of
    names joined to integer ids is refused in one line (it was a raw pandas merge error)."""
    names = sorted(p.stem for p in CINC.glob("*.hea"))[:6]
    folder = _copy(CINC, names, tmp_path / "records", (".hea", ".mat"))
    labels = pd.DataFrame({"record_id": names, "score": np.arange(6.0)})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    cfg = compose_in(tmp_path, "dataset=wfdb_folder", f"dataset.path={folder}", "dataset.ids=name",
                     f"dataset.labels_csv={tmp_path / 'labels.csv'}", "dataset.id_column=record_id")
    table = _exam_table(instantiate(cfg.dataset))
    assert table.set_index("exam_id").score.to_dict() == dict(zip(names, np.arange(6.0)))

    numbered = _copy(CODE15, sorted(p.stem for p in CODE15.glob("*.hea"))[:2],
                     tmp_path / "numbered", (".hea", ".dat"))
    cfg.dataset.path = str(numbered)
    with pytest.raises(UserError, match=r"^dataset.labels_csv: row 2 of .* has record_id "
                                        rf"'{names[0]}', but the records' exam ids are integers"):
        _exam_table(instantiate(cfg.dataset))


def test_tiny_abnormality_training_on_cinc2021_records(tmp_path):
    """End to end through the six-label map: the run's predictions name the records."""
    from ecgexp.train import train

    cfg, _ = _cinc_source(tmp_path, "model=resnet1d_small", QUARTER_LENGTHS, "trainer.max_epochs=1",
                          "+trainer.limit_train_batches=2", "loader.num_workers=0",
                          "loader.batch_size=8", "callbacks.progress_bar=null", "logger=none",
                          "dataset.split.val_fraction=0.3", "dataset.split.test_fraction=0.3")
    train(cfg)
    run = tmp_path / "run"
    predicted = pd.concat([pd.read_csv(run / f"predictions_{s}.csv") for s in ("val", "test")])
    expected = _cinc_expected()
    assert set(predicted.exam_id) <= set(expected.index) and len(predicted) >= 12
    truth = expected.loc[predicted.exam_id, "ST"].to_numpy()
    np.testing.assert_array_equal(predicted.target_ST.to_numpy(), truth)
    assert np.isfinite(predicted.score_ST).all()

    from ecgexp.predict import predict  # the whole folder by name, with the run's contract

    predict(compose_in(tmp_path / "p", f"run={run}", "dataset=cinc2021", f"dataset.path={CINC}",
                       "labels=snomed_code6", f"output={tmp_path / 'cinc.csv'}", "num_workers=0",
                       "progress_bar=false", config_name="predict"))
    table = pd.read_csv(tmp_path / "cinc.csv").set_index("exam_id")
    assert sorted(table.index) == sorted(expected.index)
    np.testing.assert_array_equal(table.loc[expected.index, "target_SB"], expected.SB)
    np.testing.assert_allclose(table.loc[predicted.exam_id, "score_ST"], predicted.score_ST,
                               atol=1e-5)


# ----------------------------------------------------------------------------------- PTB-XL
# A folder in PTB-XL's layout, written here (no PTB-XL records are at hand): statement ->
# likelihood per ECG, and the labels expected by hand.
PTBXL_ECGS = [  # ecg_id, patient_id, sex (0 male), strat_fold, scp_codes
    (1, 101, 0, 3, {"NORM": 100.0, "SR": 0.0}),
    (2, 102, 1, 9, {"AFIB": 0.0, "CLBBB": 100.0}),
    (3, 103, 0, 10, {"1AVB": 50.0, "SBRAD": 0.0, "IMI": 80.0}),
    (4, 101, 0, 3, {"CRBBB": 100.0, "STACH": 0.0}),
]
STATEMENTS = pd.DataFrame({  # code, diagnostic, form, rhythm, diagnostic_class
    "code": ["NORM", "SR", "AFIB", "CLBBB", "1AVB", "SBRAD", "IMI", "CRBBB", "STACH"],
    "diagnostic": [1, None, None, 1, 1, None, 1, 1, None],
    "form": [None] * 9,
    "rhythm": [None, 1, 1, None, None, 1, None, None, 1],
    "diagnostic_class": ["NORM", None, None, "CD", "CD", None, "MI", "CD", None]})


@pytest.fixture
def ptbxl(tmp_path):
    import wfdb

    root = tmp_path / "ptb-xl"
    rows = []
    rng = np.random.default_rng(0)
    for ecg_id, patient, sex, fold, codes in PTBXL_ECGS:
        folder = root / "records500" / "00000"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{ecg_id:05d}_hr"
        wfdb.wrsamp(name, fs=500, units=["mV"] * 12, write_dir=str(folder), fmt=["16"] * 12,
                    adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    sig_name=["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4",
                              "V5", "V6"], p_signal=rng.normal(0, 0.2, (5000, 12)))
        rows.append({"ecg_id": ecg_id, "patient_id": patient, "age": 40 + ecg_id, "sex": sex,
                     "scp_codes": str(codes), "strat_fold": fold,
                     "filename_lr": f"records100/00000/{ecg_id:05d}_lr",
                     "filename_hr": f"records500/00000/{name}"})
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    STATEMENTS.rename(columns={"code": ""}).to_csv(root / "scp_statements.csv", index=False)
    return root


def _ptbxl_table(root, tmp_path, *overrides):
    cfg = compose_in(tmp_path, "dataset=ptbxl", f"dataset.path={root}", *overrides)
    source = instantiate(cfg.dataset)
    return source, source.exam_table(*source.records()).set_index("exam_id")


def test_ptbxl_code6_labels_split_and_sex(ptbxl, tmp_path):
    source, table = _ptbxl_table(ptbxl, tmp_path)
    expected = {1: set(), 2: {"AF", "LBBB"}, 3: {"1dAVb", "SB"}, 4: {"RBBB", "ST"}}
    for ecg_id, positive in expected.items():
        assert {label for label in CODE6 if table.loc[ecg_id, label] == 1} == positive
    assert table.is_male.to_dict() == {1: 1, 2: 0, 3: 1, 4: 1}
    assert table.age.to_dict() == {1: 41, 2: 42, 3: 43, 4: 44}
    assert source._split(table.reset_index()).tolist() == ["train", "val", "test", "train"]
    assert table.record.iloc[2] == "records500/00000/00003_hr"
    assert RecordReader(*source.records(), source.pipeline).read(0).shape == (4096, 12)


def test_ptbxl_likelihood_threshold_and_superclasses(ptbxl, tmp_path):
    _, strict = _ptbxl_table(ptbxl, tmp_path / "a", "dataset.min_likelihood=60")
    assert strict.loc[3, "1dAVb"] == 0 and strict.loc[2, "AF"] == 0  # 50 % and rhythm (0 %)
    assert strict.loc[2, "LBBB"] == 1
    _, classes = _ptbxl_table(ptbxl, tmp_path / "b", "dataset.label_level=superdiagnostic")
    assert classes[["CD", "MI", "NORM"]].to_dict("index") == {
        1: {"CD": 0, "MI": 0, "NORM": 1}, 2: {"CD": 1, "MI": 0, "NORM": 0},
        3: {"CD": 1, "MI": 1, "NORM": 0}, 4: {"CD": 1, "MI": 0, "NORM": 0}}


# ------------------------------------------------------------------- Challenge 2025 layout
def test_tiny_chagas_training_on_challenge2025_keeps_patients_together(tmp_path):
    """The 153 real CODE-15% exams through ``dataset=challenge2025``: every exam of a patient
    (by ``# Patient ID:``, read here) lands in one split."""
    from ecgexp.train import train

    cfg = compose_in(tmp_path, "task=chagas", "dataset=challenge2025", f"dataset.path={CODE15}",
                     "model=resnet1d_small", QUARTER_LENGTHS, "trainer.max_epochs=1",
                     "+trainer.limit_train_batches=2", "loader.num_workers=0",
                     "loader.batch_size=8", "callbacks.progress_bar=null", "logger=none",
                     "dataset.split.val_fraction=0.2", "dataset.split.test_fraction=0.2")
    train(cfg)
    fields = {int(p.stem): header_fields(p) for p in CODE15.glob("*.hea")}
    patient = {exam: f["Patient ID"] for exam, f in fields.items()}
    split_of = {}
    for split in ("val", "test"):
        table = pd.read_csv(tmp_path / "run" / f"predictions_{split}.csv")
        np.testing.assert_array_equal(
            table.target_chagas, [fields[e]["Chagas label"] == "True" for e in table.exam_id])
        split_of.update(dict.fromkeys(table.exam_id, split))
    for person in {p for p in patient.values() if list(patient.values()).count(p) > 1}:
        exams = [e for e, p in patient.items() if p == person]
        assert len({split_of.get(e, "train") for e in exams}) == 1, (person, exams)


def test_preprocess_writes_label_columns_and_the_quality_report(tmp_path):
    """``ecgexp-preprocess labels=snomed_code6`` on the CinC records: the metadata CSV holds
    the six labels by record; the quality report names the duplicate, which quality=strict
    leaves out (in the rejection report)."""
    expected = _cinc_expected()
    for name, extra in (("default", []), ("strict", ["quality=strict"])):
        output = tmp_path / name / "cinc.h5"
        cfg = compose_in(tmp_path, f"input={CINC}", f"output={output}", "labels=snomed_code6",
                         *extra, config_name="preprocess")
        convert(cfg.input, cfg.output, instantiate(cfg.preprocessing), workers=1,
                quality=instantiate(cfg.quality), label_map=instantiate(cfg.labels))
        metadata = pd.read_csv(output.with_suffix(".csv")).set_index("record")
        quality = pd.read_csv(output.with_name("cinc_quality.csv"))
        rejected = pd.read_csv(output.with_name("cinc_rejected.csv"))
        assert quality[quality.finding == "duplicate"].record.tolist() == ["E07510"]
        kept = [n for n in expected.index if name == "default" or n != "E07510"]
        assert sorted(metadata.index) == kept
        pd.testing.assert_frame_equal(metadata.loc[kept, list(CODE6)].astype(int),
                                      expected.loc[kept, list(CODE6)].astype(int),
                                      check_names=False)
        assert rejected.record.tolist() == ([] if name == "default" else ["E07510"])


def test_challenge2025_takes_the_exam_id_from_the_header(tmp_path):
    """Records renamed (rec_a, rec_b) keep their ``# Exam ID:`` as exam id (read here from the
    header lines); without it on every record, the names are the ids."""
    folder = tmp_path / "renamed"
    folder.mkdir()
    originals = sorted(p.stem for p in CODE15.glob("*.hea"))[:2]
    for original, new in zip(originals, ("rec_a", "rec_b")):
        lines = (CODE15 / f"{original}.hea").read_text().splitlines()
        lines = [line if line.startswith("#") else line.replace(original, new, 1)
                 for line in lines]
        (folder / f"{new}.hea").write_text("\n".join(lines) + "\n")
        shutil.copy(CODE15 / f"{original}.dat", folder / f"{new}.dat")
    header_ids = {n: int(header_fields(folder / f"{n}.hea")["Exam ID"])
                  for n in ("rec_a", "rec_b")}
    cfg = compose_in(tmp_path, "task=chagas", "dataset=challenge2025", f"dataset.path={folder}")
    table = _exam_table(instantiate(cfg.dataset))
    assert dict(zip(table.record, table.exam_id)) == header_ids

    header = (folder / "rec_b.hea").read_text()
    (folder / "rec_b.hea").write_text("".join(line + "\n" for line in header.splitlines()
                                              if not line.startswith("# Exam ID:")))
    table = _exam_table(instantiate(cfg.dataset))
    assert table.exam_id.tolist() == ["rec_a", "rec_b"]


def test_ptbxl_database_faults_are_named(ptbxl, tmp_path):
    """A repeated ecg_id, and a patient whose ECGs fall in two splits (folds 9 and 10), are
    refused with the line and the patient; code6 labels need no scp_statements.csv."""
    database = pd.read_csv(ptbxl / "ptbxl_database.csv")
    (ptbxl / "scp_statements.csv").unlink()
    source, _ = _ptbxl_table(ptbxl, tmp_path / "a")  # code6: no scp_statements.csv needed
    assert source.label_files == [ptbxl / "ptbxl_database.csv"]
    leaking = database.copy()
    leaking.loc[leaking.ecg_id == 3, "patient_id"] = int(
        leaking.loc[leaking.ecg_id == 2, "patient_id"].iloc[0])  # fold 9 and fold 10
    leaking.to_csv(ptbxl / "ptbxl_database.csv", index=False)
    source, table = _ptbxl_table(ptbxl, tmp_path / "b")
    patient = int(leaking.loc[leaking.ecg_id == 2, "patient_id"].iloc[0])
    with pytest.raises(UserError, match=rf"^dataset.folds: patient {patient} of '.*' has ECGs "
                                        rf"in strat_fold 9, 10, which fall in the splits test, "
                                        rf"val \(1 patients so\)"):
        source._split(table.reset_index())
    twice = pd.concat([database, database.iloc[[1]]])
    twice.to_csv(ptbxl / "ptbxl_database.csv", index=False)
    with pytest.raises(UserError, match=r"^dataset.path: '.*ptbxl_database.csv' lists ecg_id 2 "
                                        r"on lines 3, 6 \(1 ecg_ids repeated\)"):
        _ptbxl_table(ptbxl, tmp_path / "c")


def test_ptbxl_missing_record_files_are_named(ptbxl, tmp_path):
    """A record ptbxl_database.csv lists without its .dat (or .hea) is named with its ecg_id
    and CSV line before anything is read; a folder with the other sampling rate's records
    only says which rate it has."""
    database = pd.read_csv(ptbxl / "ptbxl_database.csv")
    (ptbxl / f"{database.filename_hr.iloc[1]}.dat").unlink()
    with pytest.raises(UserError, match=rf"^dataset.path: 1 of the {len(database)} records "
                                        rf"ptbxl_database.csv lists \(filename_hr\) are missing "
                                        rf"a file under '.*', first '.*/00002_hr.dat' \(ecg_id "
                                        rf"2, line 3\); download the whole PTB-XL folder"):
        _ptbxl_table(ptbxl, tmp_path / "a")
    with pytest.raises(UserError, match=rf"^dataset.path: {len(database)} of the "
                                        rf"{len(database)} records .* \(filename_lr\) .*; this "
                                        rf"folder has the 500 Hz records \(filename_hr\): "
                                        rf"dataset.sampling_rate=500$"):
        _ptbxl_table(ptbxl, tmp_path / "b", "dataset.sampling_rate=100")
