"""``ecgexp-compare``: runs of one task compared on their shared exams."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ecgexp.errors import reported
from ecgexp.startup import CONFIG_PATH, groups_not_null


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="compare")
@reported
def compare(cfg: DictConfig) -> None:
    """``ecgexp-compare``: runs of one task compared on their shared exams, paired tests."""
    from ecgexp.compare import compare as run_comparison

    run_comparison(cfg)
