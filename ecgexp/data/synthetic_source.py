"""The bundled synthetic dataset as an exam source, generated on first use."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ecgexp.data.source import HDF5Source
from ecgexp.data.synthetic import write_code15

log = logging.getLogger(__name__)


class SyntheticSource(HDF5Source):
    """The bundled synthetic dataset: an ``HDF5Source`` (``source_options`` as for it) over
    the CODE-15%-layout dataset in ``directory``, which is generated first unless it is
    already there.

    Generation goes to a temporary sibling folder that is renamed at the end, so an interrupted
    run never leaves a half-written dataset behind and an existing folder is never touched.
    """

    def __init__(self, directory: str, n_exams: int, n_parts: int, synthesis_seed: int,
                 **source_options):
        generate(Path(directory), n_exams, n_parts, synthesis_seed)
        super().__init__(**source_options)


def generate(directory: Path, n_exams: int, n_parts: int, synthesis_seed: int) -> None:
    """Writes the dataset into the new folder ``directory`` (nothing when it is there)."""
    if not directory.exists():
        log.info("generating %d synthetic exams into %s", n_exams, directory)
        staging = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        write_code15(staging, n_exams=n_exams, n_parts=n_parts, seed=synthesis_seed)
        try:
            staging.rename(directory)
        except OSError:  # another run finished the same dataset first
            shutil.rmtree(staging, ignore_errors=True)
    elif not (directory / "exams.csv").is_file():
        raise FileNotFoundError(f"dataset.directory: '{directory}' exists but has no exams.csv; "
                                f"remove it or point dataset.directory elsewhere")
