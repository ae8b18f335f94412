"""What is built once per test session for every pytest-xdist worker, and the run folders a
command wrote."""

import os
import shutil
from pathlib import Path

from filelock import FileLock


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The path ``build(folder)`` returns, built once per test session into ``folder``. Under
    pytest-xdist the workers share it: the first to need it builds it under a file lock, the
    others wait for it and reuse it (a build cut short is started again)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built_once"
    root.mkdir(exist_ok=True)
    done = root / f"{name}.done"
    with FileLock(root / f"{name}.lock"):
        if not done.is_file():
            shutil.rmtree(root / name, ignore_errors=True)
            done.with_suffix(".partial").write_text(str(build(root / name)))
            done.with_suffix(".partial").rename(done)
    return Path(done.read_text())


def run_folders(root: Path) -> list[Path]:
    """The finished run folders (with metrics.json) under ``root``."""
    return sorted(p.parent for p in root.rglob("metrics.json"))
