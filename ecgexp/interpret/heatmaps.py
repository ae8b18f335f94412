"""``ecgexp-heatmap run=<run folder or checkpoint>``: saliency heatmaps of a trained model.

The model is read with its model card (:func:`ecgexp.api.load_model`): the network, its
objective with the training statistics, the metadata statistics and the input contract. The
exams come from the run's dataset (its ``config.yaml``), where the run found it (or from the
``dataset`` chosen on the command line, standardised with the run's own metadata
statistics). Results go into the interpreted run's folder,
``<run>/heatmaps/<time>_<method>_<token>/`` (a new folder each time): ``heatmaps.h5``
(``heatmaps`` (N, leads, samples) float32, ``exam_id``, ``output`` = the explained network
output, ``prediction`` = that output in the task's units, ``tracings``, and the settings in the
attributes), one ECG figure per selected exam under ``figures/`` and ``heatmap_summary.json``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ecgexp.config import run_token
from ecgexp.data.build import build_datamodule
from ecgexp.errors import UserError
from ecgexp.files import atomic_path, confined_path, make_folder, write_text_atomic
from ecgexp.inference.loop import inferred
from ecgexp.inference.model import TrainedModel, load_model
from ecgexp.interpret.attribution import attribute, gradient_intensity, visible_intensity
from ecgexp.interpret.ecg_plot import make_ecg_figure, save
from ecgexp.run_folder import (
    RunFolder,
    check_links_inside,
    located_dataset,
)

log = logging.getLogger(__name__)
# Options of each attribution method that are config keys (<method>.<option>).
METHOD_OPTIONS = {"saliency": ("absolute",),
                  "integrated_gradients": ("steps", "baseline", "internal_batch_size")}


def output_index(target: int | str, objective) -> int:
    """``target``: a network output index, or a label, output or prediction-column
    name (e.g. ``AF``, ``chagas``, ``score_AF``, ``predicted_age``)."""
    names = objective.output_names
    if isinstance(target, int) or str(target).isdigit():
        index = int(target)
    else:
        aliases = [list(objective.target_columns), names, objective.output_columns]
        index = next((row.index(target) for row in aliases if target in row), -1)
        if index >= len(names):
            index = -1
    if not 0 <= index < len(names):
        raise UserError(f"target: '{target}' is not an output index below {len(names)} "
                        f"or one of the outputs {', '.join(names)} (labels "
                        f"{', '.join(objective.target_columns)})")
    return index


def listed_exams(dataset, exam_ids) -> np.ndarray:
    """Positions in ``dataset`` of ``select.exam_ids``, in the order given."""
    wanted = np.asarray(list(exam_ids), dtype=dataset.exam_ids.dtype)
    if dataset.exam_ids.dtype == object:  # names: compared as text
        wanted = wanted.astype(str).astype(object)
    missing = sorted(set(wanted) - set(dataset.exam_ids))
    if missing:
        raise UserError(f"select.exam_ids: {missing[:5]} are not in the split")
    return np.array([int(np.flatnonzero(dataset.exam_ids == e)[0]) for e in wanted])


def ranked_exams(dataset, scores: np.ndarray, settings: DictConfig,
                 target_column: int) -> np.ndarray:
    """Positions in ``dataset``: the top/bottom-k by score (optionally among the exams whose
    target ``target_column`` is positive), else all by score."""
    pool = np.arange(len(scores))
    if settings.only_positives:
        pool = pool[dataset.targets[:, target_column] == 1]
    order = pool[np.argsort(-scores[pool], kind="stable")]
    if settings.top_k is None and settings.bottom_k is None:
        return order
    top = order[:settings.top_k or 0]
    bottom = order[::-1][:settings.bottom_k or 0]
    return np.concatenate([top, bottom[~np.isin(bottom, top)]])


def batch_of(dataset, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Tracings and metadata of the exams at ``positions``, read as one batch; every exam must
    be usable (scores and maps are matched to the positions)."""
    batch = dataset.__getitems__(positions)
    if batch is None or len(batch["exam_id"]) != len(positions):
        raise UserError("select: the selected exams include some with NaN/Inf samples "
                        "or unreadable records; select others (select.exam_ids)")
    return batch["tracing"], batch.get("metadata")


def network_outputs(model: TrainedModel, dataset, positions: np.ndarray,
                    batch_size: int) -> torch.Tensor:
    """Every network output ``(n, outputs)`` for the exams at ``positions``, in batches of the
    one inference loop."""
    batches = ({"tracing": tracing, "metadata": metadata} for tracing, metadata in (
        batch_of(dataset, positions[start:start + batch_size])
        for start in range(0, len(positions), batch_size)))
    return torch.cat([done.outputs[0] for done in inferred([model], batches, model.device)])


def explained_value(model: TrainedModel, outputs: torch.Tensor, index: int
                    ) -> tuple[str, np.ndarray]:
    """The prediction column that shows output ``index`` and its values, in the task's
    units (a probability for a logit, years for an age, ...)."""
    column = model.objective.output_columns[index]
    predictions = model.objective.predict(outputs)
    return column, predictions[:, model.objective.prediction_columns.index(column)].numpy()


# Keys of heatmap.yaml that choose the inputs, not the heatmaps (left out of their settings).
INPUT_KEYS = ("run", "dataset", "data_root", "allow_modules", "ckpt_trusted")


def _method_options(cfg: DictConfig) -> dict:
    options = cfg.get(cfg.method) or {}
    return {k: options[k] for k in METHOD_OPTIONS.get(cfg.method, ()) if k in options}


