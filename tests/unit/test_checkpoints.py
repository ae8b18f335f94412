"""The one checkpoint reader: no code from a file runs on any loading path unless that file
is trusted by its key; truncated and empty files are named; checkpoint writes are atomic, so a
full disk leaves the previous checkpoint, never a truncated one."""

import argparse
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers.configs import SHORT_RUN, compose_config, compose_in
from omegaconf import open_dict

from ecgexp.checkpoints import read_checkpoint, save_atomic
from ecgexp.errors import UserError
from ecgexp.interpret.heatmaps import extract_heatmaps
from ecgexp.tasks.build import build_network
from ecgexp.tasks.checkpoint_io import CheckpointFiles
from ecgexp.train import train


class CreatesMarker:
    """Unpickling it runs ``touch <marker>`` (pickled as ``posix.system``)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def hostile_run(trained_run, tmp_path) -> tuple[Path, Path]:
    """A copy of a finished run whose last.ckpt is its real checkpoint plus an object whose
    unpickling would create ``marker``; and that marker's path."""
    folder = tmp_path / "shared_run"
    shutil.copytree(trained_run, folder)
    last = folder / "checkpoints" / "last.ckpt"
    marker = tmp_path / "code_ran"
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["note"] = CreatesMarker(marker)
    torch.save(checkpoint, last)
    return folder, marker


def refusal(error: pytest.ExceptionInfo, path: Path, key: str, trust_key: str) -> None:
    """The refusal names the key, the file, the refused global and the opt-in key."""
    message = str(error.value)
    assert message.startswith(f"{key}: '{path}' pickles objects besides tensors"), message
    assert "(here posix.system)" in message and f"set {trust_key}=true" in message


def test_every_loading_path_refuses_code_in_a_checkpoint(hostile_run, tmp_path):
    folder, marker = hostile_run
    last = folder / "checkpoints" / "last.ckpt"
    root = tmp_path / "work"

    with pytest.raises(UserError) as error:  # model.weights
        build_network(compose_in(root, "experiment=demo", f"model.weights={last}"))
    refusal(error, last, "model.weights", "model.weights_trusted")
    with pytest.raises(UserError) as error:  # a run from those weights: before any write
        train(compose_in(root, *SHORT_RUN, f"model.weights={last}"))
    refusal(error, last, "model.weights", "model.weights_trusted")
    assert not (root / "run").exists() and not (root / "data").exists()

    heatmap = compose_config("heatmap", f"run={last}")
    with pytest.raises(UserError) as error:  # run= (ecgexp-heatmap)
        extract_heatmaps(heatmap)
    refusal(error, last, "run", "ckpt_trusted")

    with pytest.raises(UserError) as error:  # resume=<folder>
        train(compose_in(root, f"resume={folder}"))
    refusal(error, last, "resume", "ckpt_trusted")

    same_folder = compose_in(root, *SHORT_RUN, "ckpt_path=last")
    with open_dict(same_folder):
        same_folder.paths.output_dir = str(folder)
    with pytest.raises(UserError) as error:  # ckpt_path=last in the run folder
        train(same_folder)
    refusal(error, last, "ckpt_path", "ckpt_trusted")

    with pytest.raises(UserError) as error:  # how Lightning reads (fit, best for predict)
        CheckpointFiles().load_checkpoint(last)
    refusal(error, last, "ckpt_path", "ckpt_trusted")
    assert not marker.exists()


