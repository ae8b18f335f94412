"""``ecgexp-compare``: two runs of one split compared exam by exam; values checked against
each run's own metrics.json and against accuracies and Holm adjustments computed here; runs
that predicted different exams refused with the counts. Calibration and net benefit per run
and label, a sweep's member table, Harrell's C of survival runs (against lifelines), the W&B
run (read back from its offline file) and one-line refusals of bad settings."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers.configs import compose_config
from helpers.records import FIXTURES
from scipy.stats import chi2
from sklearn.metrics import roc_auc_score

from ecgexp.compare import compare
from ecgexp.errors import UserError
from ecgexp.evaluation.paired import pairwise
from ecgexp.evaluation.report import flatten_report
from ecgexp.metrics.calibration import calibration_slope, expected_calibration_error
from ecgexp.metrics.decision_curve import net_benefit, treat_all
from ecgexp.tasks.survival import CoxSurvival


def _compare(root, *runs, extra=()):
    cfg = compose_config("compare", f"runs=[{','.join(map(str, runs))}]",
                         f"output_dir={root / 'cmp'}", "bootstrap.n_resamples=50", *extra)
    compare(cfg)
    return pd.read_csv(root / "cmp" / "comparison.csv")


@pytest.mark.parametrize("task, column", [("chagas", "target_chagas"),
                                          ("survival", "target_death")])
def test_runs_scored_against_other_labels_are_refused(task_run, tmp_path, task, column):
    """Flipped labels (an event changed) on the shared exams: not compared, the exam named."""
    a = task_run(task, into=tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    test = pd.read_csv(b / "predictions_test.csv")
    test.loc[[2, 7], column] = 1 - test.loc[[2, 7], column]
    test.to_csv(b / "predictions_test.csv", index=False)
    first = sorted(test.exam_id, key=str).index(test.exam_id[2])
    order = sorted(test.exam_id.tolist(), key=str)
    shown = min(order.index(test.exam_id[2]), order.index(test.exam_id[7]))
    with pytest.raises(UserError, match=rf"^runs: '{b}' and '{a}' disagree on {column} for 2 "
                                        rf"of their {len(test)} shared exams \(exam_id "
                                        rf"{order[shown]}: "):
        _compare(tmp_path, a, b)
    assert first >= 0 and not (tmp_path / "cmp").exists()


def test_scores_missing_in_a_file_are_named_not_called_other_splits(task_run, tmp_path):
    a = task_run("chagas", into=tmp_path / "a")
    table = pd.read_csv(a / "predictions_test.csv")
    table.loc[[1, 4], "score_chagas"] = np.nan
    table.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(UserError, match=rf"^runs: '{tmp_path / 'b.csv'}' has 2 exams without a "
                                        rf"score or a target \(NaN\) of its {len(table)}"):
        _compare(tmp_path, a, tmp_path / "b.csv")


@pytest.mark.parametrize("override, message", [
    ("thresholds=[2,0.5]", "error: thresholds: [2, 0.5] is not a list, each a number in [0, 1]"),
    ("split=val", None),  # the split group: compared_split names the split compared
])
def test_compare_settings_by_their_keys(task_run, tmp_path, override, message):
    from helpers.commands import run_in_process

    a = task_run("chagas", into=tmp_path / "a")
    if message:
        result = run_in_process("ecgexp-compare", tmp_path, f"runs=[{a},{a}]", override)
        assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
        return
    result = run_in_process("ecgexp-compare", tmp_path, f"runs=[{a},{a}]", "compared_split=val",
                            "bootstrap.n_resamples=20", f"output_dir={tmp_path / 'cmp'}")
    assert result.returncode == 0, result.stderr[-2000:]
    compared = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    auroc = compared[compared.metric == "auroc"].iloc[0]
    val = json.loads((a / "metrics.json").read_text())["val"]["chagas"]["auroc"]
    assert auroc.value_a == pytest.approx(val)


def test_two_runs_of_one_split(task_run, tmp_path):
    a = task_run("abnormality", into=tmp_path / "a")
    b = task_run("abnormality", "seed=1", into=tmp_path / "b")  # another seed, same split
    table = _compare(tmp_path, a, b)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (a, b)]
    auroc = table[table.test == "delong"].set_index("target")
    assert table[table.metric == "auroc"].target.tolist() == [*auroc.index, "macro"]
    for label, row in auroc.iterrows():
        assert row.value_a == pytest.approx(metrics[0]["test"][label]["auroc"])
        assert row.value_b == pytest.approx(metrics[1]["test"][label]["auroc"])
        assert row.difference == pytest.approx(row.value_a - row.value_b)
        assert row.lower <= row.difference + 1e-9 and row.difference - 1e-9 <= row.upper
    # Holm across the labels: the smallest p times the number of labels, never below p
    m = len(auroc)
    assert auroc.p_holm.min() == pytest.approx(min(1.0, m * auroc.p_value.min()))
    assert (auroc.p_holm >= auroc.p_value - 1e-12).all() and (auroc.p_holm <= 1).all()
    # every other metric of the report (macro too) as each run's metrics.json has it
    bootstrap = table[table.test == "bootstrap"]
    assert {"ap", "precision", "recall", "specificity", "f1"} <= set(bootstrap.metric)
    for row in bootstrap.itertuples():
        assert row.value_a == pytest.approx(metrics[0]["test"][row.target][row.metric])
        assert row.value_b == pytest.approx(metrics[1]["test"][row.target][row.metric])
        assert row.lower <= row.difference + 1e-9 <= row.upper + 2e-9

    tests = [pd.read_csv(run / "predictions_test.csv") for run in (a, b)]
    accuracy = table[table.metric == "accuracy"].set_index("target")
    for label, row in accuracy.iterrows():
        values = []
        for test, metric in zip(tests, metrics):
            labels = test[f"score_{label}"] >= metric["val"][label]["threshold"]
            values.append(np.mean(labels == test[f"target_{label}"].astype(bool)))
        assert (row.value_a, row.value_b) == pytest.approx(tuple(values))


def test_runs_of_other_exams_are_refused_with_the_counts(task_run, tmp_path):
    a = task_run("chagas", into=tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    test = pd.read_csv(b / "predictions_test.csv")
    test.iloc[5:].to_csv(b / "predictions_test.csv", index=False)  # 5 exams fewer
    with pytest.raises(UserError, match=rf"^runs: the runs share {len(test) - 5} exams, but "
                                        rf"'{a}' predicted {len(test)} "):
        _compare(tmp_path, a, b)
    assert not (tmp_path / "cmp").exists()
    table = _compare(tmp_path / "partial", a, b, extra=["allow_partial=true"])
    row = table[table.metric == "auroc"].iloc[0]
    assert row.difference == 0 and row.p_value == 1.0  # the same model on the shared exams


CODE_TEST = FIXTURES / "code_test"
# Ribeiro et al. (2020): max-F1 thresholds chosen on validation, 1dAVb, RBBB, LBBB, SB, AF, ST
PUBLISHED_THRESHOLDS = [0.124, 0.07, 0.05, 0.278, 0.390, 0.174]


def test_published_code_test_outputs_are_compared(tmp_path):
    """Two published seeds of the CODE-test network (other_seeds/model_1, the paper's, and
    model.npy) on the 827 gold-standard exams: AUROCs against scikit-learn, the paper's
    model's precision, recall, specificity and F1 at the published thresholds against its
    Table 2, accuracies and McNemar's p from the discordant exams, counted here."""
    first, second = (CODE_TEST / "dnn_predicts" / "other_seeds" / "model_1.npy",
                     CODE_TEST / "dnn_predicts" / "model.npy")
    gold = CODE_TEST / "annotations" / "gold_standard.csv"
    thresholds = f"thresholds=[{','.join(map(str, PUBLISHED_THRESHOLDS))}]"
    table = _compare(tmp_path, first, second, extra=[f"labels_csv={gold}", thresholds])
    truth = pd.read_csv(gold)
    scores = [np.load(first), np.load(second)]
    assert list(table.target.unique()) == [*truth.columns, "macro"]
    published = pd.read_csv(CODE_TEST / "published_tables" / "scores.csv", header=[0, 1],
                            index_col=0)
    for metric, column in [("precision", "Precision"), ("recall", "Recall"),
                           ("specificity", "Specificity"), ("f1", "F1 score")]:
        values = table[table.metric == metric].set_index("target").value_a
        np.testing.assert_allclose(values[truth.columns].round(3),
                                   published[(column, "DNN")][truth.columns], atol=1e-9)
    for column, label in enumerate(truth.columns):
        rows = table[table.target == label].set_index("metric")
        target = truth[label].to_numpy()
        aurocs = [roc_auc_score(target, s[:, column]) for s in scores]
        assert (rows.loc["auroc", "value_a"], rows.loc["auroc", "value_b"]) == \
            pytest.approx(aurocs, abs=1e-12)
        right = [(s[:, column] >= PUBLISHED_THRESHOLDS[column]) == target for s in scores]
        assert (rows.loc["accuracy", "value_a"], rows.loc["accuracy", "value_b"]) == \
            pytest.approx([r.mean() for r in right])
        b, c = np.sum(right[0] & ~right[1]), np.sum(~right[0] & right[1])
        p_value = chi2.sf((b - c) ** 2 / (b + c), 1) if b + c else 1.0
        assert rows.loc["accuracy", "p_value"] == pytest.approx(p_value)
    # Holm by hand over the six labels' F1 p-values; the macro row is a test of its own
    f1 = table[table.metric == "f1"].set_index("target")
    p_values = f1.p_value[truth.columns].to_numpy()
    order = np.argsort(p_values)
    stepped = np.maximum.accumulate(np.minimum(1, (6 - np.arange(6)) * p_values[order]))
    expected = np.empty(6)
    expected[order] = stepped
    np.testing.assert_allclose(f1.p_holm[truth.columns], expected, atol=1e-12)
    assert f1.loc["macro", "p_holm"] == f1.loc["macro", "p_value"]
    calibration = pd.read_csv(tmp_path / "cmp" / "calibration.csv")
    assert len(calibration) == 12 and set(calibration.run) == {str(first), str(second)}
    assert len(list((tmp_path / "cmp").glob("decision_curve_*.png"))) == 6


