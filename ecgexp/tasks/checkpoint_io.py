"""The trainer's ``CheckpointIO`` plugin: Lightning reads checkpoints through ecgexp's one
reader and writes them atomically (:mod:`ecgexp.checkpoints`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_fabric.plugins import TorchCheckpointIO

from ecgexp.checkpoints import read_checkpoint, save_atomic


class CheckpointFiles(TorchCheckpointIO):
    """The trainer's checkpoint plugin: atomic writes, and reads through the one reader.

    Args:
        key: the config key that named checkpoints to start from (in errors).
        trusted: paths loaded with ``weights_only=False`` (``ckpt_trusted=true`` adds the
            checkpoint the run resumes from); every other file is read with
            ``weights_only=True``.
    """

    def __init__(self, key: str = "ckpt_path", trusted: tuple[str | Path, ...] = ()):
        self.key = key
        self.trusted = {Path(p).resolve() for p in trusted}

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("CheckpointFiles.save_checkpoint takes no storage_options")
        save_atomic(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        trusted = Path(path).resolve() in self.trusted
        return read_checkpoint(path, self.key, trusted=trusted, trust_key="ckpt_trusted")
