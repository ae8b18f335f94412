"""Run folders you can trust: a run folder's config is data, resume works on the folder given
(checked first, history kept, overrides refused or applied and recorded), one run per folder."""

import csv
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers.commands import run_in_process
from helpers.configs import SHORT_RUN, compose_config, compose_in
from hydra.utils import instantiate
from pytorch_lightning.callbacks import ProgressBar

from ecgexp.errors import UserError
from ecgexp.interpret.heatmaps import extract_heatmaps
from ecgexp.run_folder import RunFolder, RunLock
from ecgexp.train import train


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_run(trained_run: Path, folder: Path) -> Path:
    subprocess.run(["cp", "-a", str(trained_run), str(folder)], check=True)
    return folder


def history(folder: Path) -> list[dict]:
    with open(folder / "history" / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_run_folder_type_names_the_files_a_run_wrote(trained_run):
    """Every file a finished run wrote is one RunFolder names (Hydra's record, the logs and
    the history of Lightning's CSV logger aside), and each file RunFolder names is there."""
    files = RunFolder(trained_run)
    named = [files.config, files.checkpoint("best"), files.checkpoint("last"), files.metrics,
             files.training_statistics, files.provenance, files.predictions("val"),
             files.predictions("test")]
    assert [path for path in named if not path.is_file()] == []
    written = {p.relative_to(trained_run).as_posix() for p in trained_run.rglob("*")
               if p.is_file() and p.parts[len(trained_run.parts)] not in (".hydra", "history")
               and p.suffix != ".log"}
    assert written - {files.lock.name} == {path.relative_to(trained_run).as_posix()
                                           for path in named}  # the lock file stays, empty
    assert files.predictions("code_test").name == "predictions_code_test.csv"
    assert (files.report, files.heatmaps) == (trained_run / "report", trained_run / "heatmaps")


def test_a_run_folder_naming_a_moved_class_loads_with_its_new_name(trained_run, tmp_path):
    """A run folder written before the training progress callback moved out of
    ecgexp.progress (so that counting work does not import Lightning) still loads: its old
    class name is read as the new one, and the file is left as it was."""
    old = copy_run(trained_run, tmp_path / "old")
    written = yaml.safe_load((old / "config.yaml").read_text())
    written["callbacks"]["progress_bar"] = {"_target_": "ecgexp.progress.TrainingProgress",
                                            "monitor": "val_loss", "mode": "min"}
    (old / "config.yaml").write_text(yaml.safe_dump(written))
    before = digests(old)
    config = RunFolder(old).load_config()
    assert config.callbacks.progress_bar._target_ == "ecgexp.tasks.callbacks.TrainingProgress"
    assert isinstance(instantiate(config.callbacks.progress_bar), ProgressBar)
    assert digests(old) == before


# ----------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_outside_a_run_folder_is_named(trained_run, tmp_path):
    stray = tmp_path / "model.ckpt"
    stray.write_bytes((trained_run / "checkpoints" / "best.ckpt").read_bytes())
    with pytest.raises(UserError, match=rf"^run: '{stray}' is not a checkpoint of a run "
                                        rf"folder \(<run>/checkpoints/<name>.ckpt beside "
                                        rf"<run>/config.yaml\)"):
        extract_heatmaps(compose_config("heatmap", f"run={stray}"))


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_last_checkpoint_changes_nothing(trained_run, tmp_path, damage):
    folder = copy_run(trained_run, tmp_path / "run_copy")
    last = folder / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:4096] if damage == "truncated" else b"")
    before = digests(folder)
    with pytest.raises(UserError) as error:
        train(compose_in(tmp_path, f"resume={folder}"))
    assert str(error.value).startswith(f"resume: '{last}' is ")
    assert digests(folder) == before  # history, config.yaml, provenance.json untouched


