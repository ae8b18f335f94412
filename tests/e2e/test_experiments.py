"""The published setups (`experiment=<study>`): each composes with the real train.yaml, carries
the hyperparameters of its study (values written out from docs/studies.md, not read back from
the configs) and builds its network and objective."""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.commands import run_in_process
from helpers.configs import CONF_DIR
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ecgexp.data.splits import with_task_strata
from ecgexp.models.resnet1d import ResNet1d
from ecgexp.tasks.build import build_network

EXPERIMENT_DIR = CONF_DIR / "experiment"
PUBLISHED_BLOCK_LENGTHS = [4096, 1024, 256, 64, 16]
FILTERS = [64, 128, 196, 256, 320]
AF_FILTERS = [64, 128, 192, 256, 320]  # docs/studies.md §1.1: the AF code uses 192, not 196

# Shared by the four electrolyte variants (docs/studies.md §1.1, §2.5, §4 "Electrolyte data").
ELECTROLYTE = dict(
    dataset="electrolyte", in_leads=8, filters=FILTERS, kernel_size=17, dropout=0.5,
    stem_relu=True, batch_size=32, lr=1e-3, weight_decay=0.0, max_epochs=30,
    scheduler=dict(factor=0.1, patience=7, min_lr=1e-8), early_stopping=None, seed=0,
    split=dict(rule="column_split", column="split", train="train", val="val",
               test="random test"))

EXPECTED = {
    # docs/studies.md §1.2, §2.1 (Keras; PyTorch patience 6 = Keras patience 7, see the config).
    # The Keras model: the stem's 64 filters at 4096 samples, then four residual units.
    "abnormality_ribeiro2020": dict(
        task="abnormality", n_outputs=6, dataset="code15", in_leads=12, filters=FILTERS,
        keras_stem=True, bn_eps=1e-3,
        kernel_size=16, dropout=0.2, stem_relu=True, batch_size=64, lr=1e-3, weight_decay=0.0,
        max_epochs=70, scheduler=dict(factor=0.1, patience=6, min_lr=1e-5, threshold=1e-4,
                                      threshold_mode="abs"),
        early_stopping=dict(patience=9, min_delta=1e-5), seed=0,
        split=dict(rule="last_fraction_split", val_fraction=0.02, test_fraction=0.0),
        parameters=6_421_910, with_statistics=6_425_638),
    # docs/studies.md §2.2 (train.py and formulate_problem.py).
    "age_lima2021": dict(
        task="age", n_outputs=1, dataset="code15", in_leads=12, filters=FILTERS, kernel_size=17,
        dropout=0.8, stem_relu=False, batch_size=32, lr=1e-3, weight_decay=0.0, max_epochs=70,
        scheduler=dict(factor=0.1, patience=7, min_lr=1e-8), early_stopping=None, seed=2,
        split_seed=0,
        split=dict(rule="age_balanced_split", val_fraction=0.05, test_fraction=0.15,
                   balanced_ages=[16, 85], group_column="patient_id"),
        parameters=6_924_705),
    # docs/studies.md §2.3 (run_code.py).
    "chagas_jidling2023": dict(
        task="chagas", n_outputs=1, dataset="chagas_sources", in_leads=12, filters=FILTERS,
        kernel_size=17, dropout=0.5, stem_relu=False, batch_size=32, lr=1e-3, weight_decay=1e-3,
        max_epochs=200, scheduler=dict(factor=0.1, patience=10, min_lr=1e-8),
        early_stopping=None, seed=0, split_seed=0, parameters=6_924_705),
    # docs/studies.md §2.4.
    "af_risk_habineza2023": dict(
        task="af_risk", n_outputs=3, dataset="code", in_leads=12, filters=AF_FILTERS,
        kernel_size=17, dropout=0.5, stem_relu=False, batch_size=32, lr=1e-3,
        weight_decay=5e-4, max_epochs=70, scheduler=dict(factor=0.1, patience=7, min_lr=1e-8),
        early_stopping=None, seed=2, split_seed=0, parameters=6_880_899),
    "electrolyte_regression": dict(ELECTROLYTE, task="electrolyte", n_outputs=1,
                                   parameters=6_920_353),
    "electrolyte_classification": dict(ELECTROLYTE, task="electrolyte_classification",
                                       n_outputs=6),
    "electrolyte_ordinal": dict(ELECTROLYTE, task="electrolyte_ordinal", n_outputs=5),
    "electrolyte_gaussian": dict(ELECTROLYTE, task="electrolyte_gaussian", n_outputs=1),
}
# Setups of ours (not published ones): the survival experiments (tested below).
NOT_STUDIES = {"demo", "mortality_code15", "mortality_discrete_code15", "af_time_to_event"}
# The PTB-XL benchmark's label sets, for any model: tests/e2e/test_ptbxl_benchmark.py.
PTBXL_BENCHMARK = {f"ptbxl_{level}" for level in ("all", "diagnostic", "subdiagnostic",
                                                   "superdiagnostic", "form", "rhythm")}


