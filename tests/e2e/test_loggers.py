"""Loggers: W&B offline (config, summary, history, media, artifact, groups), TensorBoard and
CSV, several at once. Runs the ``ecgexp`` entry point and reads what the loggers wrote:
the offline ``.wandb`` transaction log, TensorBoard event files, the CSV history."""

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.commands import run_in_process
from helpers.configs import QUARTER_LENGTHS
from helpers.source import imported_modules
from helpers.wandb_log import items, of_type, wandb_records

EPOCHS = 2
# Runs of the console script's entry point with real loggers.
pytestmark = pytest.mark.slow

SHORT_RUN = ["experiment=demo", QUARTER_LENGTHS, "dataset.n_exams=120",
             f"trainer.max_epochs={EPOCHS}", "+trainer.limit_train_batches=2",
             "loader.num_workers=0", "loader.batch_size=16",
             "callbacks.progress_bar=null", "dataset.split.val_fraction=0.3",
             "dataset.split.test_fraction=0.3"]


def ecgexp(root: Path, *args: str):
    """``ecgexp *args`` (its entry point, in this process) in ``root`` with W&B offline and its
    files under ``root``."""
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "WANDB_PROJECT": "ecgexp-test", "WANDB_DIR": str(root / "wandb_dir"),
           "WANDB_DATA_DIR": str(root / "wandb_data"), "WANDB_CACHE_DIR": str(root / "wandb_cache"),
           "WANDB_CONFIG_DIR": str(root / "wandb_config"),
           "ECGEXP_DATA_DIR": str(root.parent / "data")}
    result = run_in_process("ecgexp", root, *args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("metrics.json") if p.parent.name != "report")


def leaves(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(leaves(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def csv_val_loss(run_folder: Path) -> list[float]:
    history = pd.read_csv(run_folder / "history" / "metrics.csv")
    return history.val_loss.dropna().tolist()


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """The report a run with W&B writes at its end (``write_run_report``) with 20 bootstrap
    resamples instead of 1000 (0.7 s per label and split): these tests read its plots and the
    run's metrics, not its intervals."""
    import ecgexp.evaluate

    composed = ecgexp.evaluate.default_settings

    def quick():
        settings = composed()
        settings.bootstrap.n_resamples = 20
        return settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ecgexp.evaluate, "default_settings", quick)
        yield


# Two of the six labels in the runs with a report (W&B, TensorBoard): 8 report figures a run
# instead of 24 (each about 0.2 s); what a logger publishes does not depend on the label count.
TWO_LABELS = "task.objective.target_columns=[AF,SB]"


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory, quick_report) -> Path:
    """One run with the CSV and W&B loggers, a checkpoint artifact and a 5-row table."""
    root = tmp_path_factory.mktemp("wandb_run")
    ecgexp(root, *SHORT_RUN, TWO_LABELS, "logger=[csv,wandb]", "optimizer.lr=0.0123",
           "model.kernel_size=7",
           "seed=3", "logger.wandb.checkpoint_artifact=true", "logger.wandb.table_rows=5",
           "logger.wandb.tags=[ablation]")
    (folder,) = run_folders(root / "outputs")
    return folder


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory, quick_report) -> list[Path]:
    """A two-seed multirun with the CSV, TensorBoard and W&B loggers (no artifact)."""
    root = tmp_path_factory.mktemp("seed_sweep")
    ecgexp(root, "-m", "seed=0,1", *SHORT_RUN, TWO_LABELS, "logger=[csv,tensorboard,wandb]")
    folders = run_folders(root / "outputs")
    assert len(folders) == 2
    return folders