def results_folder(run_folder: Path, method: str) -> Path:
    """A new folder ``<run>/heatmaps/<time>_<method>_<token>`` for this extraction."""
    return RunFolder(run_folder).heatmaps / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{method}_" \
        f"{run_token()}"


def extract_heatmaps(cfg: DictConfig) -> dict:
    """``ecgexp-heatmap`` (``heatmap.yaml``); returns where it wrote and how many exams."""
    run_folder, checkpoint = RunFolder.find_checkpoint(cfg.run, "run")
    allow_modules = cfg.get("allow_modules") or ()
    check_links_inside(run_folder, "run")  # the heatmaps are written into it
    run_config = RunFolder(run_folder).load_config("run", allow_modules)  # where its data is
    model = load_model(checkpoint, trusted=bool(cfg.get("ckpt_trusted")), key="run",
                       trust_key="ckpt_trusted", allow_modules=allow_modules)
    if cfg.get("dataset") is not None:
        run_config.dataset = cfg.dataset
    else:  # the run's own data, where the run found it: never regenerated here
        run_config = located_dataset(run_config, run_folder, cfg.get("data_root"), key="dataset",
                                     instead="choose the exams with dataset=<name> and its keys")
    datamodule = build_datamodule(run_config, model.objective,
                                  metadata_statistics=model.metadata_statistics or None)
    datamodule.setup()
    if cfg.select.split not in datamodule.datasets:
        raise UserError(f"select.split: '{cfg.select.split}' is not one of "
                        f"{sorted(datamodule.datasets)}")
    dataset = datamodule.datasets[cfg.select.split]
    index = output_index(cfg.target, model.objective)
    if cfg.select.exam_ids:  # score only the listed exams
        positions = listed_exams(dataset, cfg.select.exam_ids)
        outputs = network_outputs(model, dataset, positions, cfg.batch_size)
    else:
        every = network_outputs(model, dataset, np.arange(len(dataset)), cfg.batch_size)
        order = ranked_exams(dataset, every[:, index].numpy(), cfg.select,
                             min(index, len(model.objective.target_columns) - 1))
        positions, outputs = order, every[torch.as_tensor(order, dtype=torch.long)]
    column, predictions = explained_value(model, outputs, index)
    tracings, metadata = batch_of(dataset, positions)
    layer = cfg.layer if cfg.layer is not None else getattr(model.net, "gradcam_layer", None)
    maps = attribute(cfg.method, model.net, tracings, index, layer=layer,
                     metadata=metadata, batch_size=cfg.batch_size, **_method_options(cfg))
    if cfg.intensity:
        maps = gradient_intensity(maps)
    out = results_folder(run_folder, cfg.method)
    make_folder(out, "run (its run folder receives the heatmaps)")
    leads = list(model.contract.get("leads") or run_config.preprocessing.leads)
    rate = float(model.contract.get("sampling_rate_hz") or run_config.preprocessing.sampling_rate)
    settings = OmegaConf.to_container(OmegaConf.masked_copy(
        cfg, [key for key in cfg if key not in INPUT_KEYS]), resolve=True)
    with atomic_path(out / "heatmaps.h5", key="run") as partial, \
            h5py.File(partial, "w") as handle:
        handle.create_dataset("heatmaps", data=maps.astype(np.float32))
        ids = dataset.exam_ids[positions]
        handle.create_dataset("exam_id", data=ids, dtype=h5py.string_dtype()
                              if ids.dtype == object else ids.dtype)
        handle.create_dataset("output", data=outputs[:, index].numpy().astype(np.float32))
        handle.create_dataset("prediction", data=predictions.astype(np.float32))
        handle.create_dataset("tracings", data=tracings.numpy())
        handle.attrs.update({"method": cfg.method, "layer": str(layer),
                             "target": str(cfg.target), "output_index": index,
                             "output_name": model.objective.output_names[index],
                             "prediction_column": column, "units": model.objective.units,
                             "checkpoint": str(checkpoint), "leads": leads,
                             "sampling_rate_hz": rate, "intensity": bool(cfg.intensity),
                             "settings": json.dumps(settings)})
    figures = out / "figures"
    shown = min(cfg.figures.max_exams, len(positions))
    units = f" {model.objective.units}" if model.objective.units else ""
    layout = cfg.figures.layout
    if layout == "auto":  # the 3x4 paper layout needs the 12 standard leads (8-lead models)
        layout = "3x4" if len(leads) == 12 else "12x1"
    for position in range(shown):
        exam_id = dataset.exam_ids[positions[position]]
        figure = make_ecg_figure(
            tracings[position].numpy(), leads, rate, layout=layout,
            heatmap=visible_intensity(maps[position], cfg.figures.clip_percentile),
            style=cfg.figures.style,
            title=f"exam {exam_id}: {cfg.method} of {model.objective.output_names[index]}, "
                  f"{column} = {predictions[position]:.3f}{units}")
        for suffix in cfg.figures.formats:
            save(figure, confined_path(figures, exam_id, "select.exam_ids", f".{suffix}"))
    summary = {"heatmaps": str(out / "heatmaps.h5"), "exams": len(positions), "figures": shown,
               "run": str(run_folder), "checkpoint": str(checkpoint), "method": cfg.method,
               "output": model.objective.output_names[index], "settings": settings}
    write_text_atomic(out / "heatmap_summary.json", json.dumps(summary, indent=2), key="run")
    print(f"Heatmaps of {len(positions)} exams: {out / 'heatmaps.h5'} (figures in {figures})")
    return summary
