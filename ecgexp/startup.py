"""What every console command does before its work (``ecgexp/commands``): the config tree it
composes from, the command-line spellings refused with one line (``<group>=null``, a spelling
that became a command of its own), and bare leading arguments turned into an override."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import ecgexp  # noqa: F401  (registers the OmegaConf resolvers)
from ecgexp.errors import UserError, report

CONFIG_PATH = str(Path(ecgexp.__file__).parent / "conf")
# Spellings that became a command of their own, and the line that names it.
MOVED = {"task=heatmap": "task=heatmap: heatmaps are a command of their own, ecgexp-heatmap "
                         "run=<run folder or checkpoint> (its keys are the old task.* keys "
                         "without task., e.g. method=, target=, select.top_k=; ckpt= is run=)"}


def groups_not_null(command):
    """``command`` (a Hydra entry point) refusing ``<group>=null`` on the command line with
    one line that says how to leave a config group out (Hydra stops on it with a traceback),
    and a spelling of :data:`MOVED` with the line that names its command."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        for argument in [] if args or kwargs else sys.argv[1:]:
            if argument.lstrip("+") in MOVED:
                report(UserError(MOVED[argument.lstrip("+")]))
            name, _, value = argument.partition("=")
            name = name.lstrip("+")
            if value == "null" and name and (Path(CONFIG_PATH) / name).is_dir():
                report(UserError(f"{name}=null: '{name}' is a config group, which cannot be "
                                 f"null; leave it out of the command, or drop the option the "
                                 f"config chooses with ~{name}"))
        return command(*args, **kwargs)

    return wrapper


def bare_arguments_to_override(key: str, many: bool = False) -> None:
    """Rewrites the leading command-line arguments without ``=`` (and not options such as
    ``-m``) into the Hydra override ``key='value'``: the first one, or with ``many`` all of
    them as ``key=['a','b']``."""
    bare = []
    for argument in sys.argv[1:]:
        if "=" in argument or argument.startswith("-") or (bare and not many):
            break
        bare.append("'{}'".format(argument.replace("'", "\\'")))
    if bare:
        value = f"[{','.join(bare)}]" if many else bare[0]
        sys.argv[1:1 + len(bare)] = [f"{key}={value}"]
