"""``ecgexp-predict`` and external test sets: every exam of any dataset scored with a trained
run's input contract, labels at its validation thresholds, wrong-looking inputs flagged."""

import json
import re
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import wfdb
from helpers.configs import EXTERNAL, QUARTER_LENGTHS, compose_in
from helpers.records import FIXTURES, code15_exams

from ecgexp.predict import predict


def _predict(root, *overrides):
    cfg = compose_in(root, *overrides, f"output={root / 'out.csv'}", "num_workers=0",
                     config_name="predict")
    predict(cfg)
    return pd.read_csv(root / "out.csv", keep_default_na=False, na_values=[""])


def _card(run):
    return torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["ecgexp"]


@pytest.fixture(scope="module")
def run(task_run, tmp_path_factory):
    return task_run("abnormality", into=tmp_path_factory.mktemp("predict") / "run")


def test_unlabelled_wfdb_folder(run, tmp_path, capsys):
    """Records without label headers: one row per record, its name, probabilities in [0, 1],
    labels equal to score >= the run's validation threshold (read from the checkpoint)."""
    folder = tmp_path / "records"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = ["b_rec", "a_rec", "c_rec"]
    for name in names:
        signal = rng.normal(0, 0.3, (5000, 12))
        wfdb.wrsamp(name, fs=500, units=["mV"] * 12, sig_name=[f"L{i}" for i in range(12)],
                    p_signal=signal, fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                    baseline=[0] * 12, write_dir=str(folder))
        header = folder / f"{name}.hea"
        leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
        text = header.read_text()
        for i, lead in enumerate(leads):
            text = text.replace(f" L{i}\n", f" {lead}\n")
        header.write_text(text)
    table = _predict(tmp_path, f"run={run}", "dataset=wfdb_folder", f"dataset.path={folder}")
    assert list(table.record) == sorted(names)
    assert re.search(r"^predicting 3/3 exams  elapsed \d+:\d\d:\d\d$",  # a line off a terminal
                     capsys.readouterr().out, re.M)
    thresholds = _card(run)["thresholds"]
    assert thresholds
    for label, threshold in thresholds.items():
        scores = table[f"score_{label}"]
        assert scores.between(0, 1).all()
        assert (table[f"label_{label}"] == (scores >= threshold).astype(int)).all()
    assert not any(c.startswith("target_") for c in table.columns)
    assert (tmp_path / "out.csv").is_file()
    with pytest.raises(ValueError, match="exists; nothing is overwritten"):
        _predict(tmp_path, f"run={run}", "dataset=wfdb_folder", f"dataset.path={folder}")


def test_real_code15_records_same_input_both_ways_and_flagged(run, tmp_path):
    """The real CODE-15% exams as WFDB records and as an HDF5 file (centre-padded, as the
    CODE-15% files store them) give the HDF5-trained model the same predictions; their
    amplitude, measured here on the raw counts, is flagged against the training data's."""
    headers, counts, millivolts = code15_exams()
    data = tmp_path / "h5"
    data.mkdir()
    with h5py.File(data / "exams.hdf5", "w") as handle:
        handle["tracings"] = millivolts
        handle["exam_id"] = np.array([int(h["Exam ID"]) for h in headers])
    pd.DataFrame({"exam_id": [int(h["Exam ID"]) for h in headers]}).to_csv(
        data / "exams.csv", index=False)
    records = _predict(tmp_path / "a", f"run={run}", "dataset=wfdb_folder",
                       f"dataset.path={FIXTURES / 'code15_wfdb'}", "dataset.ids=name")
    stored = _predict(tmp_path / "b", f"run={run}", "dataset=generic",
                      f"dataset.tracing_files={data / 'exams.hdf5'}",
                      f"dataset.labels_csv={data / 'exams.csv'}", "dataset.drop_padding_rows=false")
    assert len(records) == len(headers) == 153
    assert list(records.exam_id) == [int(h["Exam ID"]) for h in headers]  # name order
    assert list(records.record.astype(str)) == [h["Exam ID"] for h in headers]
    merged = records.merge(stored, on="exam_id", suffixes=("", "_h5"))
    assert len(merged) == 153
    np.testing.assert_allclose(merged.score_AF, merged.score_AF_h5, atol=1e-5)
    # independent amplitude: median over exams of the median over leads of peak-to-peak (mV)
    amplitude = np.median(np.ptp(counts / 1000.0, axis=1), axis=1)
    reference = _card(run)["input_contract"]["amplitude_mv"]
    ratio = np.median(amplitude) / reference
    assert ratio > 1.5  # stored at twice their mV (docs/studies.md §4)
    assert records["flags"].str.contains(f"{ratio:.3g}x the training data's", regex=False).all()
    flat = (np.ptp(counts / 1000.0, axis=1) < 0.05).any(axis=1)
    assert records["flags"].str.contains("flat leads", regex=False).sum() == flat.sum()


