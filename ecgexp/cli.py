"""Console scripts: thin Hydra entry points around plain functions."""

from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import ecgexp  # noqa: F401  (registers the OmegaConf resolvers)
from ecgexp.errors import UserError, is_user_error, report, reported

CONFIG_PATH = str(Path(__file__).parent / "conf")
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


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
@reported
def main(cfg: DictConfig) -> float | None:
    """``ecgexp``: train, predict and evaluate; returns ``optimized_metric`` for sweepers."""
    from ecgexp.checks import check

    try:
        check(cfg, "train")  # again for each job of a multirun, whose values the sweeper sets
        from ecgexp.train import train

        return optimized_value(train(cfg), cfg.get("optimized_metric"))
    except Exception as error:
        if is_user_error(error):  # a bad input: the run folder Hydra made for it goes too
            discard_hydra_folder()
        raise


def discard_hydra_folder() -> None:
    """Removes this job's Hydra folder if the job wrote nothing into it."""
    from hydra.core.hydra_config import HydraConfig

    from ecgexp.config import run_token
    from ecgexp.run_folder import discard_unused

    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        discard_unused(hydra.runtime.output_dir, run_token(), f"{hydra.job.name}.log")


def optimized_value(metrics: dict[str, float] | None, name: str | None) -> float | None:
    """The metric a sweeper optimises (``optimized_metric``), or None when none is named (or
    in a process of a distributed run that has no metrics)."""
    if not name or metrics is None:
        return None
    if name not in metrics:
        choices = ", ".join(m for m in metrics if m.startswith("val/"))
        raise KeyError(f"optimized_metric: the run has no metric '{name}'; validation metrics "
                       f"are: {choices}")
    return metrics[name]


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="synth")
@reported
def synth(cfg: DictConfig) -> None:
    """``ecgexp-synth``: write a synthetic dataset in the CODE-15% layout."""
    from ecgexp.data.synthetic import write_code15
    from ecgexp.files import writable_folder

    writable_folder(cfg.output_dir, "output_dir")
    directory = write_code15(cfg.output_dir, n_exams=cfg.n_exams, n_parts=cfg.n_parts,
                             seed=cfg.seed)
    print(f"Synthetic CODE-15% dataset: {Path(directory).resolve()}")


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="preprocess")
@reported
def preprocess(cfg: DictConfig) -> None:
    """``ecgexp-preprocess``: convert raw ECG records into the CODE HDF5 layout."""
    from hydra.utils import instantiate

    from ecgexp.data.convert import convert

    result = convert(cfg.input, cfg.output, instantiate(cfg.preprocessing),
                     workers=cfg.workers, batch_size=cfg.batch_size, ids=cfg.ids,
                     quality=instantiate(cfg.get("quality")),
                     label_map=instantiate(cfg.get("labels")))
    print(f"Converted {result['converted']} records, rejected {result['rejected']}: "
          f"{result['output']} (metadata {result['metadata_csv']}, "
          f"rejections {result['report_csv']}, quality {result['quality_csv']})")


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="heatmap")
@reported
def heatmap(cfg: DictConfig) -> None:
    """``ecgexp-heatmap``: saliency heatmaps of a trained model, into its run folder."""
    from ecgexp.interpret.heatmaps import extract_heatmaps

    extract_heatmaps(cfg)


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
@reported
def evaluate(cfg: DictConfig) -> None:
    """``ecgexp-evaluate``: recompute a run's metrics and write its report folder."""
    from ecgexp.evaluate import evaluate as run_evaluation

    run_evaluation(cfg)


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="compare")
@reported
def compare(cfg: DictConfig) -> None:
    """``ecgexp-compare``: runs of one task compared on their shared exams, paired tests."""
    from ecgexp.compare import compare as run_comparison

    run_comparison(cfg)


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
@reported
def predict(cfg: DictConfig) -> None:
    """``ecgexp-predict``: a trained model's predictions for every exam of a dataset."""
    from ecgexp.predict import predict as run_prediction

    run_prediction(cfg)


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="convert_keras")
@reported
def _convert_keras(cfg: DictConfig) -> None:
    from ecgexp.models.keras import convert, model_overrides

    output, config = convert(cfg.input, cfg.output, n_samples=cfg.n_samples)
    overrides = [f"model.weights={output.resolve()}", *model_overrides(config)]
    print(f"Converted {cfg.input} ({config['in_leads']} leads x {config['n_samples']} samples, "
          f"{config['n_outputs']} outputs): {output.resolve()}\n"
          f"Load it with: {' '.join(shlex.quote(o) for o in overrides)}\n"
          f"(the published model: experiment=abnormality_ribeiro2020 or model=resnet1d_keras "
          f"sets these model keys; the task must have {config['n_outputs']} outputs, as the "
          f"abnormality task's six labels)")


def convert_keras() -> None:
    """``ecgexp-convert-keras model.hdf5`` (or ``input=model.hdf5 output=model.pth``): Keras
    weights of the abnormality model -> a ``model.weights`` file. A first argument without
    ``=`` is the input path."""
    bare_arguments_to_override("input")
    _convert_keras()


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


@groups_not_null
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="bench")
@reported
def _bench(cfg: DictConfig) -> None:
    from ecgexp.bench.runner import run_suite

    run_suite(cfg)


def bench() -> None:
    """``ecgexp-bench [name ...] [key=value ...]``: the benchmark suite (``bench.yaml``); bare
    leading names choose benchmarks (``ecgexp-bench training data`` is
    ``benchmarks=['training','data']``), none runs them all."""
    bare_arguments_to_override("benchmarks", many=True)
    _bench()
