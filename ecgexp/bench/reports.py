"""Benchmark 4c, reports: the time and peak memory of ``ecgexp-evaluate`` and
``ecgexp-compare`` against the size of the predictions table (``reports.sizes`` rows, by
default 10k and 100k), and one evaluation of ``reports.largest`` rows (1M) that must complete.

The tables are fabricated in the layout of published predictions: float32 scores of 6 labels
(``.npy``) with their 0/1 label CSV (prevalence 5 %), and a second model's scores for the
comparison. Both commands run with their default settings (1000 bootstrap resamples, every
figure) in one subprocess of their own (``python -m ecgexp.bench.reports``), called there one
after the other: a time is the command's own work, without Python's start-up; the peak
resident set size (``VmHWM``) is reset before each (``/proc/self/clear_refs``), so each peak
is that command's, on top of the imports they share (also given as the growth above the
resident size at its start).

Targets, as ratios of the larger size to the smaller: time at most 12 for 10x the rows (no
worse than n log n: ``10 log(100k) / log(10k)`` = 12.5), peak memory at most 12. The check:
the AUROC interval of the first label at the smallest size, as the report wrote it, against
a per-resample loop over torchmetrics' AUROC on the same resamples (float32 rounding).
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ecgexp.bench.apart import main_of, measured_apart
from ecgexp.bench.checks import close
from ecgexp.bench.common import CONF_DIR, Context
from ecgexp.bench.report import Figure, Result

LABELS = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]


def fabricate(folder: Path, rows: int, seed: int, labels: list[str]) -> dict[str, Path]:
    """``{scores, other, labels}``: two models' scores and the label CSV of ``rows`` exams."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((rows, len(labels))) < 0.05).astype(np.int8)
    logits = rng.normal(size=targets.shape) + 2.5 * targets - 2.5
    files = {name: folder / f"{name}_{rows}.npy" for name in ("scores", "other")}
    np.save(files["scores"], (1 / (1 + np.exp(-logits))).astype(np.float32))
    other = logits + rng.normal(0, 0.3, size=logits.shape)
    np.save(files["other"], (1 / (1 + np.exp(-other))).astype(np.float32))
    files["labels"] = folder / f"labels_{rows}.csv"
    pd.DataFrame(targets, columns=labels).to_csv(files["labels"], index=False)
    return files


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


def _measured(command) -> dict:
    """Runs ``command()``; its wall time, peak and starting resident set size (KiB)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident size
    start = _resident_kib("VmRSS:")
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        command()
    return {"s": time.perf_counter() - started, "peak_rss_kib": _resident_kib("VmHWM:"),
            "start_rss_kib": start}


def run_commands(jobs: list[dict]) -> dict:
    """The subprocess's work: each job ``{name, command, overrides}`` composed from ecgexp's
    config tree and run in turn."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ecgexp.compare import compare
    from ecgexp.evaluate import evaluate

    commands = {"evaluate": evaluate, "compare": compare}
    measured = {}
    with contextlib.ExitStack() as hydra:
        if not GlobalHydra.instance().is_initialized():  # else: ecgexp-bench's own, isolate=false
            hydra.enter_context(initialize_config_dir(config_dir=str(CONF_DIR),
                                                      version_base="1.3"))
        for job in jobs:
            cfg = compose(job["command"], overrides=job["overrides"])
            measured[job["name"]] = _measured(lambda c=cfg, j=job: commands[j["command"]](c))
    return measured


def jobs_for(files: dict[int, dict[str, Path]], sizes: list[int], largest: int | None,
             out: Path) -> list[dict]:
    jobs = []
    for rows in sizes:
        f = files[rows]
        jobs += [{"name": f"evaluate_{rows}", "command": "evaluate",
                  "overrides": [f"predictions={f['scores']}", f"labels_csv={f['labels']}",
                                f"output_dir={out / f'evaluate_{rows}'}"]},
                 {"name": f"compare_{rows}", "command": "compare",
                  "overrides": [f"runs=[{f['scores']},{f['other']}]",
                                f"labels_csv={f['labels']}",
                                f"output_dir={out / f'compare_{rows}'}"]}]
    if largest:
        f = files[largest]
        jobs.append({"name": f"evaluate_{largest}", "command": "evaluate",
                     "overrides": [f"predictions={f['scores']}", f"labels_csv={f['labels']}",
                                   f"output_dir={out / f'evaluate_{largest}'}"]})
    return jobs


def loop_interval(files: dict[str, Path], n_resamples: int, seed: int, level: float
                  ) -> tuple[float, float]:
    """The first label's AUROC interval by a per-resample loop over torchmetrics."""
    import torch
    from torchmetrics.functional.classification import binary_auroc

    from ecgexp.metrics.bootstrap import Resamples, bootstrap, per_resample

    scores = np.load(files["scores"])[:, 0].astype(np.float64)
    targets = pd.read_csv(files["labels"])[LABELS[0]].to_numpy()

    def area(s, t):
        return float(binary_auroc(torch.tensor(s), torch.tensor(t))) if 0 < t.sum() < len(t) \
            else np.nan
    interval = bootstrap(per_resample(area, [scores, targets]),
                         Resamples(len(scores), n_resamples, seed), level)
    return float(interval["lower"]), float(interval["upper"])


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.reports
    sizes = sorted(settings.sizes)
    folder = context.scratch / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    every = sizes + ([settings.largest] if settings.largest else [])
    labels = LABELS[:settings.labels]
    files = {rows: fabricate(folder, rows, cfg.seed, labels) for rows in every}
    out = folder / f"out_{time.strftime('%H%M%S')}"
    measured = measured_apart(cfg, __name__, jobs_for(files, sizes, settings.largest, out),
                              settings.timeout_s, "reports")
    small, large = sizes[0], sizes[-1]
    figures = []
    for name in ("evaluate", "compare"):
        a, b = measured[f"{name}_{small}"], measured[f"{name}_{large}"]
        figures += [Figure(f"ecgexp-{name} time, {large} vs {small} rows", b["s"], a["s"], "s",
                           f"{small} rows", settings.target_time, "at_most"),
                    Figure(f"ecgexp-{name} peak RSS, {large} vs {small} rows",
                           b["peak_rss_kib"] / 1024, a["peak_rss_kib"] / 1024, "MiB",
                           f"{small} rows", settings.target_memory, "at_most")]
    notes = []
    if settings.largest:
        big = measured[f"evaluate_{settings.largest}"]
        notes.append(f"ecgexp-evaluate of {settings.largest} rows completed in {big['s']:.1f} s, "
                     f"peak RSS {big['peak_rss_kib'] / 1024:.0f} MiB")
    report = pd.read_csv(out / f"evaluate_{small}" / "bootstrap.csv")
    row = report[(report.label == LABELS[0]) & (report.metric == "auroc")].iloc[0]
    bootstrap = OmegaConf.load(CONF_DIR / "bootstrap" / "default.yaml")  # what evaluate used
    expected = loop_interval(files[small], bootstrap.n_resamples, bootstrap.seed,
                             bootstrap.level)
    checks = [close(f"AUROC interval of {LABELS[0]} at {small} rows: report vs per-resample "
                    f"torchmetrics loop", [row.lower, row.upper], list(expected), small)]
    return Result(figures=figures, checks=checks,
                  details={"sizes": sizes, "largest": settings.largest, "measured": measured,
                           "labels": labels, "bootstrap_resamples": bootstrap.n_resamples,
                           "excluded": "Python start-up and imports (one subprocess)"},
                  notes=notes)


main = run_commands

if __name__ == "__main__":
    main_of(main)