def test_microvolt_copy_flagged_and_other_rate_resampled(run, tmp_path):
    """A uV copy of an HDF5 file is flagged with its ratio; a 500 Hz copy is resampled to the
    model's 400 Hz (predictions close to the original's); undeclared, its shape is refused."""
    source = run.parent / "src"
    from ecgexp.data.synthetic import write_code15
    from ecgexp.signal.filters import fix_length, resample

    write_code15(source, n_exams=24, n_parts=1, seed=3)
    with h5py.File(source / "exams_part0.hdf5") as handle:
        tracings, ids = handle["tracings"][:], handle["exam_id"][:]
    common = ["dataset=generic", f"dataset.labels_csv={source / 'exams.csv'}",
              "dataset.drop_padding_rows=true"]  # the CODE-15% layout's padding row
    original = _predict(tmp_path / "o", f"run={run}", *common,
                        f"dataset.tracing_files={source / 'exams_part0.hdf5'}")
    for name, values in {"uv": tracings * 1000,
                         "hz500": np.stack([fix_length(resample(t, 400, 500), 5120)
                                            for t in tracings])}.items():
        with h5py.File(tmp_path / f"{name}.hdf5", "w") as handle:
            handle["tracings"], handle["exam_id"] = values.astype(np.float32), ids
    micro = _predict(tmp_path / "u", f"run={run}", *common,
                     f"dataset.tracing_files={tmp_path / 'uv.hdf5'}")
    # the same generator as the run's data, in uV: about 1000x its amplitude (800x to 1250x:
    # the two samples' amplitudes differ by chance)
    ratios = micro["flags"].str.extract(r"is ([0-9.e+]+)x the training data's")[0].astype(float)
    assert ratios.between(800, 1250).all(), micro["flags"][0]
    assert original["flags"].isna().all()  # nothing found: an empty cell
    resampled = _predict(tmp_path / "r", f"run={run}", *common,
                         f"dataset.tracing_files={tmp_path / 'hz500.hdf5'}",
                         "dataset.sampling_rate=500", "dataset.n_samples=5120")
    np.testing.assert_allclose(resampled.score_AF, original.score_AF, atol=0.02)
    with pytest.raises(ValueError, match="have shape .*5120, 12.*expected .*4096, 12"):
        _predict(tmp_path / "x", f"run={run}", *common,
                 f"dataset.tracing_files={tmp_path / 'hz500.hdf5'}")


# A second run (another seed) with two external test sets: the ensemble's second member too.


def test_ensemble_is_the_mean_of_its_members(task_run, tmp_path):
    a = task_run("abnormality", into=tmp_path / "a")
    b = task_run("abnormality", *EXTERNAL, into=tmp_path / "b")
    common = ["dataset=synthetic", "dataset.n_exams=40", f"dataset.directory={tmp_path / 'd'}"]
    first = _predict(tmp_path / "1", f"run={a}", *common)
    second = _predict(tmp_path / "2", f"run={b}", *common)
    both = _predict(tmp_path / "3", f"runs=[{a},{b}]", *common)
    np.testing.assert_allclose(both.score_RBBB, (first.score_RBBB + second.score_RBBB) / 2,
                               atol=1e-6)
    spread = np.std(np.stack([first.score_RBBB, second.score_RBBB]), axis=0, ddof=1)
    np.testing.assert_allclose(both.score_RBBB_sd, spread, atol=1e-6)


