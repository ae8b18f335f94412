"""``ecgexp-evaluate``: a run's metrics and report folder."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ecgexp.errors import reported
from ecgexp.startup import CONFIG_PATH, groups_not_null


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
@reported
def evaluate(cfg: DictConfig) -> None:
    """``ecgexp-evaluate``: recompute a run's metrics and write its report folder."""
    from ecgexp.evaluate import evaluate as run_evaluation

    run_evaluation(cfg)
