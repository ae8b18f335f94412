"""``ecgexp-convert-keras``: Keras weights of the abnormality model -> a ``model.weights`` file."""

from __future__ import annotations

import shlex

import hydra
from omegaconf import DictConfig

from ecgexp.errors import reported
from ecgexp.startup import CONFIG_PATH, bare_arguments_to_override, groups_not_null


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