def test_external_test_sets_reported_by_name(task_run, tmp_path):
    from helpers.configs import compose_evaluate

    from ecgexp.evaluate import evaluate

    run = task_run("abnormality", *EXTERNAL, into=tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics) == ["val", "test", "ext_a", "ext_b"]
    table = pd.read_csv(run / "predictions_ext_a.csv")
    assert len(table) == 24
    threshold = metrics["val"]["AF"]["threshold"]
    assert metrics["ext_a"]["AF"]["threshold"] == threshold
    predicted = table.score_AF >= threshold
    truth = table.target_AF.astype(bool)
    recall = (predicted & truth).sum() / truth.sum() if truth.sum() else None
    if recall is not None:
        assert metrics["ext_a"]["AF"]["recall"] == pytest.approx(recall)
    shutil.rmtree(run / "report", ignore_errors=True)
    flat = evaluate(compose_evaluate(f"run={run}", "dataset_attributes=false",
                                     "bootstrap.n_resamples=20"))  # the keys, not intervals
    assert "ext_b/macro/auroc" in flat and "ext_a/AF/f1" in flat


def test_published_weights_on_a_code_test_layout(run, tmp_path):
    """Weights ecgexp wrote, as a bare state dict, on a synthetic CODE-test layout
    (``ecg_tracings.hdf5`` without ids + row-order annotations): predictions equal the
    network's forward pass, ``ecgexp-evaluate`` at fixed thresholds equals F1 computed here."""
    from helpers.configs import compose_evaluate

    from ecgexp.api import load_model
    from ecgexp.evaluate import evaluate

    labels = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
    model = load_model(run)
    torch.save(model.net.state_dict(), tmp_path / "model.pth")
    rng = np.random.default_rng(1)
    tracings = rng.normal(0, 0.2, (30, 4096, 12)).astype(np.float32)
    folder = tmp_path / "data" / "code_test"
    (folder / "annotations").mkdir(parents=True)
    with h5py.File(folder / "ecg_tracings.hdf5", "w") as handle:
        handle["tracings"] = tracings
    truth = rng.integers(0, 2, (30, 6))
    pd.DataFrame(truth, columns=labels).to_csv(folder / "annotations" / "gold_standard.csv",
                                               index=False)
    table = _predict(tmp_path, "task=abnormality", "model=resnet1d_small", QUARTER_LENGTHS,
                     f"model.weights={tmp_path / 'model.pth'}", "dataset=code_test")
    with torch.inference_mode():
        expected = torch.sigmoid(model.net(torch.from_numpy(tracings.transpose(0, 2, 1))))
    np.testing.assert_allclose(table[[f"score_{c}" for c in labels]], expected.numpy(),
                               atol=1e-5)
    assert list(table.exam_id) == list(range(30))
    thresholds = [0.45, 0.46, 0.47, 0.48, 0.49, 0.5]
    metrics = evaluate(compose_evaluate(f"predictions={tmp_path / 'out.csv'}",
                                        f"thresholds=[{','.join(map(str, thresholds))}]",
                                        f"output_dir={tmp_path / 'report'}"))
    for column, (label, threshold) in enumerate(zip(labels, thresholds)):
        predicted = expected.numpy()[:, column] >= threshold
        positive = truth[:, column] == 1
        true_positives = (predicted & positive).sum()
        f1 = 2 * true_positives / (predicted.sum() + positive.sum())
        assert metrics[f"test/{label}/f1"] == pytest.approx(f1)


def _external_files(folder, n_leads: int = 12, bad_label: bool = False,
                    columns=("1dAVb", "RBBB", "LBBB", "SB", "AF", "ST")):
    """The first 8 real CODE-15% exams as an HDF5 file and a label table."""
    headers, _, tracings = code15_exams(8)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [int(h["Exam ID"]) if "Exam ID" in h else i + 1 for i, h in enumerate(headers)]
    with h5py.File(folder / "ext.hdf5", "w") as handle:
        handle["tracings"], handle["exam_id"] = tracings[:, :, :n_leads], ids
    labels = pd.DataFrame({"exam_id": ids, **{c: 0 for c in columns}})
    if bad_label:
        labels.loc[3, "AF"] = 2
    labels.to_csv(folder / "ext.csv", index=False)
    return [f"test_datasets.ext.tracing_files={folder / 'ext.hdf5'}",
            f"test_datasets.ext.labels_csv={folder / 'ext.csv'}"]