def experiments() -> list[str]:
    """The experiments of the studies' ResNet1d and of ours (not the PTB-XL benchmark's)."""
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml") if p.stem not in PTBXL_BENCHMARK)


def test_every_experiment_file_is_checked():
    names = {p.stem for p in EXPERIMENT_DIR.glob("*.yaml")}
    assert names == set(EXPECTED) | NOT_STUDIES | PTBXL_BENCHMARK


@pytest.mark.parametrize("name", experiments())
def test_experiment_builds_its_model_and_objective(compose_train, name):
    cfg = compose_train(f"experiment={name}")
    net = build_network(cfg)
    objective = instantiate(cfg.task.objective)
    assert isinstance(net, ResNet1d)
    assert net(torch.randn(1, net.in_leads, net.n_samples),
               *([torch.zeros(1, net.n_metadata)] if net.n_metadata else [])
               ).shape[1] == len(objective.output_names)
    assert instantiate(cfg.optimizer)(params=net.parameters()) is not None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_has_the_published_hyperparameters(compose_train, name):
    expected = EXPECTED[name]
    cfg = compose_train(f"experiment={name}")
    assert cfg.task.name == expected["task"]
    assert instantiate(cfg.task.objective).n_outputs == expected["n_outputs"]
    assert cfg.dataset.name == expected["dataset"]
    model = cfg.model
    assert model.in_leads == expected["in_leads"]
    # (filters, length) after the stem and each block; a Keras-style stem is its own entry
    keras_stem = expected.get("keras_stem", False)
    assert (model.stem is not None) is keras_stem
    shapes = [model.stem, *model.blocks] if keras_stem else list(model.blocks)
    assert [f for f, _ in shapes] == expected["filters"]
    assert [length for _, length in shapes] == PUBLISHED_BLOCK_LENGTHS
    assert model.bn_eps == expected.get("bn_eps", 1e-5)
    assert model.kernel_size == expected["kernel_size"]
    assert model.dropout == expected["dropout"]
    assert model.stem_relu is expected["stem_relu"]
    assert cfg.loader.batch_size == expected["batch_size"]
    assert cfg.optimizer.lr == expected["lr"]
    assert cfg.optimizer.weight_decay == expected["weight_decay"]
    assert cfg.trainer.max_epochs == expected["max_epochs"]
    for key, value in expected["scheduler"].items():
        assert cfg.scheduler[key] == value, key
    if expected["early_stopping"] is None:
        assert cfg.callbacks.early_stopping is None
    else:
        for key, value in expected["early_stopping"].items():
            assert cfg.callbacks.early_stopping[key] == value, key
    assert cfg.seed == expected["seed"]
    if "split_seed" in expected:
        assert cfg.split_seed == expected["split_seed"]
    if "split" in expected:
        split = dict(expected["split"])
        assert cfg.split._target_ == f"ecgexp.data.splits.{split.pop('rule')}"
        for key, value in split.items():
            assert cfg.split[key] == value, key
    if "parameters" in expected:  # docs/studies.md §1.1 and §1.2 counts
        net = build_network(cfg)
        assert sum(p.numel() for p in net.parameters()) == expected["parameters"]
    if "with_statistics" in expected:  # Keras counts the BN moving mean and variance too
        statistics = sum(b.numel() for name, b in net.named_buffers()
                         if name.endswith(("running_mean", "running_var")))
        assert expected["parameters"] + statistics == expected["with_statistics"]


def test_abnormality_validates_on_the_last_two_percent(compose_train):
    split = instantiate(compose_train("experiment=abnormality_ribeiro2020").split)
    names = split(pd.DataFrame(index=range(1000)))
    assert (names[:980] == "train").all() and (names[980:] == "val").all()


def test_age_split_is_the_patient_level_age_balanced_rule(compose_train):
    split = instantiate(compose_train("experiment=age_lima2021").split)
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"patient_id": np.repeat(np.arange(1000), 2),
                          "age": np.repeat(rng.integers(16, 86, 1000), 2)})
    names = split(table)
    assert names.groupby(table.patient_id).nunique().max() == 1  # a patient in one split
    counts = names.iloc[::2].value_counts()
    assert counts["test"] == 150 and counts["val"] == 50


