"""``ecgexp-bench``: the benchmark suite (``bench.yaml``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ecgexp.errors import reported
from ecgexp.startup import CONFIG_PATH, bare_arguments_to_override, groups_not_null


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="bench")
@reported
def _bench(cfg: DictConfig) -> None:
    from ecgexp.bench.runner import run_suite

    run_suite(cfg)


def bench() -> None:
    """``ecgexp-bench [name ...] [key=value ...]``: the benchmark suite (``bench.yaml``); bare
    leading names choose benchmarks (``ecgexp-bench training data`` is
    ``benchmarks=['training','data']``), none runs them all."""
    bare_arguments_to_override("benchmarks", many=True)
    _bench()
