"""Part 3 of the predict benchmark: the peak memory of ``ecgexp-predict``'s process against
the number of exams (``predict.memory.sizes``, by default 1k and 40k synthetic exams), which
should stay flat: the exams are read, predicted and screened a batch at a time.

Each size predicts every exam of its synthetic dataset (written beforehand by the suite's
process) into a CSV through :func:`ecgexp.inference.table.write_dataset_predictions` (what
``ecgexp-predict`` calls: the rows are written as they are predicted) with ``ecgexp-predict``'s
default of 2 loader workers, the sizes one after the other in a subprocess of their own
(``python -m ecgexp.bench.predict_memory``), the smallest first. The peak resident set size
(``VmHWM``, the main process's: the workers are forked copies whose pages it shares) is reset
before each size (``/proc/self/clear_refs``), so each peak is that size's, on top of what the
imports and the model hold. The network is
shrunk (``predict.memory.overrides``) to fit the suite's time: its weights are the same few
MB at every size, and the tracings keep their 4096 x 12 samples (40k exams are 7.9 GB read).
"""

from __future__ import annotations

import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from ecgexp.bench.apart import main_of, measured_apart
from ecgexp.bench.common import Context, compose_train, initial_weights, trained_model
from ecgexp.bench.report import Figure


def size_overrides(cfg: DictConfig, context: Context, size: int) -> list[str]:
    return [*cfg.train_overrides, f"paths.data_dir={context.scratch / 'data'}",
            f"dataset.n_exams={size}", f"seed={cfg.seed}", *cfg.predict.memory.overrides]


def predict_every_exam(overrides: list[str], num_workers: int, batch_size: int,
                       output_dir: str, size: int) -> dict:
    """Every exam of the composed dataset predicted; the peak memory since the call began."""
    from ecgexp.contract import input_contract
    from ecgexp.inference.inputs import dataset_for
    from ecgexp.inference.table import write_dataset_predictions

    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident size
    train_cfg = compose_train(overrides)
    with open_dict(train_cfg):
        train_cfg.paths.output_dir = output_dir  # no Hydra run here to name it
    source = instantiate(dataset_for(train_cfg.dataset, input_contract(train_cfg, None),
                                     train_cfg))
    contract = input_contract(train_cfg, source)
    model = trained_model(train_cfg, initial_weights(train_cfg), contract)
    started = time.perf_counter()
    output = Path(output_dir) / f"predictions_{size}.csv"
    output.parent.mkdir(parents=True, exist_ok=True)
    findings = write_dataset_predictions([model], {}, source, contract, output, batch_size,
                                         num_workers, "cpu", progress=False)
    seconds = time.perf_counter() - started
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    output.unlink()
    return {"exams": findings.exams, "predicted": findings.exams - findings.count("problem"),
            "s": seconds, "peak_rss_kib": peak}


def measure(cfg: DictConfig, context: Context) -> tuple[list[Figure], dict]:
    settings = cfg.predict.memory
    sizes = sorted(settings.sizes)
    jobs = []
    for size in sizes:
        overrides = size_overrides(cfg, context, size)
        instantiate(compose_train(overrides).dataset)  # writes the exams, outside the measure
        jobs.append({"size": size, "overrides": overrides, "num_workers": settings.num_workers,
                     "batch_size": cfg.predict.batch_size,
                     "output_dir": str(context.scratch / "run")})
    per_size = {int(size): result for size, result in measured_apart(
        cfg, __name__, jobs, settings.timeout_s, "predict (memory)").items()}
    small, large = per_size[sizes[0]], per_size[sizes[-1]]
    figure = Figure(f"peak RSS of ecgexp-predict's process, {sizes[-1]} vs {sizes[0]} exams "
                    f"({settings.num_workers} workers)", large["peak_rss_kib"] / 1024,
                    small["peak_rss_kib"] / 1024, "MiB", f"{sizes[0]} exams", settings.target,
                    "at_most")
    return [figure], {"sizes": sizes, "per_size": per_size,
                      "overrides": list(settings.overrides)}


def main(jobs: list[dict]) -> dict:
    return {job["size"]: predict_every_exam(job["overrides"], job["num_workers"],
                                            job["batch_size"], job["output_dir"], job["size"])
            for job in jobs}


if __name__ == "__main__":
    main_of(main)