def test_resuming_a_copy_leaves_the_original_alone(trained_run, tmp_path):
    """The copy is resumed in place with one more epoch (a safe override, recorded); the
    original's files stay byte-identical, the copy keeps the history of its first two epochs,
    and no other run folder appears."""
    original = copy_run(trained_run, tmp_path / "original")
    copy = copy_run(original, tmp_path / "copy")
    before = digests(original)
    work = tmp_path / "work"
    work.mkdir()
    result = run_in_process("ecgexp", work, f"resume={copy}", "trainer.max_epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert digests(original) == before
    assert list(work.iterdir()) == []  # no stray run folder (nor data) in the working directory

    epochs = lambda rows: [r for r in rows if r["epoch"]]  # noqa: E731
    old, new = epochs(history(original)), epochs(history(copy))
    assert [r["epoch"] for r in new] == [r["epoch"] for r in old] + ["2", "2"]
    for kept, first in zip(new, old):
        assert {k: v for k, v in kept.items() if v} == {k: v for k, v in first.items() if v}
    config = yaml.safe_load((copy / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 3 and config["paths"]["output_dir"] == str(copy)
    assert config["callbacks"]["model_checkpoint"]["dirpath"] == str(copy / "checkpoints")
    provenance = json.loads((copy / "provenance.json").read_text())
    assert provenance["resumes"][0]["overrides"] == ["trainer.max_epochs=3"]
    assert provenance["resumes"][0]["checkpoint_epoch"] == 1
    assert provenance["command"] == json.loads((original / "provenance.json").read_text())[
        "command"]  # the record of the first start is kept


def test_overrides_that_change_the_run_are_refused(trained_run, tmp_path):
    folder = copy_run(trained_run, tmp_path / "run_copy")
    before = digests(folder)
    result = run_in_process("ecgexp", tmp_path, f"resume={folder}", "model.dropout=0.1",
                            "optimizer.lr=0.1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: resume: model.dropout=0.1, optimizer.lr=0.1 would change the run being resumed, "
        "which continues with its own config.yaml; only trainer.max_epochs, loader.*, logger, "
        "callbacks.progress_bar, trainer.enable_progress_bar, trainer.log_every_n_steps may "
        "change on resume (start a new run, or a new run from its weights with "
        "model.weights=<run>/checkpoints/best.ckpt)"]
    assert digests(folder) == before


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(UserError, match=rf"^resume: '{tmp_path}' is not a run folder"):
        train(compose_in(tmp_path, f"resume={tmp_path}"))
    (tmp_path / "config.yaml").write_text((Path(__file__).parents[1] / "conftest.py").read_text())
    with pytest.raises(UserError, match=r"^resume: .*config.yaml' is not a readable config"):
        train(compose_in(tmp_path, f"resume={tmp_path}"))


# ----------------------------------------------------------------------------- one run, one folder
def test_a_folder_in_use_or_holding_a_run_is_refused(trained_run, tmp_path):
    busy = tmp_path / "busy"
    cfg = compose_in(tmp_path, *SHORT_RUN)
    cfg.paths.output_dir = str(busy)
    with RunLock(busy):
        with pytest.raises(UserError, match=rf"^hydra.run.dir: '{busy}' is in use by a live "
                                            rf"run \(\{{\"pid\": \d+"):
            train(cfg)
    assert list(busy.iterdir()) == [busy / ".ecgexp.lock"]
    held = copy_run(trained_run, tmp_path / "held")
    cfg.paths.output_dir = str(held)
    before = digests(held)
    with pytest.raises(UserError, match=rf"'{held}' already holds a run \(config.yaml\)"):
        train(cfg)
    after = digests(held)
    lock = after.pop(".ecgexp.lock")  # the lock records who last held the folder: this test
    assert after == {k: v for k, v in before.items() if k != ".ecgexp.lock"} and lock


@pytest.mark.slow
def test_two_runs_started_together_get_their_own_folders(two_cli_runs):
    """Same command, same second, same working directory (``two_cli_runs``): two folders
    named after the experiment, each with its own config, provenance and metrics, each named
    by its own process."""
    cwd = Path(two_cli_runs[0]["cwd"])
    for process in two_cli_runs:
        assert process["returncode"] == 0, process["stderr"][-3000:]
    folders = sorted((cwd / "outputs" / "abnormality" / "runs").iterdir())
    assert len(folders) == 2 and all("_demo_" in f.name for f in folders)
    printed = [[f for f in folders if f"Run folder: {f}" in p["stdout"]] for p in two_cli_runs]
    assert sorted(printed) == [[folder] for folder in folders]
    for folder in folders:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["paths"]["output_dir"] == str(folder.resolve())
        assert (folder / "metrics.json").is_file() and (folder / "predictions_test.csv").is_file()


def test_heatmaps_from_elsewhere_read_the_run_data_and_create_none(trained_run, tmp_path,
                                                                   monkeypatch):
    """A run whose config names its data relative to where it trained: from another working
    directory the data is found through provenance.json, and nothing is generated here."""
    folder = copy_run(trained_run, tmp_path / "shared_run")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    data_dir = config["paths"]["data_dir"]
    dataset = config["dataset"]
    for key in ("directory", "tracing_files", "labels_csv"):
        dataset[key] = str(Path(dataset[key]).relative_to(Path(data_dir).parent))
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = compose_config("heatmap", f"run={folder}", "figures.max_exams=1", "select.top_k=2")
    assert extract_heatmaps(cfg)["exams"] == 2
    assert list(elsewhere.iterdir()) == []
    (folder / "provenance.json").unlink()  # no record of where the data was: refused
    with pytest.raises(UserError, match=r"^dataset: the run's dataset\.directory "
                                        r"'data/synthetic_n120_seed0' \(from the working "
                                        r"directory .*\) is not found; .*dataset=<name>"):
        extract_heatmaps(cfg)
    assert list(elsewhere.iterdir()) == []


def test_a_run_stopped_by_bad_data_leaves_no_run_folder(tmp_path):
    (tmp_path / "exams.hdf5").write_text("not an HDF5 file\n")
    (tmp_path / "exams.csv").write_text("exam_id,chagas\n1,0\n")
    work = tmp_path / "work"
    work.mkdir()
    result = run_in_process("ecgexp", work, "task=chagas", "dataset=generic",
                            f"dataset.tracing_files={tmp_path / 'exams.hdf5'}",
                            f"dataset.labels_csv={tmp_path / 'exams.csv'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: dataset.tracing_files: '{tmp_path / 'exams.hdf5'}' is not an HDF5 file")
    assert list((work / "outputs" / "chagas" / "runs").iterdir()) == []
