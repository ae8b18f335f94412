"""``ecgexp.tasks.checkpoint_io``: the trainer's checkpoint plugin on small files in
``tmp_path``: what it saves is what ``torch.load`` reads back (and what it loads is what
``torch.save`` wrote), written whole with no temporary left, a file pickling another object
refused unless its path is among the trusted ones (however spelled), and the errors by their
text with the plugin's config key."""

import argparse
import os

import pytest
import torch

from ecgexp.errors import UserError
from ecgexp.tasks.checkpoint_io import CheckpointFiles


def state():
    return {"epoch": 3, "state_dict": {"w": torch.arange(6.0).reshape(2, 3)}}


def test_saved_checkpoints_read_back_with_torch_load_and_replace_the_old(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    CheckpointFiles().save_checkpoint({"epoch": 1}, path)
    CheckpointFiles().save_checkpoint(state(), path)
    stored = torch.load(path, weights_only=True)
    assert stored["epoch"] == 3
    assert torch.equal(stored["state_dict"]["w"], torch.arange(6.0).reshape(2, 3))
    assert os.listdir(path.parent) == ["last.ckpt"]


def test_storage_options_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(TypeError, match=r"^CheckpointFiles\.save_checkpoint takes no "
                                        r"storage_options$"):
        CheckpointFiles().save_checkpoint(state(), tmp_path / "x.ckpt", storage_options={})
    assert list(tmp_path.iterdir()) == []


def test_tensors_load_on_the_cpu(tmp_path):
    path = tmp_path / "best.ckpt"
    torch.save(state(), path)
    loaded = CheckpointFiles().load_checkpoint(path, map_location="cuda:0")
    assert loaded["epoch"] == 3 and loaded["state_dict"]["w"].device.type == "cpu"
    assert torch.equal(loaded["state_dict"]["w"], state()["state_dict"]["w"])


def test_other_objects_load_only_from_a_trusted_path(tmp_path, monkeypatch):
    path = tmp_path / "resume.ckpt"
    torch.save({**state(), "note": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UserError, match=r"^ckpt_path: '.*resume\.ckpt' pickles objects besides "
                                        r"tensors \(here argparse\.Namespace\), .* set "
                                        r"ckpt_trusted=true, or re-save"):
        CheckpointFiles().load_checkpoint(path)
    with pytest.raises(UserError, match=r"^init_from: .* set ckpt_trusted=true"):
        CheckpointFiles("init_from", trusted=[tmp_path / "other.ckpt"]).load_checkpoint(path)
    monkeypatch.chdir(tmp_path)
    plugin = CheckpointFiles(trusted=["./sub/../resume.ckpt"])  # the same file, spelled otherwise
    assert plugin.load_checkpoint(path)["note"].lr == 0.1
    assert plugin.load_checkpoint("resume.ckpt", weights_only=True)["note"].lr == 0.1


def test_missing_and_empty_files_are_named_with_the_key(tmp_path):
    with pytest.raises(UserError, match=r"^ckpt_path: no checkpoint or weights file at "
                                        r"'.*nowhere\.ckpt'$"):
        CheckpointFiles().load_checkpoint(tmp_path / "nowhere.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(UserError, match=r"^resume: '.*empty\.ckpt' is empty"):
        CheckpointFiles("resume").load_checkpoint(tmp_path / "empty.ckpt")
