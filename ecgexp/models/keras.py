"""Keras 2 HDF5 save of the abnormality model (automatic-ecg-diagnosis) -> ResNet1d weights.

A Keras 2 ``model.save`` file keeps the weights under ``model_weights/<layer>/<layer>/<name>:0``
(``kernel``; BatchNorm ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``; ``bias``) and
the layers in ``model.layers`` order in the ``layer_names`` attribute (docs/studies.md §1.2).
Read in that order, the layers with weights are the stem (conv, BN), then per residual unit the
main conv, BN, the strided conv and the 1x1 skip conv (absent when the filters do not change),
BN, and finally the dense layer. The ResNet1d equivalent is ``stem=[filters, n_samples]``, one block
per unit, ``stem_relu=True`` and ``bn_eps=1e-3``; filters, kernel size, leads and outputs are
read from the weight shapes. Weights alone do not give the units' lengths: they are taken as
``n_samples`` downsampled by the same factor per unit down to the length the dense layer sees
(4096 -> 1024 -> 256 -> 64 -> 16 in the published model).

Conv kernels ``(k, in, out)`` become ``(out, in, k)``; the dense rows, flattened time-major by
Keras, are reordered to the channel-major flatten of ResNet1d.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch

from ecgexp.files import atomic_path
from ecgexp.models.resnet1d import ResNet1d

Layer = tuple[str, dict[str, np.ndarray]]
BN_WEIGHTS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
              "running_var": "moving_variance"}
KERAS_BN_EPS = 1e-3


def read_keras_layers(path: str | Path) -> list[Layer]:
    """``(layer name, {weight name: array})`` of the layers that have weights, in the
    ``layer_names`` order of the file's ``model_weights`` group."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input: no file at '{path}'")
    if not h5py.is_hdf5(path):
        raise ValueError(f"input: '{path}' is not an HDF5 file (a Keras 2 model.save .hdf5)")
    with h5py.File(path, "r") as handle:
        if "model_weights" not in handle or "layer_names" not in handle["model_weights"].attrs:
            raise ValueError(f"input: '{path}' is not a Keras 2 model save (no model_weights "
                             f"group with layer_names)")
        group = handle["model_weights"]
        layers = []
        for raw_name in group.attrs["layer_names"]:
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            weights = _layer_weights(group[name])
            if weights:
                layers.append((name, weights))
    return layers


