"""Every task of the config tree builds the common network from its objective, composes and
runs; a new task is one YAML file. (That every task learns: tests/e2e/test_learning.py.)"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.commands import run_in_process
from helpers.configs import QUARTER_LENGTHS, TASKS, compose_evaluate, compose_in
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from ecgexp.evaluate import evaluate
from ecgexp.models.weights import build_model
from ecgexp.train import train

SMALL = ["model=resnet1d_small", QUARTER_LENGTHS, "loader.num_workers=0",
         "callbacks.progress_bar=null", "logger=none"]


def test_the_task_list_is_the_config_tree():
    assert {"abnormality", "chagas", "age", "af_risk", "electrolyte"} <= set(TASKS)
    assert "heatmap" not in TASKS


def example_targets(objective, n: int = 4) -> torch.Tensor:
    """Valid targets for any objective: 0/1 labels, class values, or a positive quantity."""
    if objective.binary_columns:
        return torch.tensor([[1.0], [0.0], [1.0], [0.0]]).repeat(1, len(objective.target_columns))
    if hasattr(objective, "classes"):
        values = objective.classes
        return torch.tensor([[values[i % len(values)]] for i in range(n)])
    return torch.tensor([[1.0], [0.5], [4.2], [5.8]])


@pytest.mark.parametrize("task", TASKS)
def test_network_and_objective_agree_on_every_task(compose_train, task):
    """The network is built from the objective (output width and head) and its outputs feed
    the objective's loss and prediction columns."""
    cfg = compose_train(f"task={task}", "model=resnet1d_small")
    objective = instantiate(cfg.task.objective)
    net = build_model(cfg.model, objective)
    assert net.head == objective.head
    tracings = torch.randn(4, 12, 4096)
    metadata = torch.randn(4, cfg.model.n_metadata) if cfg.model.n_metadata else None
    outputs = net(tracings) if metadata is None else net(tracings, metadata)
    assert outputs.shape == (4, len(objective.output_names))
    assert len(objective.output_columns) == outputs.shape[1]
    assert set(objective.output_columns) <= set(objective.prediction_columns)
    targets = example_targets(objective)
    objective.fit(targets.numpy())
    assert torch.isfinite(objective.loss(outputs, targets))
    assert objective.predict(outputs).shape == (4, len(objective.prediction_columns))


def test_cfg_job_works_for_every_task(tmp_path):
    for task in TASKS:
        result = run_in_process("ecgexp", tmp_path, f"task={task}", "--cfg", "job")
        assert result.returncode == 0, result.stderr
        assert f"name: {task}" in result.stdout


def test_other_buckets_change_the_network_width_without_another_key(compose_train):
    cfg = compose_train("task=electrolyte_classification", "model=resnet1d_small",
                        "task.objective.buckets=[3.5,5.5]")
    net = build_model(cfg.model, instantiate(cfg.task.objective))
    assert net(torch.randn(2, 12, 4096)).shape == (2, 3)


@pytest.mark.parametrize("override", ["task.target_columns=[age_years]", "task.head=linear",
                                      "task.n_outputs=3", "model.head=linear"])
def test_the_objective_is_the_only_place_of_targets_width_and_head(compose_train, override):
    """What the objective owns has no second key that could disagree with it."""
    task = "electrolyte_gaussian" if "head" in override else "age"
    with pytest.raises(ConfigCompositionException, match=override.split("=")[0]):
        compose_train(f"task={task}", override)


@pytest.mark.parametrize("task,key,metric", [("age", "target_column", "mae"),
                                               ("electrolyte_gaussian", "target_column", "nll"),
                                               ("survival", "event_column", "harrell_c")])
def test_the_optimized_metric_follows_the_objectives_target(compose_train, task, key, metric):
    """The target is named once: a sweep of a task retargeted on the command line optimises
    the new target's metric (not a metric the run no longer has)."""
    cfg = compose_train(f"task={task}", f"task.objective.{key}=other")
    assert cfg.optimized_metric == f"val/other/{metric}"


@pytest.mark.parametrize("task,columns", [
    ("electrolyte_classification", ["predicted_potassium", *(f"prob_bucket{k}" for k in range(6))]),
    ("electrolyte_ordinal", ["predicted_potassium", *(f"prob_above{k}" for k in range(5))]),
])
def test_bucket_variants_write_values_in_mmol(task_run, tmp_path, task, columns):
    run = task_run(task, into=tmp_path / task)
    test = pd.read_csv(run / "predictions_test.csv")
    assert list(test.columns) == ["exam_id", *columns, "target_potassium"]
    assert set(test.predicted_potassium) <= {3.5, 3.75, 4.25, 4.75, 5.25, 5.5}
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["test"]["potassium"]["mae"])


def test_electrolyte_metadata_fusion_trains(task_run, tmp_path):
    """The published age/sex fusion head (8 leads, metadata standardised with the training
    split's statistics, which the model card carries)."""
    run = task_run("electrolyte", "task.metadata_columns=[age,is_male]",
                   "task.standardise_metadata=[age]", "preprocessing=eight_leads",
                   into=tmp_path / "fusion")
    statistics = json.loads((run / "training_statistics.json").read_text())
    assert set(statistics["metadata"]) == {"age"}
    assert 35 < statistics["metadata"]["age"]["mean"] < 70
    card = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["ecgexp"]
    assert card["metadata_statistics"] == statistics["metadata"]
    assert card["input_contract"]["metadata_columns"] == ["age", "is_male"]
    assert card["input_contract"]["leads"] == ["DI", "DII", "V1", "V2", "V3", "V4", "V5", "V6"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["test"]["potassium"]["mae"])


