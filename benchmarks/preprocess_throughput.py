"""Conversion throughput of ``ecgexp-preprocess``: the parallel converter against a serial loop
of the same steps, in the same run, on synthetic 500 Hz WFDB records.

    .venv/bin/python benchmarks/preprocess_throughput.py [n_records] [workers]

Prints records/s of both, their ratio and records/s per worker, and writes them as JSON to
``benchmarks/results/preprocess-<date>-<host>.json``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import wfdb
from report import print_results, write_results
from scipy.signal import resample_poly

from ecgexp.data.synthetic import synthesize_exams
from ecgexp.preprocess import convert
from ecgexp.signal.leads import CANONICAL_LEADS
from ecgexp.signal.pipeline import SignalPipeline

RECORD_RATE = 500  # Hz


def write_records(folder: Path, n_records: int) -> None:
    """Synthetic 10 s exams resampled to 500 Hz, written as 16-bit WFDB records."""
    tracings, _ = synthesize_exams(n_records, seed=0)  # (n, 4096, 12) at 400 Hz
    start = (tracings.shape[1] - 4000) // 2
    for i, tracing in enumerate(tracings):
        signal = resample_poly(tracing[start:start + 4000], 5, 4, axis=0)
        wfdb.wrsamp(f"{i:05d}", fs=RECORD_RATE, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS),
                    p_signal=signal, fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                    baseline=[0] * 12, write_dir=str(folder))


def timed_conversion(folder: Path, output: Path, workers: int) -> float:
    started = time.perf_counter()
    result = convert(folder, output, SignalPipeline(), workers=workers, batch_size=64)
    elapsed = time.perf_counter() - started
    assert result["rejected"] == 0, result
    return elapsed


def main(n_records: int = 2000, workers: int = 2) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "records"
        folder.mkdir()
        write_records(folder, n_records)
        serial = timed_conversion(folder, Path(scratch) / "serial.h5", workers=1)
        parallel = timed_conversion(folder, Path(scratch) / "parallel.h5", workers=workers)
    results = {"n_records": n_records, "workers": workers, "cpu_count": os.cpu_count(),
               "serial_records_per_s": n_records / serial,
               "parallel_records_per_s": n_records / parallel,
               "ratio_parallel_to_serial": serial / parallel,
               "parallel_records_per_s_per_worker": n_records / parallel / workers}
    write_results("preprocess", results)
    return results


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:]]
    print_results(main(*arguments), decimals=3)
