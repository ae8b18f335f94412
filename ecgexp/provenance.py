"""What produced a run: the command, the host, package versions, the git commit of the code and
a fingerprint of each dataset file.

Tracing files (HDF5, possibly many GB) are fingerprinted by their size and a SHA-256 over a
sample of their bytes: ``SAMPLE_BLOCKS`` blocks of ``SAMPLE_BLOCK_BYTES``, the first at the
start, the last at the end and the others evenly spaced between (block ``i`` of ``n`` starts at
byte ``i * (size - block) // (n - 1)``), hashed in that order. A file no larger than the whole
sample is hashed whole, so its ``sampled_sha256`` is its plain SHA-256. Label CSVs are hashed
whole.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("ecgexp", "torch", "pytorch-lightning", "torchmetrics", "hydra-core",
            "hydra-optuna-sweeper", "h5py", "numpy", "scipy", "pandas", "wfdb", "captum", "wandb")
SAMPLE_BLOCK_BYTES = 1 << 20
SAMPLE_BLOCKS = 8
# What a sampled tracing fingerprint tells: the hash sees the sampled blocks only, so an edit
# elsewhere in the file shows in its change time (ctime: every write changes it, no user can
# set it) and, when it changes the size, in the size.
COVERS = (f"the SHA-256 of {SAMPLE_BLOCKS} evenly spaced blocks of {SAMPLE_BLOCK_BYTES} bytes; "
          f"an edit outside them shows only in 'changed' (ctime) and 'bytes'")


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


def _total_memory() -> int | None:
    """Physical memory in bytes, where the OS reports it through ``sysconf`` (not on Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def host() -> dict:
    """The machine: name, OS, architecture, CPUs, memory (bytes), CUDA devices, torch threads."""
    cuda = torch.cuda.is_available()
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "memory_bytes": _total_memory(), "torch_threads": torch.get_num_threads(),
            "cuda_devices": [torch.cuda.get_device_name(i)
                             for i in range(torch.cuda.device_count())] if cuda else []}


def sha256(path: Path) -> str:
    """SHA-256 of the whole file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sampled_sha256(path: Path, block_bytes: int = SAMPLE_BLOCK_BYTES,
                   blocks: int = SAMPLE_BLOCKS) -> str:
    """SHA-256 over ``blocks`` evenly spaced blocks of the file (the rule in the module
    docstring); the plain SHA-256 when the file is no larger than ``blocks * block_bytes``."""
    size = path.stat().st_size
    if size <= blocks * block_bytes:
        return sha256(path)
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for i in range(blocks):
            file.seek(i * (size - block_bytes) // (blocks - 1))
            digest.update(file.read(block_bytes))
    return digest.hexdigest()


def tracing_fingerprint(path: Path) -> dict:
    """Size, modification and change times and sampled SHA-256, with the sampling rule and
    what the fingerprint covers."""
    stat = path.stat()
    hashed = min(stat.st_size, SAMPLE_BLOCK_BYTES * SAMPLE_BLOCKS)
    return {"path": str(path.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime,
            "changed": stat.st_ctime, "sampled_sha256": sampled_sha256(path),
            "sampling": {"block_bytes": SAMPLE_BLOCK_BYTES, "blocks": SAMPLE_BLOCKS,
                         "hashed_bytes": hashed},
            "covers": COVERS if hashed < stat.st_size else "every byte (SHA-256 of the file)"}


def label_fingerprint(path: Path) -> dict:
    """Size, modification time and SHA-256 of the whole file."""
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime,
            "sha256": sha256(path)}


def provenance(tracing_files: list[Path], label_files: list[Path]) -> dict:
    """Command line, start time (UTC), host, versions, commit and dataset fingerprints."""
    return {"command": sys.argv,
            "start_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": host(),
            "python": platform.python_version(),
            "packages": {name: _version(name) for name in PACKAGES},
            "git_commit": git_commit(Path(__file__).parent),
            "dataset": {"tracing_files": [tracing_fingerprint(f) for f in tracing_files],
                        "label_files": [label_fingerprint(f) for f in label_files]}}


def _size(n_bytes: int) -> str:
    """``n_bytes`` in the largest decimal unit it reaches: 13.7 kB, 12.0 MB, 2.1 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"


def summary(record: dict, max_files: int = 4) -> str:
    """One line for the log: commit, host and each dataset file (name, size, first 12 hex digits
    of its hash), the first ``max_files`` of each kind and a count of the rest."""
    machine = record["host"]
    devices = ", ".join(machine["cuda_devices"]) or "no CUDA"
    parts = [f"provenance: commit {record['git_commit'] or 'unknown (not a git checkout)'}",
             f"host {machine['hostname']} ({machine['cpu_count']} CPUs, {devices})"]
    for kind, key in (("tracing_files", "sampled_sha256"), ("label_files", "sha256")):
        files = record["dataset"][kind]
        parts += [f"{Path(f['path']).name} {_size(f['bytes'])} {key} {f[key][:12]}"
                  for f in files[:max_files]]
        if len(files) > max_files:
            parts.append(f"and {len(files) - max_files} more {kind.replace('_', ' ')}")
    return "; ".join(parts)