NEW_REGRESSION_TASK = """\
# A new regression task: the age the published network predicted (nn_predicted_age); it
# follows val_loss, the default of every task (train.yaml).
name: nn_age
metadata_columns: []
optimized_metric: val/nn_predicted_age/mae
optimized_direction: minimize
objective:
  _target_: ecgexp.tasks.regression.Regression
  target_column: nn_predicted_age
  standardise: true
  units: years
"""
NEW_CLASS_TASK = """\
# A new 4-class task with the generic objective: the exam's rhythm class.
name: rhythm
metadata_columns: []
monitor: val_loss
monitor_mode: min
optimized_metric: val/macro/auroc
optimized_direction: maximize
objective:
  _target_: ecgexp.tasks.multiclass.MultiClass
  target_column: rhythm
  classes: [0, 1, 2, 3]
  class_names: [sinus, af, brady, tachy]
  contrasts:
    af_vs_sinus: {positive: 1, negative: 0}
"""


def rhythm_classes(labels_csv: Path) -> pd.DataFrame:
    """One rhythm class per exam from the dataset's own labels: AF 1, else SB 2, else ST 3,
    else 0 (the synthetic generator gives each exam at most one rhythm label)."""
    table = pd.read_csv(labels_csv)
    rhythm = np.select([table.AF, table.SB, table.ST], [1, 2, 3], default=0)
    return pd.DataFrame({"exam_id": table.exam_id, "rhythm": rhythm})


def test_a_new_task_is_one_yaml_file(tmp_path):
    """A regression task and a 4-class task, each one YAML file in a config folder of the
    user's (on Hydra's search path), train for an epoch and are evaluated: no Python change,
    no task list edited."""
    user_conf = tmp_path / "my_conf"
    (user_conf / "task").mkdir(parents=True)
    (user_conf / "task" / "nn_age.yaml").write_text(NEW_REGRESSION_TASK)
    (user_conf / "task" / "rhythm.yaml").write_text(NEW_CLASS_TASK)
    data = tmp_path / "data" / "synthetic_n300_seed0"
    first = compose_in(tmp_path / "first", f"hydra.searchpath=[file://{user_conf}]",
                       "task=nn_age", *SMALL, "dataset.n_exams=300",
                       f"dataset.directory={data}", "trainer.max_epochs=1")
    metrics = train(first)
    assert np.isfinite(metrics["test/nn_predicted_age/mae"])
    predictions = pd.read_csv(Path(first.paths.output_dir) / "predictions_test.csv")
    assert list(predictions.columns) == ["exam_id", "predicted_nn_predicted_age",
                                         "target_nn_predicted_age"]

    rhythm_csv = tmp_path / "rhythm.csv"
    rhythm_classes(data / "exams.csv").to_csv(rhythm_csv, index=False)
    second = compose_in(tmp_path / "second", f"hydra.searchpath=[file://{user_conf}]",
                        "task=rhythm", *SMALL, "dataset.n_exams=300",
                        f"dataset.directory={data}", f"dataset.extra_labels_csv=[{rhythm_csv}]",
                        "trainer.max_epochs=1")
    metrics = train(second)
    run = Path(second.paths.output_dir)
    predictions = pd.read_csv(run / "predictions_test.csv")
    assert list(predictions.columns) == ["exam_id", "prob_sinus", "prob_af", "prob_brady",
                                         "prob_tachy", "target_rhythm"]
    np.testing.assert_allclose(predictions.filter(like="prob_").sum(axis=1), 1, rtol=1e-5)
    expected = rhythm_classes(data / "exams.csv").set_index("exam_id").rhythm
    assert (predictions.target_rhythm.to_numpy()
            == expected.loc[predictions.exam_id].to_numpy()).all()
    counts = np.bincount(predictions.target_rhythm.astype(int), minlength=4)
    assert metrics["test/sinus/n"] == counts[0] and metrics["test/af/n"] == counts[1]
    validation = pd.read_csv(run / "predictions_val.csv").target_rhythm
    if {0, 1} <= set(validation.astype(int)):  # a threshold needs AF and sinus exams in val
        assert 0 <= metrics["test/af_vs_sinus/threshold"] <= 1
    else:
        assert np.isnan(metrics["test/af_vs_sinus/threshold"])

    for folder in (Path(first.paths.output_dir), run):  # the reports of the new tasks
        evaluate(compose_evaluate(f"run={folder}", "dataset_attributes=false",
                                  "bootstrap.n_resamples=20"))
    assert (Path(first.paths.output_dir) / "report" / "scatter_nn_predicted_age.png").is_file()
    bootstrap = pd.read_csv(run / "report" / "bootstrap.csv")
    assert {"sinus", "af", "af_vs_sinus"} <= set(bootstrap.label)
    assert set(pd.read_csv(run / "report" / "calibration.csv").label) == {
        "sinus", "af", "brady", "tachy"}


def test_a_monitor_the_objective_does_not_track_is_refused_before_any_write(compose_train,
                                                                            tmp_path):
    cfg = compose_train("task=age", *SMALL, "task.monitor=val_auroc")
    with pytest.raises(ValueError, match=r"^task.monitor: 'val_auroc' is not tracked by the "
                                         r"Regression objective; choose one of val_loss, "
                                         r"val_mae, val_pearson, val_r2, val_rmse$"):
        train(cfg)
    assert not Path(cfg.paths.output_dir).exists()
