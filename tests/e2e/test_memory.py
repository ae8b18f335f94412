"""Memory: one epoch over a 3,000-exam file (about 590 MB) must not load the file: the memory
the epoch adds to the loading process, and the most a data-loader worker holds beyond what it
inherits, each stay under a quarter of the file.

The loader runs in a subprocess so its peak resident set size (VmHWM, reset when the epoch
starts) is its own; what the imports and the exam table hold (VmRSS then) is the baseline.
The workers, forked from it with that baseline, are counted through RUSAGE_CHILDREN once they
have exited.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pandas as pd
import pytest

N_EXAMS, N_SAMPLES, N_LEADS, CHUNK = 3000, 4096, 12, 500

SCRIPT = textwrap.dedent("""
    import gc, json, resource, sys
    from functools import partial
    from ecgexp.data.datamodule import ExamDataModule
    from ecgexp.data.source import HDF5Source
    from ecgexp.data.splits import random_split

    h5, csv = sys.argv[1], sys.argv[2]
    source = HDF5Source(name="memory", tracing_files=h5, labels_csv=csv,
                        split=partial(random_split, val_fraction=0.05, test_fraction=0.0,
                                      seed=0, group_column=None))
    leads = ["DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    dm = ExamDataModule(source, ["y"], leads=leads, batch_size=64, num_workers=2, seed=0)
    dm.setup("fit")
    with open("/proc/self/status") as status:
        baseline = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # VmHWM from here on: the epoch's own peak
    loader = dm.train_dataloader()
    n_items = n_batches = 0
    for batch in loader:
        assert batch["tracing"].shape[1:] == (12, 4096)
        n_items += batch["tracing"].shape[0]
        n_batches += 1
    del batch, loader, dm  # shuts the persistent workers down and reaps them
    gc.collect()
    # VmHWM, not RUSAGE_SELF: Linux carries ru_maxrss over exec from the forking (pytest)
    # process, so RUSAGE_SELF would report the test runner's peak after heavy tests; it cannot
    # be reset either.
    with open("/proc/self/status") as status:
        main = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"n_items": n_items, "n_batches": n_batches, "main_kib": main,
                      "worker_max_kib": workers, "baseline_kib": baseline}))
""")


@pytest.mark.slow
def test_epoch_memory_stays_small(tmp_path):
    h5_path, csv_path = tmp_path / "big.hdf5", tmp_path / "big.csv"
    rng = np.random.default_rng(0)
    exam_ids = np.arange(1, N_EXAMS + 1, dtype=np.int64)
    try:
        with h5py.File(h5_path, "w") as handle:
            tracings = handle.create_dataset("tracings", (N_EXAMS, N_SAMPLES, N_LEADS), "float32")
            handle.create_dataset("exam_id", data=exam_ids)
            block = rng.standard_normal((CHUNK, N_SAMPLES, N_LEADS), dtype=np.float32)
            for start in range(0, N_EXAMS, CHUNK):  # one random block, written at every offset
                tracings[start:start + CHUNK] = np.roll(block, start // CHUNK, axis=1)
        pd.DataFrame({"exam_id": exam_ids, "y": rng.random(N_EXAMS)}).to_csv(csv_path,
                                                                            index=False)

        result = subprocess.run([sys.executable, "-c", SCRIPT, str(h5_path), str(csv_path)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        h5_path.unlink(missing_ok=True)
        csv_path.unlink(missing_ok=True)

    baseline = report["baseline_kib"]
    main, workers = report["main_kib"] - baseline, report["worker_max_kib"] - baseline
    file_kib = N_EXAMS * N_SAMPLES * N_LEADS * 4 / 1024
    print(f"\npeak RSS over one epoch of {report['n_items']} exams "
          f"({report['n_batches']} batches of 64, 2 workers) beyond the loading process's "
          f"{baseline / 1024:.0f} MiB: main {main / 1024:.0f} MiB, worker max "
          f"{workers / 1024:.0f} MiB (file {file_kib / 1024:.0f} MiB)")
    assert report["n_items"] == N_EXAMS - round(0.05 * N_EXAMS)
    assert report["worker_max_kib"] > 0, "the workers were not reaped: RUSAGE_CHILDREN saw none"
    assert main < file_kib / 4
    assert workers < file_kib / 4
