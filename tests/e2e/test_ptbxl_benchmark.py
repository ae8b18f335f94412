"""The PTB-XL benchmark by experiment name (``experiment=ptbxl_<set>``) on a PTB-XL folder
written for the tests (tests/helpers/ptbxl.py): the real PTB-XL records among the CinC 2021
test records and noise records, in PTB-XL's layout. Their labels against the statements of
their own headers, the 100 Hz signals against the MATLAB files, the benchmark's folds and
label sets, a short run of ``experiment=ptbxl_all model=xresnet1d101``, and a two-model sweep
ending in one comparison table, each model against the best."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.commands import run_in_process
from helpers.configs import compose_in
from helpers.ptbxl import NOISE_STATEMENTS, real_records, write_ptbxl
from helpers.records import FIXTURES
from hydra.utils import instantiate
from scipy import signal as sps

from ecgexp.api import load_model
from ecgexp.data.record_source import RecordReader
from ecgexp.models.windows import SlidingWindows

QUICK = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1", "loader.num_workers=0",
         "loader.batch_size=8", "callbacks.progress_bar=null", "logger=none"]


@pytest.fixture(scope="module")
def ptbxl(tmp_path_factory):
    return write_ptbxl(tmp_path_factory.mktemp("ptb-xl"))


def test_the_label_sets_folds_and_records_of_the_benchmark(ptbxl, tmp_path):
    statements = pd.read_csv(FIXTURES / "ptbxl" / "scp_statements.csv", index_col=0)
    rhythm = set(statements.index[statements.rhythm == 1])
    cfg = compose_in(tmp_path, "experiment=ptbxl_rhythm", f"dataset.path={ptbxl}")
    assert set(cfg.task.objective.target_columns) == rhythm and len(rhythm) == 12
    source = instantiate(cfg.dataset)
    table = source.exam_table(*source.records()).set_index("exam_id")
    for ecg_id, record in real_records().items():  # statements from their own # Dx: headers
        assert {s for s in rhythm if table.loc[ecg_id, s] == 1} == record["statements"] & rhythm
    unlabelled = sum(1 for i in range(30) if not set(NOISE_STATEMENTS[i % 7]) & rhythm)
    assert len(table) == 10 + 30 - unlabelled  # dataset.drop_unlabelled
    split = source._split(table.reset_index())
    assert dict(zip(table.index, split))[6008] == "val" and dict(zip(table.index, split))[
        6009] == "test"  # strat_fold 9 and 10
    # The 100 Hz record as read: the MATLAB file's samples resampled by 1/5 here, mV.
    root, names = source.records()
    row = names.index("records100/06000/06000_lr")
    read = RecordReader(root, names, source.pipeline).read(row)
    expected = sps.resample_poly(real_records()[6000]["signal"], 1, 5)
    assert read.shape == (1000, 12)
    np.testing.assert_allclose(read, expected, atol=1e-3)  # 16-bit at 1000 adu/mV

    for level, count in {"all": 71, "diagnostic": 44, "subdiagnostic": 23,
                         "superdiagnostic": 5, "form": 19}.items():
        cfg = compose_in(tmp_path, f"experiment=ptbxl_{level}", f"dataset.path={ptbxl}")
        if level == "all":
            expected_columns = set(statements.index)
        elif level in ("subdiagnostic", "superdiagnostic"):
            column = "diagnostic_subclass" if level == "subdiagnostic" else "diagnostic_class"
            expected_columns = set(statements[column].dropna())
        else:
            expected_columns = set(statements.index[statements[level] == 1])
        assert set(cfg.task.objective.target_columns) == expected_columns
        assert len(expected_columns) == count, level


# The benchmark's leaderboard (github.com/helme/ecg_ptbxl_benchmarking README), test macro AUROC.
LEADERBOARD = {
    "all": {"inception1d": 0.925, "xresnet1d101": 0.925, "resnet1d_wang": 0.919,
            "fcn_wang": 0.918, "lstm_bidir": 0.914, "lstm": 0.907},
    "rhythm": {"xresnet1d101": 0.957, "inception1d": 0.953, "lstm": 0.953, "lstm_bidir": 0.949,
               "resnet1d_wang": 0.946, "fcn_wang": 0.931},
}


def test_the_experiments_hold_the_benchmarks_settings_and_numbers(ptbxl, tmp_path):
    """fastai_model's defaults: 2.5 s input at 100 Hz, validation windows every input // 2,
    max aggregation, batch 128, lr 1e-2, weight decay 1e-2, 50 epochs; folds 1-8 / 9 / 10."""
    from helpers.configs import CONF_DIR

    cfg = compose_in(tmp_path, "experiment=ptbxl_rhythm", f"dataset.path={ptbxl}")
    assert cfg.preprocessing.sampling_rate == cfg.dataset.sampling_rate == 100
    assert cfg.dataset.n_samples == 1000 and cfg.preprocessing.baseline_removal is False
    assert dict(cfg.model.crop) == {"window": 250, "stride": 125, "aggregate": "max"}
    assert (cfg.loader.batch_size, cfg.optimizer.lr, cfg.optimizer.weight_decay,
            cfg.trainer.max_epochs) == (128, 1e-2, 1e-2, 50)
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.dataset.drop_unlabelled
    assert {k: list(v) for k, v in cfg.dataset.folds.items()} == {
        "train": [1, 2, 3, 4, 5, 6, 7, 8], "val": [9], "test": [10]}
    for level, published in LEADERBOARD.items():
        header = (CONF_DIR / "experiment" / f"ptbxl_{level}.yaml").read_text()
        rows = dict(re.findall(r"^#   (\w+) +(0\.\d{3})$", header, re.MULTILINE))
        assert {model: float(auroc) for model, auroc in rows.items()} == published


def test_ptbxl_all_trains_xresnet1d101_on_crops_and_tests_on_windows(ptbxl, tmp_path):
    from ecgexp.train import train

    cfg = compose_in(tmp_path, "experiment=ptbxl_all", "model=xresnet1d101",
                     f"dataset.path={ptbxl}", *QUICK)
    metrics = train(cfg)
    test = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    assert len([c for c in test if c.startswith("score_")]) == 71
    database = pd.read_csv(ptbxl / "ptbxl_database.csv")  # fold 10, with a statement
    labelled = database.scp_codes.map(ast.literal_eval).map(bool)
    assert set(test.exam_id) == set(database.ecg_id[(database.strat_fold == 10) & labelled])
    assert len(test) == 4 and "test/macro/auroc" in metrics
    net = load_model(tmp_path / "run").net
    assert isinstance(net, SlidingWindows) and type(net.net).__name__ == "XResNet1d"
    assert (net.window, net.stride, net.n_windows, net.aggregate) == (250, 125, 7, "max")


def test_a_sweep_over_two_models_ends_in_one_comparison_against_the_best(ptbxl, tmp_path):
    result = run_in_process("ecgexp", tmp_path, "-m", "experiment=ptbxl_rhythm",
                            f"dataset.path={ptbxl}", "model=fcn_wang,resnet1d_wang", *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    [sweep] = (tmp_path / "outputs" / "statements" / "multiruns").iterdir()
    out = tmp_path / "comparison"
    compared = run_in_process("ecgexp-compare", tmp_path, f"multirun={sweep}", "reference=best",
                              f"output_dir={out}", "bootstrap.n_resamples=20")
    assert compared.returncode == 0, compared.stderr[-3000:]
    members = pd.read_csv(out / "members.csv").run
    validation = {run: json.loads((Path(run) / "metrics.json").read_text())["val"]["macro"][
        "auroc"] for run in members}
    best = max(validation, key=validation.get)
    assert len(members) == 2 and len(set(validation.values())) == 2
    table = pd.read_csv(out / "comparison.csv")
    assert set(table.model_a) == {best} and len(set(table.model_b)) == 1
    auroc = table[table.metric == "auroc"]
    assert set(auroc.test[auroc.target != "macro"]) == {"delong"}  # per statement
    assert set(auroc.test[auroc.target == "macro"]) == {"bootstrap"}
    assert {"p_value", "p_holm", "lower", "upper"} <= set(table.columns)  # Holm, bootstrap
