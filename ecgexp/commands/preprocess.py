"""``ecgexp-preprocess``: raw ECG records into the CODE HDF5 layout."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ecgexp.errors import reported
from ecgexp.startup import CONFIG_PATH, groups_not_null


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="preprocess")
@reported
def preprocess(cfg: DictConfig) -> None:
    """``ecgexp-preprocess``: convert raw ECG records into the CODE HDF5 layout."""
    from hydra.utils import instantiate

    from ecgexp.data.convert import convert

    result = convert(cfg.input, cfg.output, instantiate(cfg.preprocessing),
                     workers=cfg.workers, batch_size=cfg.batch_size, ids=cfg.ids,
                     quality=instantiate(cfg.get("quality")),
                     label_map=instantiate(cfg.get("labels")))
    print(f"Converted {result['converted']} records, rejected {result['rejected']}: "
          f"{result['output']} (metadata {result['metadata_csv']}, "
          f"rejections {result['report_csv']}, quality {result['quality_csv']})")
