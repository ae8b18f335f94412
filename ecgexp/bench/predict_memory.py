"""Part 3 of the predict benchmark: the peak memory of ``ecgexp-predict``'s process against
the number of exams (``predict.memory.sizes``, by default 1k and 40k synthetic exams), which
should stay flat: the exams are read, predicted and screened a batch at a time.

Each size predicts every exam of its synthetic dataset (written beforehand by the suite's
process) through :func:`ecgexp.prediction.table.dataset_predictions` with ``ecgexp-predict``'s
default of 2 loader workers, in a subprocess of its own (``python -m
ecgexp.bench.predict_memory``), so that its peak resident set size (``VmHWM``, the main
process's: the workers are forked copies whose pages it shares) is its own. The network is
shrunk (``predict.memory.overrides``) to fit the suite's time: its weights are the same few
MB at every size, and the tracings keep their 4096 x 12 samples (40k exams are 7.9 GB read).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from ecgexp.bench.common import Context, compose_train, initial_weights, trained_model
from ecgexp.bench.report import Figure


def size_overrides(cfg: DictConfig, context: Context, size: int) -> list[str]:
    return [*cfg.train_overrides, f"paths.data_dir={context.scratch / 'data'}",
            f"dataset.n_exams={size}", f"seed={cfg.seed}", *cfg.predict.memory.overrides]


def predict_every_exam(overrides: list[str], num_workers: int, batch_size: int,
                       output_dir: str) -> dict:
    """The subprocess's work: every exam of the composed dataset predicted; its peak memory."""
    from ecgexp.contract import input_contract
    from ecgexp.prediction.inputs import dataset_for
    from ecgexp.prediction.table import dataset_predictions

    train_cfg = compose_train(overrides)
    with open_dict(train_cfg):
        train_cfg.paths.output_dir = output_dir  # no Hydra run here to name it
    source = instantiate(dataset_for(train_cfg.dataset, input_contract(train_cfg, None),
                                     train_cfg))
    contract = input_contract(train_cfg, source)
    model = trained_model(train_cfg, initial_weights(train_cfg), contract)
    started = time.perf_counter()
    table = dataset_predictions([model], {}, source, contract, batch_size, num_workers, "cpu",
                                progress=False)
    seconds = time.perf_counter() - started
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return {"exams": len(table), "predicted": int((table["problem"] == "").sum()),
            "s": seconds, "peak_rss_kib": peak}


def measure(cfg: DictConfig, context: Context) -> tuple[list[Figure], dict]:
    settings = cfg.predict.memory
    sizes = sorted(settings.sizes)
    per_size = {}
    for size in sizes:
        overrides = size_overrides(cfg, context, size)
        train_cfg = compose_train(overrides)
        instantiate(train_cfg.dataset)  # writes the synthetic exams, outside the measurement
        command = [sys.executable, "-m", "ecgexp.bench.predict_memory",
                   json.dumps({"overrides": overrides, "num_workers": settings.num_workers,
                               "batch_size": cfg.predict.batch_size,
                               "output_dir": str(context.scratch / "run")})]
        finished = subprocess.run(command, capture_output=True, text=True,
                                  timeout=settings.timeout_s)
        if finished.returncode:
            raise RuntimeError(f"bench predict: the {size}-exam prediction failed:\n"
                               f"{finished.stderr[-3000:]}")
        per_size[size] = json.loads(finished.stdout.strip().splitlines()[-1])
    small, large = per_size[sizes[0]], per_size[sizes[-1]]
    figure = Figure(f"peak RSS of ecgexp-predict's process, {sizes[-1]} vs {sizes[0]} exams "
                    f"({settings.num_workers} workers)", large["peak_rss_kib"] / 1024,
                    small["peak_rss_kib"] / 1024, "MiB", f"{sizes[0]} exams", settings.target,
                    "at_most")
    return [figure], {"sizes": sizes, "per_size": per_size,
                      "overrides": list(settings.overrides)}


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    print(json.dumps(predict_every_exam(arguments["overrides"], arguments["num_workers"],
                                        arguments["batch_size"], arguments["output_dir"])))
