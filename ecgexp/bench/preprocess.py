"""Benchmark 4a, preprocessing: conversion throughput of ``ecgexp-preprocess`` with
``preprocess.workers`` processes against a serial loop of the same steps (``workers=1``), in
the same run, on ``preprocess.records`` synthetic 10 s exams resampled to 500 Hz and written as
16-bit WFDB records; every record must convert.

Also the signal steps alone on the same records in memory (baseline removal and a 60 Hz notch,
resampling to 400 Hz) with the cached filter designs (``ecgexp.signal.filters``) against the
same steps with the caches cleared before each record (a design per record), checked equal
exactly (the same design function on the same arguments, then the same filtering).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import wfdb
from omegaconf import DictConfig
from scipy.signal import resample_poly

from ecgexp.bench.checks import exact, none_of
from ecgexp.bench.common import Context, interleaved
from ecgexp.bench.report import Figure, Result
from ecgexp.data.convert import convert
from ecgexp.data.synthetic import synthesize_exams
from ecgexp.signal import filters
from ecgexp.signal.leads import CANONICAL_LEADS
from ecgexp.signal.pipeline import SignalPipeline

RECORD_RATE = 500  # Hz


def record_signals(n_records: int) -> np.ndarray:
    """``(n, 5000, 12)`` synthetic 10 s exams at 500 Hz, in mV."""
    tracings, _ = synthesize_exams(n_records, seed=0)  # (n, 4096, 12) at 400 Hz
    start = (tracings.shape[1] - 4000) // 2
    return resample_poly(tracings[:, start:start + 4000], 5, 4, axis=1)


def write_records(folder: Path, signals: np.ndarray) -> None:
    """The signals as 16-bit WFDB records ``00000`` .. in ``folder``."""
    for i, signal in enumerate(signals):
        wfdb.wrsamp(f"{i:05d}", fs=RECORD_RATE, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS),
                    p_signal=signal, fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                    baseline=[0] * 12, write_dir=str(folder))


def timed_conversion(folder: Path, output: Path, workers: int) -> tuple[float, int]:
    """Seconds of converting the records of ``folder``, and how many were rejected."""
    started = time.perf_counter()
    result = convert(folder, output, SignalPipeline(), workers=workers, batch_size=64)
    return time.perf_counter() - started, result["rejected"]


def steps_rate(signals: np.ndarray, cached: bool) -> tuple[float, np.ndarray]:
    """Records/s of the signal steps over ``signals``; with ``cached=False`` the filter
    designs are recomputed for every record."""
    pipeline = SignalPipeline(powerline_hz=60)
    outputs = []
    started = time.perf_counter()
    for signal in signals:
        if not cached:
            filters.baseline_filter.cache_clear()
            filters.notch_filter.cache_clear()
        outputs.append(pipeline(signal, RECORD_RATE, CANONICAL_LEADS))
    return len(signals) / (time.perf_counter() - started), np.stack(outputs)


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.preprocess
    signals = record_signals(settings.records)
    with tempfile.TemporaryDirectory(dir=context.scratch) as scratch:
        folder = Path(scratch) / "records"
        folder.mkdir()
        write_records(folder, signals)
        serial, serial_rejected = timed_conversion(folder, Path(scratch) / "serial.h5",
                                                   workers=1)
        parallel, parallel_rejected = timed_conversion(folder, Path(scratch) / "parallel.h5",
                                                       workers=settings.workers)
    steps = signals[:settings.step_records]
    _, cached_out = steps_rate(steps, cached=True)
    _, uncached_out = steps_rate(steps, cached=False)
    checks = [none_of("serial conversion: every record converted", serial_rejected,
                      "records rejected"),
              none_of(f"conversion with {settings.workers} workers: every record converted",
                      parallel_rejected, "records rejected"),
              exact("signal steps: cached vs fresh filter designs", cached_out, uncached_out,
                    "the same design of the same arguments")]
    rates = interleaved({"cached": lambda: steps_rate(steps, True)[0],
                         "uncached": lambda: steps_rate(steps, False)[0]}, settings.repeats)
    n = settings.records
    return Result(
        figures=[
            Figure(f"records/s, convert with {settings.workers} workers vs serial",
                   n / parallel, n / serial, "records/s", "workers=1", settings.target),
            Figure("records/s, signal steps with cached vs fresh filter designs",
                   max(rates["cached"]), max(rates["uncached"]), "records/s",
                   "design per record", settings.target_cache)],
        details={"records": n, "workers": settings.workers, "serial_s": serial,
                 "parallel_s": parallel,
                 "parallel_records_per_s_per_worker": n / parallel / settings.workers,
                 "signal_step_records": len(steps), "signal_steps_records_per_s": rates},
        checks=checks)
