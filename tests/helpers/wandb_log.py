"""The records of an offline W&B run (``run-<id>.wandb``), read without wandb's own reader
(tests/e2e/test_loggers.py, tests/e2e/test_compare.py)."""

import json
import struct
import time
from pathlib import Path


def wandb_records(run_folder: Path, wait_s: float = 30.0) -> list:
    """The records of the run's offline ``run-<id>.wandb`` file: a LevelDB-style log (7-byte
    file header; 32 KiB blocks of chunks, each a 7-byte header -- checksum, length, type
    FULL/FIRST/MIDDLE/LAST -- and its bytes), every record a ``wandb_internal_pb2.Record``.
    wandb 0.31 writes it from its Go core and has no Python reader left. That core process
    outlives ``run.finish()`` and may still be writing the file when it returns (a CI run read
    it with no ``run`` record yet), so the file is read again until it holds the run's
    ``exit`` record, for up to ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        records = _records_written(run_folder)
        if of_type(records, "exit") or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def _records_written(run_folder: Path) -> list:
    """The whole records written so far (a chunk still being written is left out)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_folder.glob("wandb/offline-run-*/run-*.wandb")
    data, block, header = path.read_bytes(), 32768, 7
    if len(data) < header:
        return []
    assert data[:4] == b":W&B"
    records, position, pending = [], header, b""
    while position + header <= len(data):
        if block - position % block < header:  # block trailer
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + header])
        if position + header + length > len(data):
            break
        pending += data[position + header:position + header + length]
        position += header + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def of_type(records: list, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def items(updates) -> dict:
    """``{key: value}`` of config/summary/history items (nested keys joined by '/')."""
    return {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in updates}
