"""Every backbone besides the studies' ResNet1d (trained by every other test): the PTB-XL
benchmark's, the transformer and the pretrained encoders. A short run of each (narrowed to a
tiny size: tests/helpers/models.py), its heatmaps with the network's own Grad-CAM layer
(saliency where it has none), the run's best checkpoint loaded through the API predicting the
run's own test exams as the run did, ecgexp-evaluate's report of the run, and one
ecgexp-compare of every backbone's run against
the best (each run's report computed from its predictions, as ecgexp-evaluate does)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers.configs import SHORT_RUN, compose_config, compose_evaluate, compose_in
from helpers.models import NARROW, model_names
from helpers.records import synthetic_tracings

from ecgexp.api import load_model
from ecgexp.compare import compare
from ecgexp.evaluate import evaluate
from ecgexp.interpret.heatmaps import extract_heatmaps
from ecgexp.train import train

# xresnet1d101 trains in tests/e2e/test_ptbxl_benchmark.py (experiment=ptbxl_all); the ResNet1d
# family trains in every other test.
BACKBONES = [m for m in model_names() if not m.startswith("resnet1d") and m != "xresnet1d101"]
RUNS: dict[str, Path] = {}  # each backbone's run folder, for the comparison of them all


@pytest.mark.parametrize("model", BACKBONES)
def test_each_backbone_trains_explains_and_predicts(trained_run, tmp_path_factory,
                                                              model):
    tmp_path = tmp_path_factory.mktemp(model)
    short = [o for o in SHORT_RUN if not o.startswith(("model.", "+trainer.limit_train"))]
    data = trained_run.parent / "data"  # the synthetic exams of the session's short run
    cfg = compose_in(tmp_path, *short, f"model={model}", *NARROW[model], "logger=none",
                     "+trainer.limit_val_batches=1", "+trainer.limit_train_batches=1",
                     f"paths.data_dir={data}")
    metrics = train(cfg)
    folder = Path(cfg.paths.output_dir)
    assert np.isfinite(metrics["test/AF/auroc"])
    net = load_model(folder).net
    method = "gradcam" if net.gradcam_layer else "saliency"
    table = pd.read_csv(folder / "predictions_test.csv").head(8)
    heatmaps = compose_config("heatmap", f"run={folder}", f"method={method}",
                              "figures.max_exams=0",
                              f"select.exam_ids=[{table.exam_id[0]},{table.exam_id[1]}]")
    assert extract_heatmaps(heatmaps)["exams"] == 2
    [written] = (folder / "heatmaps").glob("*/heatmaps.h5")
    with h5py.File(written, "r") as handle:
        assert handle["heatmaps"].shape[0] == 2
        if method == "gradcam":
            assert handle.attrs["layer"] == net.gradcam_layer

    predicted = load_model(folder).predict(synthetic_tracings(Path(cfg.dataset.directory),
                                                         table.exam_id.to_numpy()))
    scores = [c for c in table if c.startswith("score_")]
    np.testing.assert_allclose(predicted[scores].to_numpy(), table[scores].to_numpy(),
                               rtol=1e-4, atol=1e-5)

    report = evaluate(compose_evaluate(f"run={folder}", "bootstrap.n_resamples=10"))
    assert report["test/AF/auroc"] == pytest.approx(metrics["test/AF/auroc"], abs=1e-6)
    assert (folder / "report" / "metrics.json").is_file()
    RUNS[model] = folder


def test_every_backbone_is_compared_with_the_best(tmp_path):
    if len(RUNS) < len(BACKBONES):
        pytest.skip("runs only after every backbone's run (this file, in order)")
    table = compare(compose_config("compare", f"runs=[{','.join(map(str, RUNS.values()))}]",
                                   "reference=best", "bootstrap.n_resamples=10",
                                   f"output_dir={tmp_path / 'comparison'}"))
    assert len(set(table.model_a)) == 1 and set(table.model_b) | set(table.model_a) == {
        str(folder) for folder in RUNS.values()}
