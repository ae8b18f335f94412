"""``ecgexp-heatmap``: heatmaps of every task's checkpoint through its entry point."""

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers.commands import run_in_process
from helpers.configs import TASKS, compose_config
from hydra.utils import instantiate
from matplotlib.image import imread
from omegaconf import OmegaConf

from ecgexp.commands.heatmap import heatmap
from ecgexp.interpret.heatmaps import extract_heatmaps


def heatmap_config(run: Path, *overrides):
    """``heatmap.yaml`` for ``run`` with two figures."""
    return compose_config("heatmap", f"run={run}", "figures.max_exams=2", *overrides)


def results_of(run: Path) -> Path:
    """The newest heatmaps folder of a run (each extraction writes a new one)."""
    return sorted((run / "heatmaps").iterdir())[-1]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


METHODS = ["gradcam", "saliency", "integrated_gradients", "guided_backprop"]


@pytest.mark.parametrize("task", TASKS)
def test_every_task_checkpoint_gives_heatmaps(task_run, tmp_path, task):
    """Every task's last network output (by its name: a label's logit, a log-variance, the
    last CORAL level, the last class), each task with another method; the explained value
    in the task's units is what the run itself predicted for those exams."""
    method = METHODS[TASKS.index(task) % len(METHODS)]
    run = task_run(task, into=tmp_path / "run")
    objective = instantiate(OmegaConf.load(run / "config.yaml").task.objective)
    target, column = objective.output_names[-1], objective.output_columns[-1]
    cfg = heatmap_config(run, f"target={target}", f"method={method}", "select.top_k=3",
                         "select.bottom_k=2", "layer=resblock1d_1.conv1",
                         "integrated_gradients.steps=4", "figures.max_exams=1")
    heatmap.__wrapped__(cfg)  # the entry point of `ecgexp-heatmap`
    out = results_of(run)  # the results go into the interpreted run's folder
    summary = json.loads((out / "heatmap_summary.json").read_text())
    assert summary["exams"] == 5 and summary["heatmaps"] == str(out / "heatmaps.h5")
    with h5py.File(out / "heatmaps.h5", "r") as handle:
        maps, outputs = handle["heatmaps"][:], handle["output"][:]
        predictions, exam_ids = handle["prediction"][:], handle["exam_id"][:]
        assert maps.shape == (5, 12, 4096) and maps.dtype == np.float32
        assert handle.attrs["method"] == method
        assert handle.attrs["prediction_column"] == column
        assert handle.attrs["sampling_rate_hz"] == 400
    assert np.isfinite(maps).all()
    assert list(outputs[:3]) == sorted(outputs[:3], reverse=True)  # top 3, highest first
    assert outputs[:3].min() >= outputs[3:].max()  # then the bottom 2
    test = pd.read_csv(run / "predictions_test.csv").set_index("exam_id")
    assert set(exam_ids) <= set(test.index)
    # the explained output in the task's units: what the run predicted for those exams
    np.testing.assert_allclose(predictions, test.loc[exam_ids, column], rtol=1e-4, atol=1e-4)
    if task == "chagas":
        np.testing.assert_allclose(predictions, sigmoid(outputs), rtol=1e-5)
    if method == "gradcam":
        assert maps.min() >= 0 and maps.max() <= 1
        np.testing.assert_array_equal(maps[:, 0], maps[:, 5])  # one time map for every lead
    figures = sorted((out / "figures").glob("*.png"))
    assert len(figures) == 1  # figures.max_exams
    image = imread(figures[0])
    assert image.shape[0] > 400 and image.std() > 0


def test_attribution_options_are_config_keys(task_run, tmp_path):
    """Saliency's absolute value and integrated gradients' steps and baseline come from the
    config: a signed saliency map has negative values, and IG with more steps is closer to
    the completeness identity sum(map) = f(x) - f(baseline)."""
    run = task_run("chagas", into=tmp_path / "run")
    extract_heatmaps(heatmap_config(run, "method=saliency", "saliency.absolute=false",
                                    "select.top_k=2"))
    with h5py.File(results_of(run) / "heatmaps.h5", "r") as handle:
        assert (handle["heatmaps"][:] < 0).any()
        assert "absolute" in handle.attrs["settings"]


