"""OmegaConf resolvers used by the config tree (registered on import of ``ecgexp``).

- ``len``: the length of a list (``${len:${task.objective.buckets}}``);
- ``run_token``: a token unique to this process (its pid and random hex digits), the same on
  every call, so that two runs started in the same second get different run folders;
- ``run_label``: the experiment (or else the task) a run folder is named after;
- ``run_dir``: ``hydra.run.dir``: the folder given to ``resume=``, else the new run folder;
- ``hydra_subdir``: ``hydra.output_subdir``: ``.hydra``, or none for a resumed run, so that
  the original run's Hydra files are kept (the restart is recorded in ``provenance.json``);
- ``fed_rate``: the rate (Hz) of the tracings a dataset feeds the network
  (``${fed_rate:${dataset}}``): its signal pipeline's for raw records, else the rate its HDF5
  tracings are stored at.
"""

import os
import secrets
from functools import cache

from omegaconf import OmegaConf


@cache
def run_token() -> str:
    return f"{os.getpid()}{secrets.token_hex(3)}"


def _run_label(experiment, task):
    """The experiment's name, else the task's, as one path component."""
    return str(experiment or task).replace("/", "-")


def _run_dir(resume, new_folder):
    return str(resume) if resume else new_folder


def _fed_rate(dataset):
    pipeline = dataset.get("pipeline")
    return float((pipeline or dataset)["sampling_rate"])


def _hydra_subdir(resume):
    return None if resume else ".hydra"


for _name, _resolver in {"len": lambda sequence: len(sequence), "run_token": run_token,
                         "run_label": _run_label,
                         "run_dir": _run_dir, "hydra_subdir": _hydra_subdir,
                         "fed_rate": _fed_rate}.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