def _layer_weights(group: h5py.Group) -> dict[str, np.ndarray]:
    """``{'kernel': array, ...}`` of one layer group (datasets ``<layer>/<name>:0``)."""
    weights = {}

    def collect(key: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            weights[key.rsplit("/", 1)[-1].split(":")[0]] = item[()]

    group.visititems(collect)
    return weights


def _kind(layer: Layer) -> str:
    name, weights = layer
    if "moving_variance" in weights:
        if set(BN_WEIGHTS.values()) - set(weights):
            raise ValueError(f"Keras layer '{name}': a BatchNorm needs "
                             f"{', '.join(BN_WEIGHTS.values())}; got {', '.join(weights)}")
        return "bn"
    if weights.get("kernel", np.empty(0)).ndim == 3:
        return "conv"
    if weights.get("kernel", np.empty(0)).ndim == 2 and "bias" in weights:
        return "dense"
    raise ValueError(f"Keras layer '{name}': not a Conv1D, BatchNormalization or Dense layer "
                     f"(weights {', '.join(weights)})")


def split_units(layers: list[Layer]) -> tuple[list[Layer], list[dict[str, Layer]], Layer]:
    """(stem conv and BN, per unit {conv1, bn1, conv2, skip?, bn2}, dense), checking the order
    stem conv, BN, (conv, BN, conv, [1x1 conv], BN) per unit, dense."""
    kinds = [_kind(layer) for layer in layers]
    if kinds[:2] != ["conv", "bn"] or kinds[-1] != "dense" or "dense" in kinds[:-1]:
        raise ValueError(f"Keras model: expected a conv and a BatchNorm stem and one dense layer "
                         f"last; got {', '.join(f'{n} ({k})' for (n, _), k in zip(layers, kinds))}")
    units, convs, halves = [], [], []
    for layer, kind in zip(layers[2:-1], kinds[2:-1]):
        if kind == "conv":
            convs.append(layer)
            continue
        halves.append((convs, layer))
        convs = []
        if len(halves) == 2:
            units.append(_unit(halves))
            halves = []
    if convs or halves or not units:
        raise ValueError(f"Keras model: the layers between the stem and '{layers[-1][0]}' are "
                         f"not residual units (conv, BN, strided conv, [1x1 conv], BN each)")
    return layers[:2], units, layers[-1]


def _unit(halves: list[tuple[list[Layer], Layer]]) -> dict[str, Layer]:
    """One residual unit from its two halves (convs before each BatchNorm)."""
    (convs_1, bn1), (convs_2, bn2) = halves
    skips = [c for c in convs_1 + convs_2 if c[1]["kernel"].shape[0] == 1]
    main_1 = [c for c in convs_1 if c[1]["kernel"].shape[0] != 1]
    main_2 = [c for c in convs_2 if c[1]["kernel"].shape[0] != 1]
    if len(main_1) != 1 or len(main_2) != 1 or len(skips) > 1:
        raise ValueError(f"Keras layers before '{bn1[0]}' and '{bn2[0]}': a residual unit has "
                         f"one conv before each BatchNorm and at most one 1x1 skip conv; got "
                         f"{', '.join(c[0] for c in convs_1 + convs_2)}")
    unit = {"conv1": main_1[0], "bn1": bn1, "conv2": main_2[0], "bn2": bn2}
    if skips:
        unit["skip"] = skips[0]
    return unit


def model_config(stem: list[Layer], units: list[dict[str, Layer]], dense: Layer,
                 n_samples: int) -> dict:
    """The ResNet1d arguments of the Keras model, from its weight shapes and ``n_samples``."""
    kernel_size, in_leads, stem_filters = stem[0][1]["kernel"].shape
    filters = [int(unit["conv1"][1]["kernel"].shape[2]) for unit in units]
    features, n_outputs = dense[1]["kernel"].shape
    final_length = features // filters[-1]
    factor = round((n_samples / max(final_length, 1)) ** (1 / len(units)))
    if final_length * filters[-1] != features or final_length * factor ** len(units) != n_samples:
        raise ValueError(f"Keras layer '{dense[0]}': {features} inputs are not {filters[-1]} "
                         f"filters x a length that {len(units)} equal downsamplings of "
                         f"n_samples={n_samples} reach")
    lengths = [n_samples // factor ** (i + 1) for i in range(len(units))]
    return {"in_leads": int(in_leads), "n_samples": int(n_samples), "n_outputs": int(n_outputs),
            "stem": [int(stem_filters), int(n_samples)],
            "blocks": [[f, length] for f, length in zip(filters, lengths)],
            "kernel_size": int(kernel_size), "stem_relu": True, "bn_eps": KERAS_BN_EPS}


def _conv(layer: Layer) -> np.ndarray:
    return layer[1]["kernel"].transpose(2, 1, 0)


def keras_state_dict(layers: list[Layer], n_samples: int = 4096
                     ) -> tuple[dict[str, torch.Tensor], dict]:
    """(ResNet1d ``state_dict``, its ResNet1d arguments) of the Keras layers."""
    stem, units, dense = split_units(layers)
    config = model_config(stem, units, dense, n_samples)
    model = ResNet1d(**config)
    sources: dict[str, tuple[str, np.ndarray]] = {"conv1.weight": (stem[0][0], _conv(stem[0]))}
    bns = [("bn1", stem[1])]
    for i, unit in enumerate(units):
        prefix = f"resblock1d_{i}"
        sources[f"{prefix}.conv1.weight"] = (unit["conv1"][0], _conv(unit["conv1"]))
        sources[f"{prefix}.conv2.weight"] = (unit["conv2"][0], _conv(unit["conv2"]))
        if "skip" in unit:  # after the max pooling, when there is one, as in Keras
            skip_path = getattr(model, prefix).skip_connection
            index = 0 if skip_path is None else len(skip_path) - 1
            sources[f"{prefix}.skip_connection.{index}.weight"] = (unit["skip"][0],
                                                                   _conv(unit["skip"]))
        bns += [(f"{prefix}.bn1", unit["bn1"]), (f"{prefix}.bn2", unit["bn2"])]
    for prefix, (name, weights) in bns:
        for ours, theirs in BN_WEIGHTS.items():
            sources[f"{prefix}.{ours}"] = (name, weights[theirs])
    kernel = dense[1]["kernel"]  # rows t * filters + c (time-major) -> c * length + t
    length = config["blocks"][-1][1]
    sources["lin.weight"] = (dense[0], kernel.reshape(length, -1, kernel.shape[1]).transpose(
        2, 1, 0).reshape(kernel.shape[1], -1))
    sources["lin.bias"] = (dense[0], dense[1]["bias"])

    state = model.state_dict()
    for key, (name, value) in sources.items():
        if key not in state or tuple(state[key].shape) != value.shape:
            expected = tuple(state[key].shape) if key in state else "no such weight"
            raise ValueError(f"Keras layer '{name}': weights of shape {value.shape} do not fit "
                             f"{key} ({expected}) of the model {config}")
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    unfilled = [k for k in state if k not in sources and not k.endswith("num_batches_tracked")]
    if unfilled:
        raise ValueError(f"Keras model: no layer gives {', '.join(unfilled)} of the model {config}")
    return state, config


def convert(input_path: str | Path, output_path: str | Path | None = None,
            n_samples: int = 4096) -> tuple[Path, dict]:
    """Writes ``{'model': state_dict, 'config': ResNet1d arguments}`` (a ``model.weights``
    file) from a Keras 2 save; returns the output path and the config. Never overwrites."""
    input_path = Path(input_path)
    output = Path(output_path) if output_path else input_path.with_suffix(".pth")
    if output.exists():
        raise FileExistsError(f"output: '{output}' exists; remove it or choose another output=")
    state, config = keras_state_dict(read_keras_layers(input_path), n_samples)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output, "output") as temporary:
        torch.save({"model": state, "config": config}, temporary)
    return output, config


def model_overrides(config: dict) -> list[str]:
    """The command-line overrides that build ``config``'s model from ``model=resnet1d``."""
    return [f"model.{key}={json.dumps(config[key], separators=(',', ':'))}"
            for key in ("stem", "blocks", "kernel_size", "stem_relu", "bn_eps")]
