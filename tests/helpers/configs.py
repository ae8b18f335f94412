"""The config tree of ecgexp, composing it, and the overrides of the short runs the tests
train."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

import ecgexp  # registers the OmegaConf resolvers

CONF_DIR = Path(ecgexp.__file__).parent / "conf"


def task_configs() -> list[str]:
    """Every prediction task of the config tree that runs on the synthetic data, found by
    globbing ``conf/task``: not a task whose config names an ``entry`` (``heatmap`` runs another
    function), nor one whose labels its experiment names (``statements``: target_columns ???,
    trained in tests/e2e/test_ptbxl_benchmark.py)."""
    import yaml

    tasks = {path.stem: yaml.safe_load(path.read_text())
             for path in (CONF_DIR / "task").glob("*.yaml")}
    return sorted(name for name, task in tasks.items() if "entry" not in task
                  and task.get("objective", {}).get("target_columns") != "???")


TASKS = task_configs()

# The small network at a quarter of its lengths (a stride-16 stem): a quarter of its FLOPs, for
# the runs that check what a run writes and reads, not what it learns (tests/e2e/test_learning.py).
QUARTER_LENGTHS = "model.blocks=[[16,256],[32,64],[48,16],[64,4]]"

# A short `ecgexp` run: small network, tiny synthetic dataset, one epoch of a few batches.
SHORT_RUN = ["experiment=demo", QUARTER_LENGTHS, "dataset.n_exams=120", "trainer.max_epochs=1",
             "+trainer.limit_train_batches=3", "loader.num_workers=0", "loader.batch_size=16",
             "callbacks.progress_bar=null", "dataset.split.val_fraction=0.3",
             "dataset.split.test_fraction=0.3"]

# A tiny run of any task: 600 synthetic exams, the small network, one epoch of 2 batches.
TINY_RUN = ["model=resnet1d_small", QUARTER_LENGTHS, "dataset.n_exams=600", "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2", "loader.num_workers=0",
            "callbacks.progress_bar=null", "logger=none"]

# A seed-1 tiny run with two external test sets (the same split as the seed-0 one).
EXTERNAL = ("seed=1", "+dataset@test_datasets.ext_a=synthetic", "test_datasets.ext_a.n_exams=24",
            "test_datasets.ext_a.synthesis_seed=5", "+dataset@test_datasets.ext_b=synthetic",
            "test_datasets.ext_b.n_exams=16", "test_datasets.ext_b.synthesis_seed=6")


def compose_in(root: Path, *overrides: str, config_name: str = "train"):
    """``train.yaml`` (or ``config_name``) composed with overrides; data, outputs and the run
    folder (``root/run``) under ``root``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=[f"paths.data_dir={root / 'data'}",
                                              f"paths.log_dir={root / 'outputs'}", *overrides])
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / "run")
    return cfg


def compose_config(name: str, *overrides: str):
    """The primary config ``name`` (``evaluate``, ``compare``, ...) composed with overrides."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


def compose_evaluate(*overrides: str):
    """``evaluate.yaml`` composed with overrides."""
    return compose_config("evaluate", *overrides)
