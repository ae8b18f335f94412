"""``ecgexp-synth``: a synthetic dataset in the CODE-15% layout."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ecgexp.errors import reported
from ecgexp.startup import CONFIG_PATH, groups_not_null


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="synth")
@reported
def synth(cfg: DictConfig) -> None:
    """``ecgexp-synth``: write a synthetic dataset in the CODE-15% layout."""
    from ecgexp.data.synthetic import write_code15
    from ecgexp.files import writable_folder

    writable_folder(cfg.output_dir, "output_dir")
    directory = write_code15(cfg.output_dir, n_exams=cfg.n_exams, n_parts=cfg.n_parts,
                             seed=cfg.seed)
    print(f"Synthetic CODE-15% dataset: {Path(directory).resolve()}")
