"""``ecgexp-compare``: two runs of one split compared exam by exam; values checked against
each run's own metrics.json and against accuracies and Holm adjustments computed here; runs
that predicted different exams refused with the counts."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config

from ecgexp.compare import compare
from ecgexp.errors import UserError


def _compare(root, *runs, extra=()):
    cfg = compose_config("compare", f"runs=[{','.join(map(str, runs))}]",
                         f"output_dir={root / 'cmp'}", "bootstrap.n_resamples=50", *extra)
    compare(cfg)
    return pd.read_csv(root / "cmp" / "comparison.csv")


def test_two_runs_of_one_split(task_run, tmp_path):
    a = task_run("abnormality", into=tmp_path / "a")
    b = task_run("abnormality", "seed=1", into=tmp_path / "b")  # another seed, same split
    table = _compare(tmp_path, a, b)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (a, b)]
    auroc = table[table.metric == "auroc"].set_index("target")
    for label, row in auroc.iterrows():
        assert row.value_a == pytest.approx(metrics[0]["test"][label]["auroc"])
        assert row.value_b == pytest.approx(metrics[1]["test"][label]["auroc"])
        assert row.difference == pytest.approx(row.value_a - row.value_b)
        assert row.lower <= row.difference + 1e-9 and row.difference - 1e-9 <= row.upper
    # Holm across the labels: the smallest p times the number of labels, never below p
    m = len(auroc)
    assert auroc.p_holm.min() == pytest.approx(min(1.0, m * auroc.p_value.min()))
    assert (auroc.p_holm >= auroc.p_value - 1e-12).all() and (auroc.p_holm <= 1).all()

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
