"""Provenance: sampled dataset hashes, git commit, host info, and what a CLI run writes and logs."""

import hashlib
import json
import os
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch
from helpers.commands import run_in_process
from helpers.configs import SHORT_RUN
from helpers.runs import run_folders

from ecgexp.provenance import git_commit, host, provenance, sampled_sha256, summary

MIB = 1 << 20


def hash_ranges(path: Path, ranges: list[tuple[int, int]]) -> str:
    """SHA-256 of the bytes ``[start, stop)`` of each range, read with seek, in order."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for start, stop in ranges:
            file.seek(start)
            digest.update(file.read(stop - start))
    return digest.hexdigest()


def default_sample(path: Path) -> list[tuple[int, int]]:
    """The documented rule: 8 blocks of 1 MiB, first at 0, last at the end, evenly spaced."""
    size = path.stat().st_size
    return [(i * (size - MIB) // 7, i * (size - MIB) // 7 + MIB) for i in range(8)]


def test_sampled_hash_reads_first_last_and_evenly_spaced_blocks(tmp_path):
    path = tmp_path / "tracings.hdf5"
    path.write_bytes(bytes(range(100)))
    # 3 blocks of 10 bytes in 100: starts 0, 45 and 90, worked out by hand
    assert sampled_sha256(path, block_bytes=10, blocks=3) == hash_ranges(
        path, [(0, 10), (45, 55), (90, 100)])

    path.write_bytes(os.urandom(20 * MIB + 12345))
    assert sampled_sha256(path) == hash_ranges(path, default_sample(path))


def test_small_files_are_hashed_whole(tmp_path):
    for size in (0, 1, 8 * MIB):
        path = tmp_path / f"small_{size}.hdf5"
        path.write_bytes(os.urandom(size))
        assert sampled_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_byte_changed_inside_a_sampled_block_changes_the_hash(tmp_path):
    path = tmp_path / "tracings.hdf5"
    path.write_bytes(os.urandom(20 * MIB))
    before = sampled_sha256(path)
    start, _ = default_sample(path)[3]
    with open(path, "r+b") as file:
        file.seek(start + 1000)
        byte = file.read(1)
        file.seek(start + 1000)
        file.write(bytes([byte[0] ^ 1]))
    changed = sampled_sha256(path)
    assert changed != before
    # a sample, not a checksum: a byte between the blocks is not read
    with open(path, "r+b") as file:
        file.seek(default_sample(path)[0][1] + 10)
        file.write(b"x")
    assert sampled_sha256(path) == changed


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org",
                           *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_git_commit_of_a_repo_and_outside_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repo above
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet")
    (repo / "code.py").write_text("x = 1\n")
    git(repo, "add", "code.py")
    git(repo, "commit", "--quiet", "-m", "first")
    head = git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == head
    (repo / "untracked.txt").write_text("not part of the code\n")
    assert git_commit(repo) == head
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo) == f"{head}+dirty"

    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_commit(plain) is None


def test_host_info():
    info = host()
    assert info["hostname"] == socket.gethostname()
    assert info["cpu_count"] == os.cpu_count()
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["machine"] and info["platform"]
    if not torch.cuda.is_available():
        assert info["cuda_devices"] == []
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kib = next(int(line.split()[1]) for line in meminfo.read_text().splitlines()
                         if line.startswith("MemTotal:"))
        assert info["memory_bytes"] == total_kib * 1024


def test_record_has_command_time_packages_and_label_hash(tmp_path):
    labels = tmp_path / "exams.csv"
    labels.write_text("exam_id,AF\n1,0\n")
    record = provenance([], [labels])
    assert record["command"] == sys.argv
    assert record["start_time"].endswith("+00:00")
    assert record["packages"]["scipy"] == metadata.version("scipy")
    assert record["packages"]["wfdb"] == metadata.version("wfdb")
    assert record["dataset"]["label_files"][0]["sha256"] == hashlib.sha256(
        b"exam_id,AF\n1,0\n").hexdigest()
    assert f"exams.csv 15 B sha256 {record['dataset']['label_files'][0]['sha256'][:12]}" in \
        summary(record)

    parts = [tmp_path / f"exams_part{i}.hdf5" for i in range(6)]
    for part in parts:
        part.write_bytes(b"tracings")
    line = summary(provenance(parts, []))
    assert "exams_part3.hdf5 8 B" in line and "exams_part4" not in line
    assert line.endswith("and 2 more tracing files")


# SHORT_RUN with two training batches and no logger: 120 exams keep both tracing files sampled
QUICK_RUN = [*(o for o in SHORT_RUN if not o.startswith("+trainer.limit_train_batches")),
             "+trainer.limit_train_batches=2", "logger=none"]


def test_cli_run_writes_and_logs_the_dataset_fingerprint(tmp_path):
    """``ecgexp`` in this process (test_cli's run in a new process checks its command line)."""
    result = run_in_process("ecgexp", tmp_path, *QUICK_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = run_folders(tmp_path / "outputs")
    record = json.loads((folder / "provenance.json").read_text())

    dataset = tmp_path / "data" / "synthetic_n120_seed0"
    parts = sorted(dataset.glob("exams_part*.hdf5"))
    assert len(parts) == 2 and all(p.stat().st_size > 8 * MIB for p in parts)  # sampled
    written = {Path(f["path"]): f for f in record["dataset"]["tracing_files"]}
    assert set(written) == {p.resolve() for p in parts}
    for part in parts:
        fingerprint = written[part.resolve()]
        assert fingerprint["bytes"] == part.stat().st_size
        assert fingerprint["sampled_sha256"] == hash_ranges(part, default_sample(part))
        assert fingerprint["sampling"] == {"block_bytes": MIB, "blocks": 8, "hashed_bytes": 8 * MIB}
        assert fingerprint["changed"] == part.stat().st_ctime  # what an in-place edit changes
        assert "an edit outside them shows only in 'changed' (ctime)" in fingerprint["covers"]
    assert record["host"]["hostname"] == socket.gethostname()
    assert record["command"][1:] == QUICK_RUN

    (log_file,) = folder.glob("*.log")
    for text in (result.stdout + result.stderr, log_file.read_text()):
        line = next(line for line in text.splitlines() if "provenance: commit" in line)
        assert socket.gethostname() in line
        for part in parts:
            short = hash_ranges(part, default_sample(part))[:12]
            assert f"{part.name} {part.stat().st_size / 1e6:.1f} MB sampled_sha256 {short}" in line
        labels_hash = hashlib.sha256((dataset / "exams.csv").read_bytes()).hexdigest()
        assert f"exams.csv {(dataset / 'exams.csv').stat().st_size / 1e3:.1f} kB sha256 "\
               f"{labels_hash[:12]}" in line