def test_a_seed_sweep_is_evaluated_as_an_ensemble(seed_sweep, tmp_path):
    """``ecgexp-evaluate multirun=`` on (a copy of) the seed sweep: the mean of its members'
    scores, and their spread."""
    sweep = tmp_path / "sweep"
    shutil.copytree(seed_sweep[0].parent, sweep)
    members = [pd.read_csv(sweep / job / "predictions_test.csv") for job in ("0", "1")]
    # Different seeds, same split (split_seed): the same test exams, different scores.
    assert members[0]["exam_id"].tolist() == members[1]["exam_id"].tolist()
    assert not members[0]["score_AF"].equals(members[1]["score_AF"])
    result = run_in_process("ecgexp-evaluate", tmp_path, f"multirun={sweep}",
                            "bootstrap.n_resamples=20")
    assert result.returncode == 0, result.stderr[-3000:]
    ensemble = pd.read_csv(sweep / "ensemble_report" / "predictions_test.csv")
    scores = [c for c in members[0] if c.startswith("score_")]
    expected = (members[0][scores] + members[1][scores]) / 2
    pd.testing.assert_frame_equal(ensemble[scores], expected, check_exact=False, atol=1e-7)
    spread = pd.read_csv(sweep / "ensemble_report" / "ensemble_members.csv")
    test_auroc = spread.set_index("metric").loc["test/macro/auroc"]
    member_aurocs = [json.loads((sweep / j / "metrics.json").read_text())["test"]["macro"]["auroc"]
                     for j in ("0", "1")]
    assert test_auroc["min"] == pytest.approx(min(member_aurocs))
    assert test_auroc["max"] == pytest.approx(max(member_aurocs))


def test_wandb_run_identity_and_config(wandb_run):
    records = wandb_records(wandb_run)
    (run,) = of_type(records, "run")
    assert run.display_name == "demo-synthetic-seed3" and run.run_group == "demo"
    assert set(run.tags) == {"abnormality", "synthetic", "resnet1d_small", "demo", "ablation"}
    assert run.job_type == "train" and run.project == "ecgexp-test"  # WANDB_PROJECT
    config = {}
    for update in of_type(records, "config"):
        config.update(items(update.update))
    assert config["optimizer.lr"] == 0.0123 and config["model.kernel_size"] == 7
    assert config["seed"] == 3 and config["logger.wandb.table_rows"] == 5
    # every key of the run folder's resolved config, flattened, with its value
    resolved = leaves(yaml.safe_load((wandb_run / "config.yaml").read_text()))
    assert {k: config[k] for k in resolved} == resolved
    statistics = json.loads((wandb_run / "training_statistics.json").read_text())
    assert {k: config[k] for k in leaves(statistics, "training_statistics.")} == leaves(
        statistics, "training_statistics.")


