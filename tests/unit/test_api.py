"""The Python API (``ecgexp.api``): the config module composes the standard way, a config
composed in Python trains without Hydra's app, and a checkpoint copied alone is a model that
predicts what its run predicted."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers.configs import QUARTER_LENGTHS
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from ecgexp.api import compose_config, load_model, train
from ecgexp.errors import UserError

OVERRIDES = ["experiment=demo", QUARTER_LENGTHS, "dataset.n_exams=120", "trainer.max_epochs=1",
             "+trainer.limit_train_batches=3", "loader.num_workers=0", "loader.batch_size=16",
             "callbacks.progress_bar=null", "logger=none", "dataset.split.val_fraction=0.3",
             "dataset.split.test_fraction=0.3"]


@pytest.fixture(scope="module")
def api_run(tmp_path_factory):
    """A run trained from Python: ``compose_config`` then ``train``, no Hydra app."""
    root = tmp_path_factory.mktemp("api")
    GlobalHydra.instance().clear()
    cfg = compose_config(*OVERRIDES, f"paths.data_dir={root / 'data'}",
                         f"paths.log_dir={root / 'outputs'}")
    assert not HydraConfig.initialized()
    metrics = train(cfg)
    return Path(cfg.paths.output_dir), metrics, root


def test_the_config_module_composes_the_standard_way():
    GlobalHydra.instance().clear()
    with initialize_config_module("ecgexp.conf", version_base="1.3"):
        cfg = compose("train", overrides=["task=age"])
    GlobalHydra.instance().clear()
    assert cfg.task.objective.target_column == "age"


def test_a_config_composed_in_python_trains_and_returns_its_metrics(api_run):
    folder, metrics, root = api_run
    assert folder.parent == root / "outputs" / "abnormality" / "runs"  # the command's folder
    assert folder.name.split("_")[2] == "demo"  # <date>_<time>_<experiment>_<token>
    stored = json.loads((folder / "metrics.json").read_text())
    assert metrics["test/macro/auroc"] == pytest.approx(stored["test"]["macro"]["auroc"])


def read_tracings(data: Path, exam_ids: np.ndarray) -> np.ndarray:
    """The stored tracings of ``exam_ids`` read with h5py, as ``(exams, leads, samples)``."""
    found = {}
    for path in sorted(data.glob("exams_part*.hdf5")):
        with h5py.File(path, "r") as handle:
            for row, exam_id in enumerate(handle["exam_id"][:]):
                if exam_id in exam_ids:
                    found[int(exam_id)] = handle["tracings"][row].T
    return np.stack([found[int(e)] for e in exam_ids]).astype(np.float32)


def test_a_checkpoint_alone_predicts_what_its_run_predicted(api_run, tmp_path):
    folder, _, root = api_run
    alone = tmp_path / "elsewhere" / "model.ckpt"  # no run folder, no config.yaml beside it
    alone.parent.mkdir()
    shutil.copy(folder / "checkpoints" / "best.ckpt", alone)
    model = load_model(alone)
    contract = model.contract
    assert contract["leads"] == ["DI", "DII", "DIII", "AVR", "AVL", "AVF",
                                 "V1", "V2", "V3", "V4", "V5", "V6"]
    assert (contract["sampling_rate_hz"], contract["n_samples"], contract["units"]) == (
        400.0, 4096, "mV")
    report = json.loads((folder / "metrics.json").read_text())
    labels = list(model.objective.target_columns)
    stored = {k: report["val"][k]["threshold"] for k in labels}  # null: no val positives
    assert model.thresholds == pytest.approx(
        {k: float("nan") if v is None else v for k, v in stored.items()}, nan_ok=True)

    expected = pd.read_csv(folder / "predictions_test.csv")
    data = next((root / "data").glob("synthetic_*"))
    predicted = model.predict(read_tracings(data, expected.exam_id.to_numpy()))
    scores = [f"score_{label}" for label in labels]
    np.testing.assert_allclose(predicted[scores], expected[scores], rtol=1e-4, atol=1e-5)
    for label in labels:  # labels at the validation thresholds, score >= threshold
        threshold = model.thresholds[label]
        if np.isnan(threshold):  # no validation positives: no label
            assert predicted[f"label_{label}"].isna().all()
            continue
        np.testing.assert_array_equal(predicted[f"label_{label}"],
                                      (expected[f"score_{label}"] >= threshold).astype(int))


def test_the_model_card_is_plain_data_read_with_weights_only(api_run):
    folder, _, _ = api_run
    stored = torch.load(folder / "checkpoints" / "best.ckpt", weights_only=True)
    card = stored["ecgexp"]
    assert card["config"]["task"]["name"] == "abnormality"
    assert set(card) == {"format", "config", "metadata_statistics", "input_contract",
                         "thresholds", "weights"}
    assert card["weights"] == {"file": None, "sha256": None, "random_encoder": False}
    assert card["input_contract"]["signal_steps"]["applied"].startswith("as stored")
    last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["ecgexp"]
    assert last["input_contract"] == card["input_contract"]


def test_tracings_that_break_the_contract_are_named(api_run):
    model = load_model(api_run[0])
    with pytest.raises(UserError, match=r"^tracings: shape \(2, 8, 4096\), but the model takes "
                                        r"\(batch, 12, 4096\): the leads DI, DII, .* at 400 Hz, "
                                        r"in mV"):
        model.predict(np.zeros((2, 8, 4096)))
    with pytest.raises(UserError, match="^tracings: NaN or infinite samples"):
        model.predict(np.full((1, 12, 4096), np.nan))
    with pytest.raises(UserError, match="^metadata: this model takes no metadata inputs"):
        model.predict(np.zeros((1, 12, 4096)), metadata=np.zeros((1, 2)))


def test_inputs_without_an_ecg_get_no_label_and_wrong_units_a_flag(api_run):
    """Real records from the repository, as a user feeds them: exam 0 as it is, exam 1 all
    zero, exam 2 in uV (x1000), exam 3 with every lead flat. The all-zero and flat exams get
    no score and no label, and a problem that says why; the uV exam a flag (its amplitude
    ratio, computed here from the model card's training amplitude)."""
    import wfdb
    from helpers.records import FIXTURES

    model = load_model(api_run[0])
    signal = wfdb.rdrecord(str(FIXTURES / "code15_wfdb" / "1111")).p_signal  # 2934 x 12, mV
    pad = 4096 - len(signal)
    tracing = np.pad(signal, ((pad // 2, pad - pad // 2), (0, 0))).T.astype(np.float32)
    batch = np.stack([tracing, np.zeros_like(tracing), tracing * 1000, tracing * 1e-3])
    table = model.predict(batch)
    assert table.problem.tolist() == ["", "no ECG: all-zero tracing",
                                      "", "no ECG: every lead flat (peak-to-peak < 0.05 mV)"]
    scores = [c for c in table if c.startswith("score_")]
    labels = [c for c in table if c.startswith("label_")]
    assert table.loc[[1, 3], scores].isna().all().all()
    assert table.loc[[1, 3], labels].isna().all().all()
    assert table.loc[[0, 2], scores].notna().all().all()
    amplitude = np.median(np.ptp(tracing * 1000, axis=1))
    ratio = amplitude / model.contract["amplitude_mv"]
    assert f"amplitude {amplitude:.3g} mV is {ratio:.3g}x the training data's" in table["flags"][2]
    np.testing.assert_allclose(table.amplitude_mv[2], amplitude, rtol=1e-5)
    for bad in (-1, 0, 2.5, True):
        with pytest.raises(UserError, match=rf"^batch_size: {bad!r} is not a whole number"):
            model.predict(batch, batch_size=bad)


def test_loading_names_a_missing_model(tmp_path):
    with pytest.raises(UserError, match=f"^model: no run folder or checkpoint at '{tmp_path}/x'"):
        load_model(tmp_path / "x")


@pytest.mark.parametrize("threshold", ["abc", 1.5, True])
def test_a_card_threshold_that_is_not_a_probability_is_named(api_run, tmp_path, threshold):
    import torch

    from ecgexp.contract import CARD_KEY

    checkpoint = next((api_run[0] / "checkpoints").glob("*.ckpt"))
    stored = torch.load(checkpoint, weights_only=True)
    label = next(iter(stored[CARD_KEY]["thresholds"]))
    stored[CARD_KEY]["thresholds"][label] = threshold
    edited = tmp_path / "edited.ckpt"
    torch.save(stored, edited)
    with pytest.raises(UserError, match=rf"^model: '{edited}' holds the threshold "
                                        rf"{threshold!r} for '{label}' in its model card"):
        load_model(edited)
