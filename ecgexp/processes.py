"""Worker processes that end with the process that started them.

A worker whose parent is killed (``kill -9``, an out-of-memory kill, a pre-empted job) would
otherwise live on until it next looks for work, holding the files it inherited open (among
them a run folder's lock) and, for a process pool, possibly for ever.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 0.2


def die_with_parent() -> bool:
    """On Linux, has the kernel send this process SIGKILL when the thread that started it
    ends; returns whether that could be arranged (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no C library to call
        return False


def end_with_parent(parent: int) -> None:
    """Initializer of pool workers: :func:`die_with_parent`, and on every system a daemon
    thread that ends the worker once it is re-parented (its parent ``parent`` is gone)."""
    die_with_parent()
    watched = os.getppid()  # the parent, or an intermediate (forkserver) that ends with it
    if watched != parent and not _alive(parent):
        os._exit(1)  # the parent ended before this worker started
    threading.Thread(target=_watch_parent, args=(watched,), daemon=True,
                     name="ecgexp-parent-watch").start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _watch_parent(watched: int) -> None:
    while os.getppid() == watched:  # a process whose parent ends is re-parented
        time.sleep(PARENT_POLL_S)
    os._exit(1)