def test_wandb_summary_holds_the_metrics_and_history_one_val_loss_per_epoch(wandb_run):
    records = wandb_records(wandb_run)
    summary = {}
    for update in of_type(records, "summary"):
        summary.update(items(update.update))
    metrics = json.loads((wandb_run / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"}
    for split, rows in metrics.items():
        for label, values in rows.items():
            for metric, value in values.items():
                logged = summary[f"{split}/{label}/{metric}"]
                if value is None:  # undefined (metrics.json: null; W&B stores NaN as null)
                    assert logged is None
                else:
                    assert logged == pytest.approx(value)
    rows = [items(history.item) for history in of_type(records, "history")]
    val_loss = [row["val_loss"] for row in rows if "val_loss" in row]
    assert val_loss == pytest.approx(csv_val_loss(wandb_run)) and len(val_loss) == EPOCHS


def test_wandb_gets_plots_predictions_table_and_checkpoint(wandb_run):
    records = wandb_records(wandb_run)
    logged = {}
    for history in of_type(records, "history"):
        logged.update(items(history.item))
    plots = sorted((wandb_run / "report").glob("*.png"))
    assert {p.stem for p in plots} >= {"roc_pr_SB", "reliability_SB"}
    for plot in plots:
        assert logged[f"plots/{plot.stem}/_type"] == "image-file"
    files = [f.path for record in of_type(records, "files") for f in record.files]
    assert sum(f.startswith("media/images/plots/") for f in files) == len(plots)
    predictions = pd.read_csv(wandb_run / "predictions_test.csv")
    assert logged["predictions_test/_type"] == "table-file"
    assert logged["predictions_test/nrows"] == 5  # logger.wandb.table_rows
    assert logged["predictions_test/ncols"] == len(predictions.columns)
    (model,) = [a for a in of_type(records, "artifact") if a.type == "model"]
    (content,) = model.manifest.contents
    assert content.path == "best.ckpt"
    assert content.size == (wandb_run / "checkpoints" / "best.ckpt").stat().st_size
    assert (wandb_run / "history" / "metrics.csv").is_file()  # the CSV logger beside it


def test_seed_sweep_is_one_wandb_group_without_artifacts(seed_sweep):
    runs = [of_type(wandb_records(folder), "run")[0] for folder in seed_sweep]
    sweep = seed_sweep[0].parent.name  # outputs/abnormality/multiruns/<sweep>/<job>
    assert {run.run_group for run in runs} == {f"demo-{sweep}"}
    assert [run.display_name for run in runs] == ["demo-synthetic-seed0-0",
                                                  "demo-synthetic-seed1-1"]
    assert runs[0].run_id != runs[1].run_id
    for folder in seed_sweep:
        assert not [a for a in of_type(wandb_records(folder), "artifact") if a.type == "model"]


def test_tensorboard_and_csv_write_the_history(seed_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for folder in seed_sweep:
        events = EventAccumulator(str(folder / "tensorboard"))
        events.Reload()
        val_loss = [event.value for event in events.Scalars("val_loss")]
        assert len(val_loss) == EPOCHS
        assert val_loss == pytest.approx(csv_val_loss(folder), rel=1e-6)
        auroc = json.loads((folder / "metrics.json").read_text())["test"]["SB"]["auroc"]
        assert events.Scalars("test/SB/auroc")[-1].value == pytest.approx(auroc, rel=1e-6)
        assert "optimizer.lr: 0.001" in (folder / "tensorboard" / "hparams.yaml").read_text()


def test_logger_group_takes_several_options(compose_train):
    cfg = compose_train("logger=[csv,tensorboard,wandb]")
    assert set(cfg.logger) == {"csv", "tensorboard", "wandb"}
    assert set(compose_train("logger=tensorboard").logger) == {"tensorboard"}


def test_csv_and_tensorboard_do_not_import_wandb(compose_train, tmp_path, monkeypatch):
    """A run with the CSV and TensorBoard loggers never imports ``wandb``: no ecgexp module
    imports it when imported (read from the source), and here, with ``wandb`` made
    unimportable (``sys.modules["wandb"] = None``: any ``import wandb`` raises), the loggers
    are made, given the config and publish the results."""
    import ecgexp
    from ecgexp.tracking import instantiate_loggers, log_config, publish_results

    package = Path(ecgexp.__file__).parent
    on_import = {path.relative_to(package).as_posix() for path in package.rglob("*.py")
                 if imported_modules(path, "wandb", on_import=True)}
    assert on_import == set()
    for name in [name for name in sys.modules if name.split(".")[0] == "wandb"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "wandb", None)
    cfg = compose_train("logger=[csv,tensorboard]")
    run = Path(cfg.paths.output_dir)
    loggers = instantiate_loggers(cfg)
    log_config(loggers, cfg, {"objective": {"pos_weight": [2.0]}})
    publish_results(loggers, {"test/AF/auroc": 0.75}, run, None, None)
    assert sorted(type(logger).__name__ for logger in loggers) == ["CSVLogger",
                                                                   "TensorBoardLogger"]
    metrics = pd.read_csv(run / "history" / "metrics.csv")
    assert metrics["test/AF/auroc"].tolist() == [0.75]
    assert "pos_weight" in (run / "tensorboard" / "hparams.yaml").read_text()