@pytest.mark.parametrize("case", ["missing_file", "missing_labels", "eight_leads", "named_test",
                                  "label_two"])
def test_external_sets_are_checked_before_training(tmp_path, case):
    """Each fault stops the run at start-up, naming test_datasets.<name>: no run folder."""
    from helpers.configs import SHORT_RUN

    from ecgexp.errors import UserError
    from ecgexp.train import train

    data = tmp_path / "ext"
    generic = ["+dataset@test_datasets.ext=generic"]
    cases = {
        "missing_file": lambda: (
            [*generic, f"test_datasets.ext.tracing_files={tmp_path / 'no.hdf5'}",
             f"test_datasets.ext.labels_csv={tmp_path / 'no.csv'}"],
            "^test_datasets.ext.tracing_files: no HDF5 file at "),
        "missing_labels": lambda: (
            [*generic, *_external_files(data, columns=("AF",))],
            r"^test_datasets.ext: 'generic' has no 1dAVb, RBBB, LBBB, SB, ST column"),
        "eight_leads": lambda: ([*generic, *_external_files(data, n_leads=8)],
                                r"^test_datasets.ext.n_samples / dataset.leads: tracings "
                                r"'tracings' in '.*ext.hdf5' have shape \(8, 4096, 8\), "
                                r"expected \(N, 4096, 12\)"),
        "named_test": lambda: (["+dataset@test_datasets.test=synthetic"],
                               "^test_datasets.test: 'test' is a split of the training data"),
        "label_two": lambda: (
            [*generic, *_external_files(data, bad_label=True)],
            r"^test_datasets.ext: .*binary label 'AF' of '.*ext.csv' holds 2 at exam_id "
            r"111102 .*\(test_datasets.ext.labels_csv\)"),
    }
    overrides, message = cases[case]()
    cfg = compose_in(tmp_path, *SHORT_RUN, "logger=none", *overrides)
    with pytest.raises(UserError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_every_record_has_a_row_and_unusable_ones_say_what_they_are(run, tmp_path, capsys):
    """Real CODE-15% records: one copied into two subfolders (a duplicate exam id under
    ids=name), one with its samples zeroed (no ECG), one with a NaN sample. Each has a row; the
    duplicate and the unusable ones have no prediction and no label, and a problem that names
    what they are; the count printed is of the records predicted."""
    import shutil as sh

    source = FIXTURES / "code15_wfdb"
    folder = tmp_path / "records"
    for sub, name in (("a", "1111"), ("b", "1111"), ("a", "1111004"), ("a", "1111009")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for suffix in (".hea", ".dat"):
            sh.copy(source / f"{name}{suffix}", folder / sub / f"{name}{suffix}")
    record = wfdb.rdrecord(str(folder / "a" / "1111004"), physical=False)
    np.zeros_like(record.d_signal).astype("<i2").tofile(folder / "a" / "1111004.dat")
    samples = np.fromfile(folder / "a" / "1111009.dat", "<i2").reshape(-1, 12)
    samples[10, 3] = -32768  # WFDB's invalid sample: NaN once read
    samples.tofile(folder / "a" / "1111009.dat")
    two = wfdb.rdrecord(str(source / "1111"), physical=False, channels=[0, 1])  # I and II
    wfdb.wrsamp("two_leads", fs=two.fs, units=two.units, sig_name=two.sig_name,
                d_signal=two.d_signal, fmt=two.fmt, adc_gain=two.adc_gain,
                baseline=two.baseline, write_dir=str(folder / "a"))
    settings = [f"run={run}", "dataset=wfdb_folder", f"dataset.path={folder}", "dataset.ids=name"]
    table = _predict(tmp_path, *settings).set_index("record")
    assert sorted(table.index) == ["a/1111", "a/1111004", "a/1111009", "a/two_leads", "b/1111"]
    assert table.loc["b/1111", "problem"] == "duplicate exam_id 1111 (also a/1111)"
    assert table.loc["a/1111004", "problem"] == "no ECG: all-zero tracing"
    assert table.loc["a/1111009", "problem"] == "1 NaN/Inf sample(s) of 49152"
    assert table.loc["a/two_leads", "problem"] == (
        "missing leads ['V1', 'V2', 'V3', 'V4', 'V5', 'V6']: the record has 2 leads ['DI', "
        "'DII'] (and ['DIII', 'AVR', 'AVL', 'AVF'] derived from them); set "
        "preprocessing.missing_leads=zero to zero-fill")
    unusable = ["b/1111", "a/1111004", "a/1111009", "a/two_leads"]
    scores = [c for c in table if c.startswith(("score_", "label_"))]
    assert table.loc[unusable, scores].isna().all().all()
    assert table.loc[unusable, "flags"].isna().all()  # the problem alone says what it is
    assert table.loc["a/1111", scores].notna().all()
    assert "Predicted 1 of 5 exams" in capsys.readouterr().out
    # The remedy it names works: the precordial leads zero-filled, predicted, and flagged.
    (tmp_path / "out.csv").unlink()
    zero_filled = _predict(tmp_path, *settings, "preprocessing.missing_leads=zero")
    zero_filled = zero_filled.set_index("record").loc["a/two_leads"]
    assert zero_filled[scores].notna().all() and pd.isna(zero_filled["problem"])
    assert "flat leads V1,V2,V3,V4,V5,V6 (" in zero_filled["flags"]


def test_a_killed_prediction_is_continued_by_the_same_command(run, tmp_path, monkeypatch):
    """ecgexp-predict writes its rows as it predicts (``<output>.partial``, a batch at a time):
    an interrupted run leaves its whole rows and no output; the same command continues after
    them (a last line cut short is dropped) and ends with the table of an uninterrupted run.
    Leftovers of another command, or of other exams, are refused with one line."""
    from ecgexp.data.synthetic import write_code15
    from ecgexp.errors import UserError
    from ecgexp.inference.table import DatasetPredictions

    source = tmp_path / "src"
    write_code15(source, n_exams=40, n_parts=1, seed=5)
    common = [f"run={run}", "dataset=generic", f"dataset.labels_csv={source / 'exams.csv'}",
              f"dataset.tracing_files={source / 'exams_part0.hdf5'}",
              "dataset.drop_padding_rows=true", "batch_size=8"]
    whole = _predict(tmp_path / "whole", *common)
    assert len(whole) == 40

    blocks = DatasetPredictions.blocks

    def interrupted(self, *args, **kwargs):  # Ctrl-C (or a kill) after two batches
        for n, block in enumerate(blocks(self, *args, **kwargs)):
            if n == 2:
                raise KeyboardInterrupt
            yield block

    def interrupt(root):
        with monkeypatch.context() as patch:
            patch.setattr(DatasetPredictions, "blocks", interrupted)
            with pytest.raises(KeyboardInterrupt):
                _predict(root, *common)
        return root / "out.csv.partial"

    partial = interrupt(tmp_path / "killed")
    assert not (tmp_path / "killed" / "out.csv").exists()
    written = pd.read_csv(partial)
    assert list(written.columns) == list(whole.columns)
    assert list(written.exam_id) == list(whole.exam_id[:16])  # two whole batches of 8
    with open(partial, "a") as handle:
        handle.write(f"{whole.exam_id[16]},0.5")  # a line cut short by the kill
    resumed = _predict(tmp_path / "killed", *common)
    assert not partial.exists() and not partial.with_name("out.csv.partial.json").exists()
    pd.testing.assert_frame_equal(resumed, whole, check_exact=False, rtol=1e-5, atol=1e-6)

    partial = interrupt(tmp_path / "other")
    with pytest.raises(UserError, match=r"^output: '.*out.csv.partial' holds the rows of a "
                                        r"killed ecgexp-predict with other models, dataset or "
                                        r"settings; remove it"):
        _predict(tmp_path / "other", *common, "split_seed=1")
    text = partial.read_text().splitlines()
    first = text[1].split(",")
    partial.write_text("\n".join([text[0], ",".join(["999999", *first[1:]]), *text[2:]]) + "\n")
    with pytest.raises(UserError, match=r"holds other exams than the first 16 of the dataset"):
        _predict(tmp_path / "other", *common)