def test_chagas_mixes_the_two_sources_and_keeps_the_split_across_seeds(compose_train):
    cfg = compose_train("experiment=chagas_jidling2023", "seed=7")
    assert cfg.task.sampler.source_column == "source"
    assert cfg.task.sampler.source_a == "samitrop" and cfg.task.sampler.fraction_a == 0.5
    assert cfg.task.objective.pos_weight is None  # published: pos_weight never used
    samitrop, code15 = cfg.dataset.sources.samitrop.split, cfg.dataset.sources.code15.split
    assert samitrop.val_fraction == 0.3 and samitrop.test_fraction == 0.0
    assert samitrop.group_column is None
    assert code15.test_fraction == 0.0 and code15.group_column == "patient_id"
    # published: 2 n_v = 978 CODE exams, n_v = round(0.3 * 1631) = 489 SaMi-Trop exams; the
    # fraction of CODE-15%'s patients is about the same fraction of its 345,779 exams
    assert 900 < code15.val_fraction * 345_779 < 1050
    assert samitrop.seed == code15.seed == 0  # split_seed, not seed
    split = with_task_strata(instantiate(samitrop), labels=[])  # as the source binds it
    names = split(pd.DataFrame(index=range(1631)))
    assert (names == "val").sum() == 489


def test_chagas_sweeps_the_fifteen_seeds(tmp_path):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=["experiment=chagas_jidling2023",
                                              f"paths.data_dir={tmp_path}"],
                          return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    assert cfg.hydra.sweeper.params.seed == "range(0,15)"


@pytest.mark.parametrize("name", [n for n in EXPECTED if n.startswith("electrolyte")])
def test_electrolyte_reads_the_eight_lead_private_layout(compose_train, name):
    cfg = compose_train(f"experiment={name}")
    assert list(cfg.preprocessing.leads) == ["DI", "DII", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert list(cfg.dataset.leads) == list(cfg.preprocessing.leads)
    assert cfg.dataset.join == "row_order" and cfg.dataset.rename_columns.ecg_age == "age"
    assert instantiate(cfg.task.objective).target_columns == ["potassium"]
    split = instantiate(cfg.split)
    names = split(pd.DataFrame({"split": ["train", "val", "random test", "temporal test"]}))
    assert names.tolist()[:3] == ["train", "val", "test"] and pd.isna(names.iloc[3])


def test_af_risk_reads_the_published_code_layout(compose_train):
    cfg = compose_train("experiment=af_risk_habineza2023")
    assert cfg.dataset.tracings_dataset == "signal" and cfg.dataset.exam_id_dataset == "id_exam"
    assert cfg.dataset.id_column == "id_exam"
    assert cfg.dataset.rename_columns == {"id_patient": "patient_id", "date_exam": "exam_date"}
    targets = cfg.task.targets
    assert (targets.min_weeks, targets.max_weeks) == (0, 1000)
    assert (targets.val_fraction, targets.test_fraction, targets.seed) == (0.1, 0.3, 0)
    assert cfg.task.objective.class_weights is None  # the released model: unweighted


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_header_names_the_paper_and_its_numbers(name):
    text = (EXPERIMENT_DIR / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    header = text.split("\ndefaults:")[0]
    year = name[-4:] if name[-4:].isdigit() else "2024"
    assert year in header
    assert "Published numbers" in header and "differences" in header


def test_experiment_prints_from_outside_the_repository(tmp_path):
    result = run_in_process("ecgexp", tmp_path, "experiment=age_lima2021", "--cfg", "job")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "age_balanced_split" in result.stdout and "dropout: 0.8" in result.stdout
    assert "seed: 2" in result.stdout and "max_epochs: 70" in result.stdout


@pytest.mark.parametrize("name, task, dataset, batch", [
    ("mortality_code15", "survival", "code15", 128),
    ("mortality_discrete_code15", "survival_discrete", "code15", 64),
    ("af_time_to_event", "survival_af", "code", 128)])
def test_survival_experiments(compose_train, name, task, dataset, batch):
    """Mortality on CODE-15% with SaMi-Trop as an external test set; time to AF on the AF-risk
    study's data layout and network (192 filters in block 2)."""
    cfg = compose_train(f"experiment={name}")
    assert (cfg.task.name, cfg.dataset.name, cfg.loader.batch_size) == (task, dataset, batch)
    if dataset == "code15":
        assert cfg.test_datasets.samitrop.name == "samitrop"
        assert (cfg.task.objective.time_column, cfg.task.objective.event_column) == (
            "timey", "death")
    else:
        assert cfg.dataset.tracings_dataset == "signal"
        assert [f for f, _ in cfg.model.blocks] == AF_FILTERS
        assert cfg.task.targets._target_.endswith("af_time_to_event")
