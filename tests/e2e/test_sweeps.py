"""Sweeps from the command line: Optuna search of the task's validation metric, seed ensembles."""

import json

import pytest
import yaml
from helpers.commands import run_in_process
from helpers.configs import CONF_DIR, SHORT_RUN, TASKS
from helpers.runs import run_folders
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

# SHORT_RUN with two training batches and no logger (no test here reads the history)
QUICK_RUN = [*(o for o in SHORT_RUN if not o.startswith("+trainer.limit_train_batches")),
             "+trainer.limit_train_batches=2", "logger=none"]


def _validation_metric(folder, label: str, metric: str) -> float:
    return json.loads((folder / "metrics.json").read_text())["val"][label][metric]


def _config(folder) -> dict:
    return yaml.safe_load((folder / "config.yaml").read_text())


def test_optuna_sweep_maximises_the_task_metric_over_the_trials(tmp_path):
    result = run_in_process("ecgexp", tmp_path, "sweep=optuna", "hydra.sweeper.n_trials=2",
                            *QUICK_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = run_folders(tmp_path / "outputs" / "abnormality" / "multiruns")
    assert len(trials) == 2
    [results_file] = (tmp_path / "outputs").rglob("optimization_results.yaml")
    results = yaml.safe_load(results_file.read_text())

    values = {trial: _validation_metric(trial, "macro", "auroc") for trial in trials}
    best_trial = max(values, key=values.get)  # abnormality: maximise val/macro/auroc
    assert results["best_value"] == pytest.approx(values[best_trial])
    config = _config(best_trial)
    assert results["best_params"] == pytest.approx({
        "optimizer.lr": config["optimizer"]["lr"],
        "optimizer.weight_decay": config["optimizer"]["weight_decay"],
        "model.dropout": config["model"]["dropout"]})
    learning_rates = {_config(trial)["optimizer"]["lr"] for trial in trials}
    assert len(learning_rates) == 2 and all(1e-4 <= lr <= 1e-2 for lr in learning_rates)


# Metrics where higher is better, and where lower is.
HIGHER = {"auroc", "ap", "f1", "accuracy", "r2", "pearson", "challenge_score", "harrell_c"}
LOWER = {"mae", "rmse", "mse", "nll", "loss"}


@pytest.mark.parametrize("task", TASKS)
def test_optuna_direction_follows_the_task_metric(task):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"task={task}", "sweep=optuna"],
                      return_hydra_config=True)
    GlobalHydra.instance().clear()
    metric = cfg.optimized_metric.rsplit("/", 1)[-1]
    assert metric in HIGHER | LOWER, cfg.optimized_metric
    assert cfg.hydra.sweeper.direction == ("maximize" if metric in HIGHER else "minimize")
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.optimized_metric.startswith("val/")


def test_a_misnamed_optimized_metric_names_the_key(tmp_path):
    result = run_in_process("ecgexp", tmp_path, "optimized_metric=val/macro/aurok", *QUICK_RUN)
    assert result.returncode != 0
    assert "optimized_metric" in result.stderr and "val/macro/auroc" in result.stderr


def test_evaluate_multirun_without_runs_names_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_in_process("ecgexp-evaluate", tmp_path, f"multirun={tmp_path / 'empty'}")
    assert result.returncode != 0 and "multirun" in result.stderr and "empty" in result.stderr