def test_a_run_against_a_predictions_file(task_run, tmp_path):
    """A run and a copy of its own test predictions as a file: no difference; the file has no
    validation thresholds, so McNemar needs thresholds= (then for both)."""
    run = task_run("abnormality", into=tmp_path / "a")
    copy = tmp_path / "copy.csv"
    shutil.copy(run / "predictions_test.csv", copy)
    table = _compare(tmp_path, run, copy)
    assert set(table.metric) == {"auroc", "ap"}  # no threshold for the file's F1, ...
    assert (table.difference == 0).all() and (table.p_value == 1).all()
    labels = table[table.test == "delong"].target.tolist()
    table = _compare(tmp_path / "fixed", run, copy,
                     extra=[f"thresholds=[{','.join(['0.3'] * len(labels))}]"])
    accuracy = table[table.metric == "accuracy"]
    assert len(accuracy) == len(labels) and (accuracy.difference == 0).all()
    with pytest.raises(UserError, match=rf"^thresholds: 2 values for the {len(labels)} labels"):
        _compare(tmp_path / "bad", run, copy, extra=["thresholds=[0.3,0.4]"])


@pytest.mark.parametrize("entry, message", [
    ("absent.csv", r"^runs: '.*absent\.csv' is neither a run folder nor a predictions file"),
    ("short.npy", r"^runs: '.*short\.npy' has shape \(3, 6\), but .*gold_standard\.csv has 827 "
                  r"rows and 6 label columns"),
])
def test_bad_prediction_files_are_one_line(entry, message, tmp_path):
    np.save(tmp_path / "short.npy", np.full((3, 6), 0.5))
    gold = CODE_TEST / "annotations" / "gold_standard.csv"
    model = CODE_TEST / "dnn_predicts" / "model.npy"
    with pytest.raises(UserError, match=message):
        _compare(tmp_path, model, tmp_path / entry, extra=[f"labels_csv={gold}"])
    assert not (tmp_path / "cmp").exists()