def test_trusting_one_file_loads_it(trained_run, tmp_path):
    """``ckpt_trusted=true`` loads a file that pickles other objects (here a harmless one)."""
    folder = tmp_path / "run"
    shutil.copytree(trained_run, folder)
    best = folder / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(best, weights_only=True)
    torch.save({**checkpoint, "note": argparse.Namespace(lr=0.1)}, best)
    cfg = compose_config("heatmap", f"run={best}", "figures.max_exams=1", "select.top_k=2",
                         "ckpt_trusted=true")
    assert extract_heatmaps(cfg)["exams"] == 2
    assert read_checkpoint(best, "ckpt", trusted=True)["note"].lr == 0.1
    with pytest.raises(UserError, match=r"here argparse\.Namespace"):
        read_checkpoint(best, "ckpt")


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_unreadable_checkpoints_are_named(trained_run, tmp_path, damage):
    path = tmp_path / "last.ckpt"
    whole = (trained_run / "checkpoints" / "last.ckpt").read_bytes()
    path.write_bytes({"truncated": whole[:len(whole) // 2], "empty": b"",
                      "text": b"not a checkpoint"}[damage])
    with pytest.raises(UserError) as error:
        read_checkpoint(path, "ckpt")
    message = str(error.value)
    assert message.startswith(f"ckpt: '{path}' is ") and "\n" not in message
    assert ("empty" if damage == "empty" else "not a complete checkpoint") in message


@pytest.fixture
def tiny_file_system(tmpfs):
    """A 2 MiB file system (skipped where the machine refuses the mount)."""
    return tmpfs("small", "size=2m")


def test_safetensors_files_are_read_by_their_bytes_whatever_their_name(tmp_path):
    """A safetensors file (Hugging Face's weights format) is told from torch.save's files by
    its first bytes, so a renamed one still reads; its tensors come back as they were
    written (safetensors' own writer), and torch.save's zip and legacy pickle files are not
    taken for one."""
    from safetensors.torch import save_file

    tensors = {"encoder.weight": torch.arange(6.0).reshape(2, 3),
               "encoder.steps": torch.tensor([1, 2], dtype=torch.int64)}
    save_file(tensors, tmp_path / "model.safetensors")
    renamed = tmp_path / "weights.bin"
    shutil.copy(tmp_path / "model.safetensors", renamed)
    for path in (tmp_path / "model.safetensors", renamed):
        read = read_checkpoint(path, "model.weights")
        assert read.keys() == tensors.keys()
        for name, tensor in tensors.items():
            assert torch.equal(read[name], tensor) and read[name].dtype == tensor.dtype
    renamed.write_bytes(renamed.read_bytes()[:40])
    with pytest.raises(UserError, match=r"^model.weights: '.*weights.bin' is not a complete "
                                        r"safetensors file \(truncated or corrupt"):
        read_checkpoint(renamed, "model.weights")
    for legacy in (False, True):
        path = tmp_path / f"state_{legacy}.pt"
        torch.save(tensors, path, _use_new_zipfile_serialization=not legacy)
        assert read_checkpoint(path, "model.weights").keys() == tensors.keys()


def test_a_full_disk_leaves_the_previous_checkpoint(tiny_file_system):
    path = tiny_file_system / "last.ckpt"
    save_atomic({"weights": torch.ones(1000)}, path)  # 4 kB: fits
    with pytest.raises(UserError) as error:
        save_atomic({"weights": torch.ones(1_000_000)}, path)  # 4 MB: does not fit
    assert str(error.value) == (f"callbacks.model_checkpoint.dirpath: could not write "
                                f"checkpoint '{path}' (No space left on device); the previous "
                                f"file is kept")
    assert os.listdir(tiny_file_system) == ["last.ckpt"]  # no temporary file left
    torch.testing.assert_close(read_checkpoint(path, "ckpt")["weights"], torch.ones(1000))


def test_a_run_on_a_full_disk_stops_with_its_checkpoint_named(tiny_file_system, tmp_path):
    """The demo network's checkpoints are 1.6 MB: best.ckpt fits on 2 MiB, last.ckpt not."""
    cfg = compose_in(tmp_path, *SHORT_RUN,
                     f"callbacks.model_checkpoint.dirpath={tiny_file_system}")
    with pytest.raises(UserError, match=rf"could not write checkpoint "
                                        rf"'{tiny_file_system}/last.ckpt' \(No space left"):
        train(cfg)
    assert os.listdir(tiny_file_system) == ["best.ckpt"]
    assert "state_dict" in read_checkpoint(tiny_file_system / "best.ckpt", "ckpt")
