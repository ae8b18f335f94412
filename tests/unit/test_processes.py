"""``ecgexp.processes``: in forked children of the test, the parent-death signal the kernel
reports back (``prctl(PR_GET_PDEATHSIG)``: SIGKILL), the exit of a worker whose parent is
already gone, the watch thread of a worker whose parent lives, and a worker ending within a
few polls once its parent ends (seen by the end of a pipe only the worker held open), with
and without the kernel's signal."""

import ctypes
import os
import select
import signal
import sys
import threading
import time

import pytest

from ecgexp import processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
PR_GET_PDEATHSIG = 2


def in_child(work) -> tuple[int, bytes]:
    """Runs ``work(write_fd)`` in a forked child; its exit status and what it wrote."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 3
        try:
            os.close(read)
            work(write)
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        written = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), written


def test_die_with_parent_sets_sigkill_as_the_parent_death_signal():
    def work(out):
        arranged = processes.die_with_parent()
        libc = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int(-1)
        libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
        os.write(out, f"{arranged} {value.value}".encode())

    assert in_child(work) == (0, f"True {int(signal.SIGKILL)}".encode())


def test_a_worker_whose_parent_is_gone_exits_at_once():
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)  # its pid now names no process
    assert in_child(lambda out: processes.end_with_parent(gone)) == (1, b"")


def test_a_worker_whose_parent_lives_watches_it_from_a_daemon_thread():
    def work(out):
        processes.end_with_parent(os.getppid())
        names = [t.name for t in threading.enumerate() if t.daemon]
        os.write(out, ",".join(names).encode())

    status, written = in_child(work)
    assert status == 0 and "ecgexp-parent-watch" in written.decode().split(",")


@pytest.mark.parametrize("kernel_signal", [True, False], ids=["pdeathsig", "watch-only"])
def test_a_worker_ends_soon_after_its_parent(kernel_signal):
    """Parent -> worker; the parent exits once the worker watches it; the worker (which would
    otherwise sleep 30 s) holds the only write end of ``done``: its EOF is the worker's end."""
    done_read, done_write = os.pipe()
    info_read, info_write = os.pipe()
    parent = os.fork()
    if parent == 0:
        try:
            os.close(done_read)
            os.close(info_read)
            ready_read, ready_write = os.pipe()
            if os.fork() == 0:
                try:
                    if not kernel_signal:
                        processes.die_with_parent = lambda: False
                    processes.end_with_parent(os.getppid())
                    os.write(info_write, f"{os.getpid()}".encode())
                    os.write(ready_write, b"x")
                    time.sleep(30)
                finally:
                    os._exit(0)
            os.close(done_write)
            os.read(ready_read, 1)
        finally:
            os._exit(0)
    os.close(done_write)
    os.close(info_write)
    worker = int(os.read(info_read, 32))
    os.close(info_read)
    os.waitpid(parent, 0)
    started = time.monotonic()
    try:
        ended, _, _ = select.select([done_read], [], [], 5.0)
        assert ended and os.read(done_read, 1) == b"", "the worker outlived its parent"
        assert time.monotonic() - started < 2.0
    finally:
        os.close(done_read)
        try:
            os.kill(worker, signal.SIGKILL)
        except ProcessLookupError:
            pass
