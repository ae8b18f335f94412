"""Console scripts: thin Hydra entry points around plain functions."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import ecgexp  # noqa: F401  (registers the OmegaConf resolvers)

CONFIG_PATH = str(Path(__file__).parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """``ecgexp``: train, predict and evaluate; returns ``optimized_metric`` for sweepers.

    A task whose config names an ``entry`` (``task=heatmap``) runs that function instead."""
    if cfg.task.get("entry"):
        from hydra.utils import get_method

        return get_method(cfg.task.entry)(cfg)
    from ecgexp.train import train

    metrics = train(cfg)
    return metrics.get(cfg.optimized_metric) if cfg.get("optimized_metric") else None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="synth")
def synth(cfg: DictConfig) -> None:
    """``ecgexp-synth``: write a synthetic dataset in the CODE-15% layout."""
    from ecgexp.data.synthetic import write_code15

    directory = write_code15(cfg.output_dir, n_exams=cfg.n_exams, n_parts=cfg.n_parts,
                             seed=cfg.seed)
    print(f"Synthetic CODE-15% dataset: {Path(directory).resolve()}")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="preprocess")
def preprocess(cfg: DictConfig) -> None:
    """``ecgexp-preprocess``: convert raw ECG records into the CODE HDF5 layout."""
    from hydra.utils import instantiate

    from ecgexp.preprocess import convert

    result = convert(cfg.input, cfg.output, instantiate(cfg.preprocessing),
                     workers=cfg.workers, batch_size=cfg.batch_size, ids=cfg.ids)
    print(f"Converted {result['converted']} records, rejected {result['rejected']}: "
          f"{result['output']} (metadata {result['metadata_csv']}, "
          f"rejections {result['report_csv']})")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def evaluate(cfg: DictConfig) -> None:
    """``ecgexp-evaluate``: recompute a run's metrics and write its report folder."""
    from ecgexp.evaluate import evaluate as run_evaluation

    run_evaluation(cfg)
