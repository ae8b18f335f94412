"""What produced a run: package versions, the git commit of the code, the dataset files."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("ecgexp", "torch", "pytorch-lightning", "torchmetrics", "hydra-core", "h5py",
            "numpy", "pandas")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit(directory: Path) -> str | None:
    """The commit checked out in ``directory`` (``+dirty`` with local changes), if it is a repo."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=directory, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty.strip() else commit


def file_fingerprint(path: Path, hash_content: bool) -> dict:
    """Size and modification time; with ``hash_content`` also the SHA-256 of the bytes."""
    stat = path.stat()
    fingerprint = {"path": str(path.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime}
    if hash_content:
        fingerprint["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return fingerprint


def provenance(tracing_files: list[Path], label_files: list[Path]) -> dict:
    """Versions, commit and dataset fingerprint (tracing files by size and time, labels hashed)."""
    return {"python": platform.python_version(),
            "packages": {name: _version(name) for name in PACKAGES},
            "git_commit": git_commit(Path(__file__).parent),
            "dataset": {"tracing_files": [file_fingerprint(f, hash_content=False)
                                          for f in tracing_files],
                        "label_files": [file_fingerprint(f, hash_content=True)
                                        for f in label_files]}}
