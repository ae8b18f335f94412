"""``ecgexp-predict``: a trained model's predictions for every exam of a dataset."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ecgexp.errors import reported
from ecgexp.startup import CONFIG_PATH, groups_not_null


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
@reported
def predict(cfg: DictConfig) -> None:
    """``ecgexp-predict``: a trained model's predictions for every exam of a dataset."""
    from ecgexp.predict import predict as run_prediction

    run_prediction(cfg)
