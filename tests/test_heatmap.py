"""``ecgexp task=heatmap``: heatmaps of every task's checkpoint through the main entry point."""

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import TASKS, run_in_process
from hydra.utils import instantiate
from matplotlib.image import imread
from omegaconf import OmegaConf, open_dict

from ecgexp.cli import main
from ecgexp.interpret.heatmaps import extract_heatmaps


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data") / "synthetic_n400_seed0"


def heatmap_config(compose_train, synthetic_dir, run: Path, out: Path, *overrides):
    cfg = compose_train("task=heatmap", f"ckpt={run if run is not None else 'null'}",
                        f"dataset.directory={synthetic_dir}",
                        "dataset.n_exams=400", "task.figures.max_exams=2", *overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def results_of(run: Path) -> Path:
    """The newest heatmaps folder of a run (each extraction writes a new one)."""
    return sorted((run / "heatmaps").iterdir())[-1]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


METHODS = ["gradcam", "saliency", "integrated_gradients", "guided_backprop"]


@pytest.mark.parametrize("task", TASKS)
def test_every_task_checkpoint_gives_heatmaps(compose_train, synthetic_dir, task_run, tmp_path,
                                              task):
    """Every task's last network output (by its name: a label's logit, a log-variance, the
    last CORAL level, the last class), each task with another method; the explained value
    in the task's units is what the run itself predicted for those exams."""
    method = METHODS[TASKS.index(task) % len(METHODS)]
    run = task_run(task, into=tmp_path / "run")
    objective = instantiate(OmegaConf.load(run / "config.yaml").task.objective)
    target, column = objective.output_names[-1], objective.output_columns[-1]
    cfg = heatmap_config(compose_train, synthetic_dir, run, tmp_path / "hydra",
                         f"task.target={target}", f"task.method={method}",
                         "task.select.top_k=3", "task.select.bottom_k=2",
                         "task.layer=resblock1d_1.conv1", "task.integrated_gradients.steps=4")
    main.__wrapped__(cfg)  # the entry point of `ecgexp task=heatmap`
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
    assert len(figures) == 2
    image = imread(figures[0])
    assert image.shape[0] > 400 and image.std() > 0


def test_attribution_options_are_config_keys(compose_train, synthetic_dir, task_run, tmp_path):
    """Saliency's absolute value and integrated gradients' steps and baseline come from the
    config: a signed saliency map has negative values, and IG with more steps is closer to
    the completeness identity sum(map) = f(x) - f(baseline)."""
    run = task_run("chagas", into=tmp_path / "run")
    extract_heatmaps(heatmap_config(compose_train, synthetic_dir, run, tmp_path / "x",
                                    "task.method=saliency", "task.saliency.absolute=false",
                                    "task.select.top_k=2"))
    with h5py.File(results_of(run) / "heatmaps.h5", "r") as handle:
        assert (handle["heatmaps"][:] < 0).any()
        assert "absolute" in handle.attrs["settings"]


def test_current_dataset_uses_the_runs_metadata_statistics(compose_train, task_run,
                                                           tmp_path):
    """With task.dataset=current the metadata is standardised with the statistics stored in
    the checkpoint, not refitted on the new data: the explained outputs equal the model's
    outputs computed from the raw metadata through the model card."""
    from ecgexp.api import load_model

    run = task_run("electrolyte", "task.metadata_columns=[age,is_male]",
                   "task.standardise_metadata=[age]", "preprocessing=eight_leads",
                   into=tmp_path / "run")
    other = tmp_path / "other" / "synthetic_n300_seed7"
    extract_heatmaps(heatmap_config(compose_train, other, run, tmp_path / "x",
                                    "task.dataset=current", "dataset.n_exams=300",
                                    "dataset.synthesis_seed=7", "task.select.top_k=3"))
    with h5py.File(results_of(run) / "heatmaps.h5", "r") as handle:
        outputs, exam_ids = handle["output"][:], handle["exam_id"][:]
        tracings = handle["tracings"][:]
    table = pd.read_csv(other / "exams.csv").set_index("exam_id").loc[exam_ids]
    model = load_model(run)
    assert set(model.metadata_statistics) == {"age"}
    expected = model.outputs(tracings, table[["age", "is_male"]].astype(float))[:, 0]
    np.testing.assert_allclose(outputs, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_explicit_exam_ids_and_only_positives(compose_train, synthetic_dir, task_run, tmp_path):
    run = task_run("abnormality", into=tmp_path / "run")
    test = pd.read_csv(run / "predictions_test.csv")
    wanted = [int(test.exam_id[4]), int(test.exam_id[1])]
    cfg = heatmap_config(compose_train, synthetic_dir, run, tmp_path / "ids",
                         f"task.select.exam_ids=[{wanted[0]},{wanted[1]}]")
    extract_heatmaps(cfg)
    with h5py.File(results_of(run) / "heatmaps.h5", "r") as handle:
        assert list(handle["exam_id"][:]) == wanted
    cfg = heatmap_config(compose_train, synthetic_dir, run, tmp_path / "positives",
                         "task.target=RBBB", "task.select.only_positives=true")
    extract_heatmaps(cfg)
    with h5py.File(results_of(run) / "heatmaps.h5", "r") as handle:
        chosen = set(handle["exam_id"][:])
    assert chosen == set(test.exam_id[test.target_RBBB == 1])
    assert len(list((run / "heatmaps").iterdir())) == 2  # two extractions, two folders


def test_bad_inputs_name_the_keys(compose_train, synthetic_dir, task_run, tmp_path):
    with pytest.raises(ValueError, match="ckpt: give the run folder"):
        extract_heatmaps(heatmap_config(compose_train, synthetic_dir, None, tmp_path / "x"))
    with pytest.raises(ValueError, match="ckpt: no run folder"):
        extract_heatmaps(heatmap_config(compose_train, synthetic_dir, tmp_path / "nope",
                                        tmp_path / "x"))
    run = task_run("abnormality", into=tmp_path / "run")
    with pytest.raises(ValueError, match="task.target: 'nothing' is not an output index"):
        extract_heatmaps(heatmap_config(compose_train, synthetic_dir, run, tmp_path / "x",
                                        "task.target=nothing"))
    with pytest.raises(ValueError, match="task.method"):
        extract_heatmaps(heatmap_config(compose_train, synthetic_dir, run, tmp_path / "x",
                                        "task.method=occlusion"))


def test_heatmap_is_one_override_on_the_cli(task_run, tmp_path):
    run = task_run("chagas", into=tmp_path / "run")
    result = run_in_process("ecgexp", tmp_path, "task=heatmap",
                            f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "task.select.top_k=2",
                            "task.figures.formats=[png,pdf]")
    assert result.returncode == 0, result.stderr[-2000:]
    out = results_of(run)
    assert (out / "heatmaps.h5").is_file()
    assert len(list((out / "figures").glob("*.pdf"))) == 2
    hydra_files = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert hydra_files == []  # Hydra's own folder held nothing of the results: removed
