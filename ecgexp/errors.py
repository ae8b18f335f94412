"""Bad input as one clear line instead of a stack trace.

Every check of a user's input (a config value, a file, a table) raises an exception whose
message is one line naming what is wrong, the file (and row or column) and the config key to
change. :class:`UserError` is the type for new checks and for wrapping a library's exception
(``raise UserError(f"dataset.tracing_files: '{path}' is not an HDF5 file ...") from error``).

The console scripts run inside :func:`reported`: a ``UserError``, or a ``ValueError``,
``KeyError`` or ``OSError`` raised by a ``raise`` statement of ecgexp itself, is printed as
``error: <message>`` and the command exits with status 2. Any other exception (a bug, or a
library error nobody wrapped yet) keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

PACKAGE_DIR = Path(__file__).resolve().parent
EXIT_STATUS = 2
CHECKED_TYPES = (ValueError, KeyError, OSError, TypeError)

T = TypeVar("T")


class UserError(ValueError):
    """A bad input; the message names the problem, the file and the config key to fix."""


def message_of(error: BaseException) -> str:
    """The message of ``error`` (a ``KeyError``'s without the quotes ``str`` adds)."""
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


def is_user_error(error: BaseException) -> bool:
    """True for a :class:`UserError`, and for a checked type raised by ecgexp's own code (the
    innermost frame of its traceback is a file of this package)."""
    if isinstance(error, UserError):
        return True
    if not isinstance(error, CHECKED_TYPES) or error.__traceback__ is None:
        return False
    innermost = error.__traceback__
    while innermost.tb_next is not None:
        innermost = innermost.tb_next
    return Path(innermost.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE_DIR)


# What lowers the memory a command asks for, named in its out-of-memory line.
MEMORY_SETTINGS = ("loader.batch_size, loader.eval_batch_size and loader.num_workers (training), "
                   "batch_size and num_workers (ecgexp-predict), bootstrap.n_resamples "
                   "(ecgexp-evaluate, ecgexp-compare)")


def out_of_memory(error: BaseException) -> str | None:
    """The one line of an out-of-memory error (Python's ``MemoryError``, torch's CPU
    allocator, CUDA): how much was asked, as the library said, and what lowers it; None for
    any other error."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if not (isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and any(
            s in text for s in ("can't allocate memory", "out of memory")))):
        return None
    asked = f" ({text})" if text else ""
    return f"out of memory{asked}; lower {MEMORY_SETTINGS}"


def report(error: BaseException) -> None:
    """Prints ``error: <message>`` to standard error and exits with status 2."""
    logging.getLogger("ecgexp").debug("bad input", exc_info=error)
    print(f"error: {message_of(error)}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STATUS)


def _require_set(config) -> None:
    """A command's own required keys (``???`` at the top of its config) not given: one line
    naming them, before anything runs."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(config, DictConfig):
        return
    missing = [key for key in config if OmegaConf.is_missing(config, key)]
    if missing:
        report(UserError(f"{', '.join(missing)}: not set; give "
                         f"{' '.join(f'{key}=<value>' for key in missing)} on the command line "
                         f"(--help describes {'it' if len(missing) == 1 else 'them'})"))


def reported(function: Callable[..., T]) -> Callable[..., T]:
    """Runs ``function``; a bad input (:func:`is_user_error`) ends the process with one line."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if args:
            _require_set(args[0])
        try:
            return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001  (only bad inputs are turned into a line)
            if is_user_error(error):
                report(error)
            memory = out_of_memory(error)
            if memory:
                logging.getLogger("ecgexp").debug("out of memory", exc_info=error)
                print(f"error: {memory}", file=sys.stderr, flush=True)
                raise SystemExit(EXIT_STATUS) from None
            raise

    return wrapper
