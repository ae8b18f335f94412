"""``ecgexp-heatmap``: saliency heatmaps of a trained model."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ecgexp.errors import reported
from ecgexp.startup import CONFIG_PATH, groups_not_null


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="heatmap")
@reported
def heatmap(cfg: DictConfig) -> None:
    """``ecgexp-heatmap``: saliency heatmaps of a trained model, into its run folder."""
    from ecgexp.interpret.heatmaps import extract_heatmaps

    extract_heatmaps(cfg)