def test_two_survival_runs_compare_their_c_index(task_run, tmp_path):
    """Harrell's C of each run against scikit-survival's on its own predictions; run b is
    run a with noisier risk scores (no second training)."""
    from sksurv.metrics import concordance_index_censored

    a = task_run("survival", into=tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    test = pd.read_csv(b / "predictions_test.csv")
    noise = np.random.default_rng(0).normal(0, test.risk_score.std(), len(test))
    test.assign(risk_score=test.risk_score + noise).to_csv(b / "predictions_test.csv",
                                                           index=False)
    table = _compare(tmp_path, a, b)
    row = table.set_index("metric").loc["harrell_c"]
    expected = []
    for run in (a, b):
        test = pd.read_csv(run / "predictions_test.csv")
        expected.append(concordance_index_censored(test.target_death.astype(bool),
                                                   test.target_timey, test.risk_score)[0])
    assert (row.value_a, row.value_b) == pytest.approx(tuple(expected), abs=1e-12)
    assert row.difference == pytest.approx(expected[0] - expected[1], abs=1e-12)
    assert row.lower <= row.difference <= row.upper and 0 <= row.p_value <= 1
    assert row.target == "death" and row.test == "bootstrap"



def test_net_benefit_of_a_hand_computed_case():
    """Six exams, three positive; treated: p >= pt. At 0.2: TP 3, FP 2 -> 3/6 - 2/6 * 0.25;
    at 0.5: TP 2, FP 1 -> 2/6 - 1/6; at 0.6 (a tie, treated): 2/6 - 1/6 * 1.5; at 0.85: 1/6."""
    p = np.array([0.9, 0.8, 0.6, 0.4, 0.3, 0.1])
    y = np.array([1, 1, 0, 1, 0, 0])
    thresholds = np.array([0.2, 0.5, 0.6, 0.85])
    assert net_benefit(p, y, thresholds) == pytest.approx([5 / 12, 1 / 6, 1 / 12, 1 / 6])
    # treat all: prevalence 1/2 - 1/2 * pt / (1 - pt)
    assert treat_all(y, thresholds) == pytest.approx([0.375, 0.0, -0.25, 0.5 - 0.5 * 0.85 / 0.15])
    with pytest.raises(ValueError, match=r"^decision curve: thresholds must .* in \(0, 1\)"):
        net_benefit(p, y, [0.0, 0.5])


def _read_tables(out):
    return {name: pd.read_csv(out / f"{name}.csv")
            for name in ("comparison", "calibration", "decision_curve")}


def test_calibration_and_decision_curves_of_each_run(task_run, tmp_path):
    """Every run's calibration (against the module's functions on its own predictions) and
    net benefit (counted here exam by exam) per label, a figure per label, every table also
    as Markdown."""
    a = task_run("abnormality", into=tmp_path / "a")
    b = task_run("abnormality", "seed=1", into=tmp_path / "b")
    _compare(tmp_path, a, b, extra=["decision_curve.thresholds.step=0.2"])
    out = tmp_path / "cmp"
    tables = _read_tables(out)
    predictions = {str(run): pd.read_csv(run / "predictions_test.csv") for run in (a, b)}
    labels = [c.removeprefix("score_") for c in predictions[str(a)] if c.startswith("score_")]
    for name in tables:
        assert (out / f"{name}.md").read_text().startswith("| ")
    assert {p.name for p in out.glob("*.png")} == {f"decision_curve_{n}.png" for n in labels}

    calibration = tables["calibration"].set_index(["run", "label"])
    assert len(calibration) == 2 * len(labels)
    for (run, label), row in calibration.iterrows():
        p = predictions[run][f"score_{label}"].to_numpy()
        y = predictions[run][f"target_{label}"].to_numpy().astype(int)
        assert row.ece == pytest.approx(expected_calibration_error(p, y, 10))
        assert (row.slope, row.intercept) == pytest.approx(
            tuple(calibration_slope(p, y).values()))

    curves = tables["decision_curve"]
    assert sorted(curves.threshold.unique()) == pytest.approx([0.01, 0.21, 0.41, 0.61, 0.81])
    assert set(curves.run) == {str(a), str(b), "treat all"}
    for row in curves.itertuples():
        if row.run == "treat all":  # every exam treated
            test = predictions[str(a)]
            treated = test[f"score_{row.label}"] >= 0
        else:
            test = predictions[row.run]
            treated = test[f"score_{row.label}"] >= row.threshold
        positive = test[f"target_{row.label}"] == 1
        odds = row.threshold / (1 - row.threshold)
        expected = ((treated & positive).sum() - (treated & ~positive).sum() * odds) / len(test)
        assert row.net_benefit == pytest.approx(expected)


def test_a_sweep_is_compared_member_by_member(task_run, tmp_path):
    """``multirun=``: a seed sweep's members (two tiny runs in <sweep>/<job> with the
    overrides Hydra saves) in members.csv with the override that differs and their metrics,
    compared with job 0 (never averaged)."""
    sweep = tmp_path / "sweep"
    for job, seed in ((0, 0), (1, 1)):
        member = task_run("abnormality", *([f"seed={seed}"] if seed else []),
                          into=sweep / str(job))
        (member / ".hydra").mkdir()
        (member / ".hydra" / "overrides.yaml").write_text(
            f"- task=abnormality\n- +trainer.limit_train_batches=2\n- seed={seed}\n")
    cfg = compose_config("compare", f"multirun={sweep}", f"output_dir={tmp_path / 'cmp'}",
                         "bootstrap.n_resamples=20", "decision_curve.thresholds.step=0.5")
    compare(cfg)
    members = pd.read_csv(tmp_path / "cmp" / "members.csv")
    metric_columns = [c for c in members if c.startswith("test/")]
    assert list(members.columns) == ["run", "seed", *metric_columns]
    assert members.run.tolist() == [str(sweep / "0"), str(sweep / "1")]
    assert members.seed.tolist() == [0, 1]
    for row, job in zip(members.itertuples(index=False), ("0", "1")):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        expected = flatten_report({"test": metrics["test"]})
        assert dict(zip(metric_columns, row[2:])) == pytest.approx(expected, nan_ok=True)
    comparison = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert set(comparison.model_a) == {str(sweep / "0")}
    assert set(comparison.model_b) == {str(sweep / "1")}


def test_survival_pairs_compare_every_survival_metric():
    """``pairwise`` on two synthetic survival tables: each run's Harrell's C against
    lifelines' ``concordance_index`` (higher risk: shorter time) with the difference's paired
    bootstrap; Uno's C and the time-dependent AUROCs against scikit-survival."""
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc

    rng = np.random.default_rng(0)
    n = 300
    hazard = rng.normal(size=n)
    time = rng.exponential(np.exp(-hazard))
    event = (rng.random(n) < 0.7).astype(int)
    a = pd.DataFrame({"exam_id": range(n), "risk_score": hazard + rng.normal(0, 0.3, n),
                      "target_timey": time, "target_death": event})
    b = a.assign(risk_score=rng.normal(size=n))  # uninformative
    objective = CoxSurvival("timey", "death", horizons=[0.5, 1.0])
    table = pairwise(a, b, objective, {}, {}, (200, 0, 0.95)).set_index("metric")
    assert set(table.target) == {"death"} and set(table.test) == {"bootstrap"}
    assert {"harrell_c", "uno_c", "auroc_at_0.5", "auroc_at_1"} <= set(table.index)
    row = table.loc["harrell_c"]
    expected = [concordance_index(time, -t.risk_score, event) for t in (a, b)]
    assert (row.value_a, row.value_b) == pytest.approx(expected, abs=1e-12)
    assert row.difference == pytest.approx(expected[0] - expected[1], abs=1e-12)
    assert row.lower <= row.difference <= row.upper and row.p_value < 0.05
    survival = np.array(list(zip(event.astype(bool), time)), dtype=[("e", bool), ("t", float)])
    for t, column in ((a, "value_a"), (b, "value_b")):
        uno = concordance_index_ipcw(survival, survival, t.risk_score.to_numpy(), tau=1.0)[0]
        assert table.loc["uno_c", column] == pytest.approx(uno, abs=1e-10)
        auc, _ = cumulative_dynamic_auc(survival, survival, t.risk_score.to_numpy(), [0.5, 1.0])
        assert table.loc["auroc_at_1", column] == pytest.approx(auc[1], abs=1e-10)


def test_regression_pairs_compare_every_regression_metric():
    """``pairwise`` on two age predictions of the same exams: MAE, RMSE and Pearson's r of
    each run against numpy; the better run's MAE advantage is significant, and the
    bootstrap p-values of the metrics are Holm-corrected each on its own (one target)."""
    from ecgexp.tasks.regression import Regression

    rng = np.random.default_rng(1)
    n = 400
    age = rng.uniform(20, 90, n)
    a = pd.DataFrame({"exam_id": range(n), "target_age": age,
                      "predicted_age": age + rng.normal(0, 5, n)})
    b = a.assign(predicted_age=age + rng.normal(0, 10, n))
    table = pairwise(a, b, Regression(target_column="age"), {}, {}, (300, 0, 0.95))
    table = table.set_index("metric")
    assert set(table.target) == {"age"} and set(table.test) == {"bootstrap"}
    assert {"mae", "rmse", "r2", "pearson"} <= set(table.index) and "n" not in table.index
    for t, column in ((a, "value_a"), (b, "value_b")):
        error = t.predicted_age.to_numpy() - age
        assert table.loc["mae", column] == pytest.approx(np.abs(error).mean(), abs=1e-9)
        assert table.loc["rmse", column] == pytest.approx(np.sqrt((error**2).mean()), abs=1e-9)
        assert table.loc["pearson", column] == pytest.approx(
            np.corrcoef(t.predicted_age, age)[0, 1], abs=1e-9)
    mae = table.loc["mae"]
    assert mae.difference == pytest.approx(mae.value_a - mae.value_b, abs=1e-9)
    assert mae.upper < 0 and mae.p_value < 0.01
    assert (table.p_holm == table.p_value).all()  # one target per metric: nothing to correct


def test_the_comparison_is_a_wandb_run(task_run, tmp_path, monkeypatch):
    """``report_logger=wandb`` (offline): a run of job type ``compare`` named by
    ``wandb.name``, holding the tables and the decision-curve figure."""
    from helpers.wandb_log import items, of_type, wandb_records

    for name in ("DIR", "DATA_DIR", "CACHE_DIR", "CONFIG_DIR"):
        monkeypatch.setenv(f"WANDB_{name}", str(tmp_path / f"wandb_{name.lower()}"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    a = task_run("chagas", into=tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    table = _compare(tmp_path, a, b, extra=["report_logger=wandb", "wandb.name=cmp-test",
                                            "wandb.project=ecgexp-test",
                                            "decision_curve.thresholds.step=0.5"])
    records = wandb_records(tmp_path / "cmp")
    (run,) = of_type(records, "run")
    assert (run.job_type, run.display_name, run.project) == ("compare", "cmp-test",
                                                             "ecgexp-test")
    logged = {}
    for history in of_type(records, "history"):
        logged.update(items(history.item))
    assert logged["comparison/_type"] == "table-file"
    assert (logged["comparison/nrows"], logged["comparison/ncols"]) == table.shape
    assert logged["calibration/nrows"] == 2 and logged["decision_curve/_type"] == "table-file"
    (label,) = pd.read_csv(tmp_path / "cmp" / "calibration.csv").label.unique()
    assert logged[f"plots/decision_curve_{label}/_type"] == "image-file"


@pytest.mark.parametrize(("overrides", "message"), [
    (["runs=[a,b]", "multirun=sweep"], "^runs: give runs=.* or multirun=.*, not both"),
    (["runs=[a,b]", "decision_curve.thresholds.step=0"],
     r"^decision_curve.thresholds.step: 0 is not a number between 0 and 1; set "),
    (["runs=[a,b]", "decision_curve.thresholds.start=0.6", "decision_curve.thresholds.stop=0.4"],
     "^decision_curve.thresholds: stop 0.4 is below start 0.6; set "),
    (["runs=[a,b]", "calibration.n_bins=0"], "^calibration.n_bins: 0 is not a whole number"),
    (["runs=[a,b]", "report_logger=mlflow"], "^report_logger: 'mlflow' is not one of wandb"),
    (["multirun=absent"], "^multirun: no folder 'absent'"),
    (["runs=[a]"], "^runs: give two or more run folders"),
])
def test_bad_settings_are_one_line(overrides, message, tmp_path):
    cfg = compose_config("compare", *overrides, f"output_dir={tmp_path / 'cmp'}")
    with pytest.raises(UserError, match=message):
        compare(cfg)
    assert not (tmp_path / "cmp").exists()


def test_sweep_members_without_saved_overrides_are_refused(tmp_path):
    for job in ("0", "1"):
        (tmp_path / "sweep" / job).mkdir(parents=True)
        (tmp_path / "sweep" / job / "metrics.json").write_text("{}")
    cfg = compose_config("compare", f"multirun={tmp_path / 'sweep'}",
                         f"output_dir={tmp_path / 'cmp'}")
    with pytest.raises(UserError, match=r"^multirun: '.*/sweep/0' has no \.hydra/overrides"):
        compare(cfg)
