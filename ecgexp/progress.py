"""How progress shows on the console, for every long job (training, prediction, evaluation,
conversion).

On a terminal, a rich bar redrawn in place: Lightning's ``RichProgressBar`` in training, a
``rich.progress`` bar elsewhere. Off a terminal (SLURM, nohup, CI, ``| tee log``), where a
redrawn bar shows nothing until it ends, plain lines on stdout, each flushed at once: training
prints one line per epoch (:class:`ecgexp.tasks.callbacks.EpochLines`: the Lightning side
lives with the training callbacks, so that this module, and the commands that only count work,
do not import Lightning), counted work one line a minute at most and one at the end
(:class:`CountLines`). Which of the two is rich's own decision
(``Console.is_terminal``: stdout a TTY, unless ``TTY_COMPATIBLE=0``/``1`` or ``FORCE_COLOR``
says otherwise), so the bar is never drawn where rich would not redraw it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from rich.console import Console
from rich.progress import Progress

LINE_INTERVAL = 60.0  # seconds: the most frequent lines of counted work off a terminal


def on_terminal() -> bool:
    """Whether stdout is a terminal that rich redraws a bar on."""
    return Console().is_terminal


def print_line(*fields: str) -> None:
    """One progress line: ``fields`` two spaces apart, flushed (SLURM and pipes buffer)."""
    print("  ".join(fields), flush=True)


def clock(seconds: float) -> str:
    """``H:MM:SS``."""
    return str(timedelta(seconds=round(seconds)))


class CountLines:
    """Progress of ``total`` items as lines ``<description> <done>/<total> <unit> (<note>)``,
    time elapsed and time left at the pace so far: at most one every ``interval`` seconds (0:
    one per advance), and one when the last item is done."""

    def __init__(self, description: str, total: int, unit: str, completed: int = 0,
                 interval: float = LINE_INTERVAL):
        self.description, self.total, self.unit = description, total, unit
        self.done = self.completed = completed  # ``completed``: done before this process
        self.interval = interval
        self.started = self.last = time.monotonic()

    def advance(self, count: int = 1, note: str = "") -> None:
        self.done += count
        now = time.monotonic()
        if self.done < self.total and now - self.last < self.interval:
            return
        self.last, elapsed = now, now - self.started
        count = f"{self.description} {self.done}/{self.total} {self.unit}"
        fields = [f"{count} ({note})" if note else count, f"elapsed {clock(elapsed)}"]
        if self.done < self.total:
            pace = elapsed / max(self.done - self.completed, 1)
            fields.append(f"ETA {clock(pace * (self.total - self.done))}")
        print_line(*fields)


@contextmanager
def counting(description: str, total: int, unit: str, completed: int = 0,
             interval: float = LINE_INTERVAL, show: bool = True
             ) -> Iterator[Callable[..., None]]:
    """Progress of ``total`` items of which ``completed`` were done before: yields
    ``advance(count=1, note="")`` (``note``: what was just done, for the lines). A transient
    rich bar on a terminal, :class:`CountLines` elsewhere, nothing when ``show`` is false."""
    if not show:
        yield lambda count=1, note="": None
    elif on_terminal():
        with Progress(transient=True) as bar:
            task = bar.add_task(description, total=total, completed=completed)
            yield lambda count=1, note="": bar.advance(task, count)
    else:
        yield CountLines(description, total, unit, completed, interval).advance
