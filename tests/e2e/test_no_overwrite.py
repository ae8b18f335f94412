"""Nothing a user wrote is replaced: a run writes only into a new or empty folder (or its own,
on resume), a report folder is one report, whole, and a full disk during evaluation leaves
nothing behind but one line."""

import hashlib
import subprocess
from pathlib import Path

import pytest
from helpers.commands import run_in_process
from helpers.configs import SHORT_RUN

from ecgexp.errors import UserError
from ecgexp.run_folder import claim_folder


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def users_folder(folder: Path) -> Path:
    """A folder of the user's own files, named as a run's would be."""
    (folder / "checkpoints" / "history").mkdir(parents=True)
    (folder / "metrics.json").write_text('{"mine": 1}\n')
    (folder / "predictions_test.csv").write_text("exam_id,score\n1,0.5\n")
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"my checkpoint")
    return folder


def test_a_run_into_a_folder_of_user_files_is_refused_before_anything_is_written(trained_run,
                                                                                tmp_path):
    folder = users_folder(tmp_path / "mine")
    before = digests(folder)
    data = trained_run.parent / "data"
    result = run_in_process("ecgexp", tmp_path, *SHORT_RUN, f"hydra.run.dir={folder}",
                            f"paths.data_dir={data}", "logger=none")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: hydra.run.dir: '{folder}' is not empty (checkpoints, metrics.json, "
        f"predictions_test.csv) and holds no ecgexp run; a run writes only into a new or empty "
        f"folder, so that nothing in it is replaced: choose another hydra.run.dir"]
    assert digests(folder) == before and not (folder / ".hydra").exists()


def test_claiming_a_folder_allows_only_what_hydra_wrote(tmp_path):
    """The library path (``train(cfg)`` without Hydra's checks): the lock, Hydra's record
    and log are fine; a file of the user's is not."""
    folder = tmp_path / "run"
    (folder / ".hydra").mkdir(parents=True)
    (folder / "train.log").write_text("")
    claim_folder(folder, continuing=False).release()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"^hydra.run.dir: '.*' is not empty \(notes.txt\)"):
        claim_folder(folder, continuing=False)


def test_a_report_folder_is_one_report(trained_run, tmp_path):
    """A second evaluation into a report folder is refused: the first report stays whole."""
    out = tmp_path / "report"
    first = run_in_process("ecgexp-evaluate", tmp_path, f"run={trained_run}",
                           f"output_dir={out}", "bootstrap.n_resamples=20")
    assert first.returncode == 0, first.stderr[-3000:]
    before = digests(out)
    assert "metrics.json" in before and not [p for p in out.parent.iterdir()
                                             if p.name.startswith(".report")]
    second = run_in_process("ecgexp-evaluate", tmp_path, f"run={trained_run}",
                            f"output_dir={out}", "bootstrap.n_resamples=30")
    assert second.returncode == 2
    assert second.stderr.startswith(f"error: output_dir: '{out}' is not empty (")
    assert "a report goes into a new or empty folder" in second.stderr
    assert digests(out) == before


def test_a_full_disk_during_evaluation_leaves_nothing_and_says_so(trained_run, tmp_path, tmpfs):
    small = tmpfs("small", "size=64k")
    out = small / "report"
    result = run_in_process("ecgexp-evaluate", tmp_path, f"run={trained_run}",
                            f"output_dir={out}", "bootstrap.n_resamples=20")
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: output_dir: writing the report failed (No space left on "
                           "device")  # and the file, where the OSError names it
    assert line.endswith(f"); nothing was left in '{out}': free space or choose another "
                         f"output_dir")
    assert list(small.iterdir()) == []
    assert "Traceback" not in result.stderr


def test_the_report_of_a_run_is_written_whole_under_its_final_name(trained_run, tmp_path):
    """While the report is written, only a hidden staging folder exists; none is left."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-a", str(trained_run), str(run)], check=True)
    result = run_in_process("ecgexp-evaluate", tmp_path, f"run={run}",
                            "bootstrap.n_resamples=20")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "report" / "metrics.json").is_file()
    assert not [p.name for p in run.iterdir() if p.name.endswith(".partial")]
