"""``ecgexp``: train a task, predict its validation and test splits, evaluate them."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ecgexp.errors import is_user_error, reported
from ecgexp.startup import CONFIG_PATH, groups_not_null


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
@reported
def main(cfg: DictConfig) -> float | None:
    """``ecgexp``: train, predict and evaluate; returns ``optimized_metric`` for sweepers."""
    from ecgexp.config_checks import check

    try:
        check(cfg, "train")  # again for each job of a multirun, whose values the sweeper sets
        from ecgexp.train import train

        return optimized_value(train(cfg), cfg.get("optimized_metric"))
    except Exception as error:
        if is_user_error(error):  # a bad input: the run folder Hydra made for it goes too
            discard_hydra_folder()
        raise


def discard_hydra_folder() -> None:
    """Removes this job's Hydra folder if the job wrote nothing into it."""
    from hydra.core.hydra_config import HydraConfig

    from ecgexp.config import run_token
    from ecgexp.run_folder import discard_unused

    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        discard_unused(hydra.runtime.output_dir, run_token(), f"{hydra.job.name}.log")


def optimized_value(metrics: dict[str, float] | None, name: str | None) -> float | None:
    """The metric a sweeper optimises (``optimized_metric``), or None when none is named (or
    in a process of a distributed run that has no metrics)."""
    if not name or metrics is None:
        return None
    if name not in metrics:
        choices = ", ".join(m for m in metrics if m.startswith("val/"))
        raise KeyError(f"optimized_metric: the run has no metric '{name}'; validation metrics "
                       f"are: {choices}")
    return metrics[name]