def test_another_dataset_uses_the_runs_metadata_statistics(task_run, tmp_path):
    """With a dataset on the command line the metadata is standardised with the statistics stored in
    the checkpoint, not refitted on the new data: the explained outputs equal the model's
    outputs computed from the raw metadata through the model card."""
    from ecgexp.api import load_model

    run = task_run("electrolyte", "task.metadata_columns=[age,is_male]",
                   "task.standardise_metadata=[age]", "preprocessing=eight_leads",
                   into=tmp_path / "run")
    other = tmp_path / "other" / "synthetic_n300_seed7"
    extract_heatmaps(heatmap_config(run, "dataset=synthetic", f"dataset.directory={other}",
                                    "dataset.n_exams=300", "dataset.synthesis_seed=7",
                                    "select.top_k=3"))
    with h5py.File(results_of(run) / "heatmaps.h5", "r") as handle:
        outputs, exam_ids = handle["output"][:], handle["exam_id"][:]
        tracings = handle["tracings"][:]
    table = pd.read_csv(other / "exams.csv").set_index("exam_id").loc[exam_ids]
    model = load_model(run)
    assert set(model.metadata_statistics) == {"age"}
    expected = model.outputs(tracings, table[["age", "is_male"]].astype(float))[:, 0]
    np.testing.assert_allclose(outputs, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_explicit_exam_ids_and_only_positives(task_run, tmp_path):
    run = task_run("abnormality", into=tmp_path / "run")
    test = pd.read_csv(run / "predictions_test.csv")
    wanted = [int(test.exam_id[4]), int(test.exam_id[1])]
    cfg = heatmap_config(run, f"select.exam_ids=[{wanted[0]},{wanted[1]}]")
    extract_heatmaps(cfg)
    with h5py.File(results_of(run) / "heatmaps.h5", "r") as handle:
        assert list(handle["exam_id"][:]) == wanted
    cfg = heatmap_config(run, "target=RBBB", "select.only_positives=true")
    extract_heatmaps(cfg)
    with h5py.File(results_of(run) / "heatmaps.h5", "r") as handle:
        chosen = set(handle["exam_id"][:])
    assert chosen == set(test.exam_id[test.target_RBBB == 1])
    assert len(list((run / "heatmaps").iterdir())) == 2  # two extractions, two folders


def test_bad_inputs_name_the_keys(task_run, tmp_path):
    with pytest.raises(ValueError, match="run: no run folder"):
        extract_heatmaps(heatmap_config(tmp_path / "nope"))
    run = task_run("abnormality", into=tmp_path / "run")
    with pytest.raises(ValueError, match="^target: 'nothing' is not an output index"):
        extract_heatmaps(heatmap_config(run, "target=nothing"))
    with pytest.raises(ValueError, match="^method: expected one of"):
        extract_heatmaps(heatmap_config(run, "method=occlusion"))
    with pytest.raises(ValueError, match="^select.split: 'nowhere' is not one of"):
        extract_heatmaps(heatmap_config(run, "select.split=nowhere"))


def test_heatmap_is_a_command_of_its_own(task_run, tmp_path):
    run = task_run("chagas", into=tmp_path / "run")
    result = run_in_process("ecgexp-heatmap", tmp_path,
                            f"run={run / 'checkpoints' / 'last.ckpt'}", "select.top_k=2",
                            "figures.formats=[png,pdf]")
    assert result.returncode == 0, result.stderr[-2000:]
    out = results_of(run)
    assert (out / "heatmaps.h5").is_file()
    assert len(list((out / "figures").glob("*.pdf"))) == 2
    assert not (tmp_path / "outputs").exists()  # nothing but the run folder is written
    # The old spelling names the command; nothing is written.
    old = run_in_process("ecgexp", tmp_path, "task=heatmap", f"ckpt={run}")
    assert old.returncode == 2
    assert old.stderr.strip().splitlines() == [
        "error: task=heatmap: heatmaps are a command of their own, ecgexp-heatmap run=<run "
        "folder or checkpoint> (its keys are the old task.* keys without task., e.g. method=, "
        "target=, select.top_k=; ckpt= is run=)"]
    missing = run_in_process("ecgexp-heatmap", tmp_path, "select.top_k=2")
    assert (missing.returncode, missing.stderr.strip()) == (
        2, "error: run: not set; give run=<value> on the command line (--help describes it)")
