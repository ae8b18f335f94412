"""``ecgexp-evaluate``: the published CODE-test Table 2, run folders of every task, ensembles,
the Challenge export and W&B logging."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.configs import TASKS, compose_evaluate
from helpers.records import FIXTURES
from hydra.utils import instantiate
from matplotlib.image import imread
from omegaconf import OmegaConf

from ecgexp.evaluate import evaluate
from ecgexp.evaluation.report import flatten_report

CODE_TEST = FIXTURES / "code_test"
LABELS = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
PUBLISHED_THRESHOLDS = [0.124, 0.07, 0.05, 0.278, 0.390, 0.174]  # docs/studies.md §3.1
READERS = {"cardio.": "cardiology_residents", "emerg.": "emergency_residents",
           "stud.": "medical_students"}
METRICS = {"Precision": "precision", "Recall": "recall", "Specificity": "specificity",
           "F1 score": "f1"}
FAST = ["bootstrap.n_resamples=100"]


def test_published_table_2_is_reproduced(tmp_path, capsys):
    """The paper's evaluation: seed model_1, the published thresholds, gold standard; the
    human readers' annotations scored against the same gold standard."""
    cfg = compose_evaluate(
        f"predictions={CODE_TEST / 'dnn_predicts/other_seeds/model_1.npy'}",
        f"labels_csv={CODE_TEST / 'annotations/gold_standard.csv'}",
        f"thresholds={PUBLISHED_THRESHOLDS}", f"output_dir={tmp_path / 'report'}",
        *(f"+compare.{name}={CODE_TEST / 'annotations' / f'{name}.csv'}"
          for name in READERS.values()), *FAST)
    evaluate(cfg)
    assert "evaluating 1/1 analyses (binary)  elapsed " in capsys.readouterr().out
    published = pd.read_csv(CODE_TEST / "published_tables" / "scores.csv", header=[0, 1],
                            index_col=0)
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())["test"]
    readers = pd.read_csv(tmp_path / "report" / "reader_scores.csv").set_index(
        ["predictor", "label"])
    checked = 0
    for column, metric in METRICS.items():
        for label in LABELS:
            assert round(report[label][metric], 3) == published.loc[label, (column, "DNN")]
            for short, name in READERS.items():
                assert (round(readers.loc[(name, label), metric], 3)
                        == published.loc[label, (column, short)]), (name, label, metric)
            checked += 1 + len(READERS)
    assert checked == 96
    agreement = pd.read_csv(tmp_path / "report" / "agreement.csv")
    assert len(agreement) == 18 and agreement.kappa.between(-1, 1).all()


def assert_real_png(path: Path):
    assert path.stat().st_size > 5000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0


def expected_files(objective) -> list[str]:
    """The report files each analysis the objective names writes (README, Evaluation)."""
    files = ["metrics.json", "metrics.csv", "metrics.md"]
    if "strata" in objective.analyses:
        files.append("strata.csv")
    if "binary" in objective.analyses:
        files += ["bootstrap.csv", "bootstrap.md", "calibration.csv",
                  *(f"reliability_{label}.png" for label in objective.target_columns)]
    if "regression" in objective.analyses:
        name = objective.target_column
        files += ["bootstrap.csv", f"scatter_{name}.png", f"bland_altman_{name}.png"]
    if "classes" in objective.analyses:
        files += ["bootstrap.csv", "calibration.csv"]
    if "survival" in objective.analyses:
        files += ["bootstrap.csv", "km_risk_groups.csv", "km_risk_groups.png"]
        if objective.survival_columns:
            files.append("survival_calibration.csv")
    return files


@pytest.mark.parametrize("task", TASKS)
def test_every_task_run_folder_gets_a_report(task_run, tmp_path, task):
    run = task_run(task, into=tmp_path / task)
    objective = instantiate(OmegaConf.load(run / "config.yaml").task.objective)
    files = expected_files(objective)
    evaluate(compose_evaluate(f"run={run}", *FAST))
    report = run / "report"
    for name in files:
        assert (report / name).is_file(), name
    test = pd.read_csv(run / "predictions_test.csv")
    scored = objective.binary_columns if "binary" in objective.analyses else []
    for label in scored:  # ROC/PR wherever the test split has both classes
        assert (report / f"roc_pr_{label}.png").is_file() == (
            test[f"target_{label}"].nunique() == 2), label
    for png in report.glob("*.png"):
        assert_real_png(png)
    recomputed = flatten_report(json.loads((report / "metrics.json").read_text()))
    original = flatten_report(json.loads((run / "metrics.json").read_text()))
    assert recomputed == pytest.approx(original, rel=1e-4, abs=1e-6, nan_ok=True)


def test_ensemble_is_the_mean_of_its_members(task_run, tmp_path):
    runs = [task_run("chagas", *([f"seed={seed}"] if seed else []),
                     into=tmp_path / f"seed{seed}") for seed in (0, 1)]
    evaluate(compose_evaluate(f"runs=[{runs[0]},{runs[1]}]", *FAST,
                              f"output_dir={tmp_path / 'ensemble'}"))
    members = [pd.read_csv(run / "predictions_test.csv").set_index("exam_id") for run in runs]
    ensemble = pd.read_csv(tmp_path / "ensemble" / "predictions_test.csv").set_index("exam_id")
    expected = (members[0].score_chagas + members[1].score_chagas.loc[members[0].index]) / 2
    np.testing.assert_allclose(ensemble.score_chagas.loc[expected.index], expected, rtol=1e-6)
    spread = pd.read_csv(tmp_path / "ensemble" / "ensemble_members.csv").set_index("metric")
    auroc = [json.loads((run / "metrics.json").read_text())["test"]["chagas"]["auroc"]
             for run in runs]
    assert spread.loc["test/chagas/auroc", "mean"] == pytest.approx(np.mean(auroc))


def test_chagas_predictions_export_in_challenge_format(task_run, tmp_path):
    run = task_run("chagas", into=tmp_path / "chagas")
    export = tmp_path / "challenge_outputs"
    evaluate(compose_evaluate(f"run={run}", *FAST, f"challenge_export={export}"))
    test = pd.read_csv(run / "predictions_test.csv")
    files = sorted(export.glob("*.txt"))
    assert len(files) == len(test)
    first = test.iloc[0]
    exam_id = int(first.exam_id)
    lines = (export / f"{exam_id}.txt").read_text().splitlines()
    assert lines[0] == str(exam_id)
    assert lines[1] in ("# Chagas label: True", "# Chagas label: False")
    assert float(lines[2].removeprefix("# Chagas probability: ")) == pytest.approx(
        first.score_chagas, abs=1e-6)


def test_report_is_logged_to_wandb_offline(task_run, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = task_run("age", into=tmp_path / "age")
    evaluate(compose_evaluate(f"run={run}", *FAST, "report_logger=wandb"))
    assert len(list((run / "report" / "wandb").glob("offline-run-*"))) == 1


def test_missing_inputs_name_the_keys(tmp_path):
    with pytest.raises(ValueError, match="run=<run folder>"):
        evaluate(compose_evaluate())
    with pytest.raises(ValueError, match="run: .* is not a run folder"):
        evaluate(compose_evaluate(f"run={tmp_path}"))
