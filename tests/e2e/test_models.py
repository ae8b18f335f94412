"""Every backbone of the PTB-XL benchmark through ecgexp: a short run of each (narrowed so
that it takes seconds), its heatmaps with the network's own Grad-CAM layer (saliency for the
LSTMs), and the run's best checkpoint loaded through the API predicting the run's own test
exams as the run did."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers.configs import SHORT_RUN, compose_config, compose_in

from ecgexp.api import load_model
from ecgexp.interpret.heatmaps import extract_heatmaps
from ecgexp.train import train

# Each model at a few filters or units: the runs check wiring, not learning.
NARROW = {
    "fcn_wang": ["model.filters=[8,8,8]"],
    "resnet1d_wang": ["model.planes=8"],
    "xresnet1d50": ["model.width=4", "model.stem_sizes=[4,4,16]", "model.layers=[1,1,1,1]"],
    "inception1d": ["model.filters=4", "model.bottleneck=4"],
    "lstm": ["model.hidden=4"],
    "lstm_bidir": ["model.hidden=4"],
}


def exam_tracings(data: Path, exam_ids: np.ndarray) -> np.ndarray:
    """``(exams, leads, samples)`` tracings of ``exam_ids`` read from the synthetic HDF5
    files (CODE-15% layout: ``exam_id`` and ``tracings`` (exams, samples, leads))."""
    found = {}
    for path in sorted(data.glob("exams_part*.hdf5")):
        with h5py.File(path, "r") as handle:
            ids = handle["exam_id"][:]
            for row in np.flatnonzero(np.isin(ids, exam_ids)):
                found[int(ids[row])] = handle["tracings"][row].T
    return np.stack([found[int(e)] for e in exam_ids]).astype(np.float32)


@pytest.mark.parametrize("model", sorted(NARROW))
def test_each_backbone_trains_explains_and_predicts(trained_run, tmp_path, model):
    short = [o for o in SHORT_RUN if not o.startswith(("model.", "+trainer.limit_train"))]
    data = trained_run.parent / "data"  # the synthetic exams of the session's short run
    cfg = compose_in(tmp_path, *short, f"model={model}", *NARROW[model], "logger=none",
                     "+trainer.limit_val_batches=1", "+trainer.limit_train_batches=1",
                     f"paths.data_dir={data}")
    metrics = train(cfg)
    folder = Path(cfg.paths.output_dir)
    assert np.isfinite(metrics["test/AF/auroc"])
    method = "saliency" if model.startswith("lstm") else "gradcam"
    table = pd.read_csv(folder / "predictions_test.csv").head(8)
    heatmaps = compose_config("heatmap", f"run={folder}", f"method={method}",
                              "figures.max_exams=0",
                              f"select.exam_ids=[{table.exam_id[0]},{table.exam_id[1]}]")
    assert extract_heatmaps(heatmaps)["exams"] == 2
    [written] = (folder / "heatmaps").glob("*/heatmaps.h5")
    with h5py.File(written, "r") as handle:
        assert handle["heatmaps"].shape[0] == 2
        if method == "gradcam":
            assert handle.attrs["layer"] == load_model(folder).net.gradcam_layer

    predicted = load_model(folder).predict(exam_tracings(Path(cfg.dataset.directory),
                                                         table.exam_id.to_numpy()))
    scores = [c for c in table if c.startswith("score_")]
    np.testing.assert_allclose(predicted[scores].to_numpy(), table[scores].to_numpy(),
                               rtol=1e-4, atol=1e-5)
