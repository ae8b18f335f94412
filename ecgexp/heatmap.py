"""``ecgexp task=heatmap ckpt=<run folder or checkpoint>``: saliency heatmaps of a trained model.

The network is rebuilt from the run's own resolved config (so it matches the checkpoint) and
its weights loaded; the exams come from the run's dataset (or the ``dataset`` chosen on the
command line with ``task.dataset=current``). Heatmaps are computed in batches and written to
``heatmaps.h5`` (``heatmaps`` (N, leads, samples) float32, ``exam_id``, ``score`` = the
explained network output, ``tracings`` (N, leads, samples), and the method in the attributes),
with one ECG figure per selected exam under ``figures/`` (signed attributions such as integrated
gradients are drawn by magnitude).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ecgexp.checkpoints import network_state, read_checkpoint
from ecgexp.files import atomic_path, confined_path, write_text_atomic
from ecgexp.interpret.attribution import attribute, gradient_intensity
from ecgexp.interpret.ecg_plot import make_ecg_figure, save
from ecgexp.models.weights import build_model
from ecgexp.run_folder import find_checkpoint, load_run_config, located_dataset

log = logging.getLogger(__name__)


def load_model(run_config: DictConfig, checkpoint: Path,
               trusted: bool = False) -> tuple[torch.nn.Module, object]:
    """The run's network with the checkpoint's weights, and its objective with the training
    statistics stored beside them (read through the one checkpoint reader)."""
    state = read_checkpoint(checkpoint, "ckpt", trusted=trusted)
    net = build_model(run_config.model, with_weights=False)  # the checkpoint's weights below
    net.load_state_dict(network_state(state, checkpoint, "ckpt"))
    objective = instantiate(run_config.task.objective)
    objective.load_state(state.get("objective_state", {}))
    return net.eval(), objective


def output_index(target: int | str, objective, n_outputs: int) -> int:
    """``task.target``: an output index, or a label / prediction-column name."""
    if isinstance(target, int) or str(target).isdigit():
        index = int(target)
    else:
        names = list(objective.target_columns)
        columns = [c.split("_", 1)[-1] for c in objective.prediction_columns]
        index = names.index(target) if target in names else (
            columns.index(target) if target in columns else -1)
    if not 0 <= index < n_outputs:
        raise ValueError(f"task.target: '{target}' is not an output index below {n_outputs} "
                         f"or one of {list(objective.target_columns)}")
    return index


def listed_exams(dataset, exam_ids) -> np.ndarray:
    """Positions in ``dataset`` of ``task.select.exam_ids``, in the order given."""
    wanted = np.asarray(list(exam_ids), dtype=np.int64)
    missing = sorted(set(wanted) - set(dataset.exam_ids))
    if missing:
        raise ValueError(f"task.select.exam_ids: {missing[:5]} are not in the split")
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
        raise ValueError("heatmaps: the selected exams include some with NaN/Inf samples or "
                         "unreadable records; select others (task.select.exam_ids)")
    return batch["tracing"], batch.get("metadata")


@torch.no_grad()
def output_scores(net, dataset, positions: np.ndarray, index: int,
                  batch_size: int) -> np.ndarray:
    """The explained network output ``index`` (before any activation: a logit, a regressed
    value) for the exams at ``positions`` of ``dataset``, in batches."""
    scores = []
    for start in range(0, len(positions), batch_size):
        tracings, metadata = batch_of(dataset, positions[start:start + batch_size])
        outputs = net(tracings) if metadata is None else net(tracings, metadata)
        scores.append(outputs[:, index])
    return torch.cat(scores).numpy()


def extract_heatmaps(cfg: DictConfig) -> dict:
    """The ``task=heatmap`` entry point; returns where it wrote and how many exams."""
    from ecgexp.data.build import build_datamodule

    task = cfg.task
    run_folder, checkpoint = find_checkpoint(cfg.get("ckpt"))
    run_config = load_run_config(run_folder, key="ckpt")
    if task.dataset == "current":
        run_config.dataset = cfg.dataset
    else:  # the run's own data, where the run found it: never regenerated here
        run_config = located_dataset(run_config, run_folder, key="task.dataset",
                                     instead="set task.dataset=current with a dataset")
    net, objective = load_model(run_config, checkpoint, trusted=bool(cfg.get("ckpt_trusted")))
    datamodule = build_datamodule(run_config)
    datamodule.setup()
    if task.select.split not in datamodule.datasets:
        raise ValueError(f"task.select.split: '{task.select.split}' is not one of "
                         f"{sorted(datamodule.datasets)}")
    dataset = datamodule.datasets[task.select.split]
    index = output_index(task.target, objective, run_config.model.n_outputs
                         * (2 if run_config.model.get("head") == "gaussian" else 1))
    if task.select.exam_ids:  # score only the listed exams
        positions = listed_exams(dataset, task.select.exam_ids)
        scores = output_scores(net, dataset, positions, index, task.batch_size)
    else:
        every = output_scores(net, dataset, np.arange(len(dataset)), index, task.batch_size)
        positions = ranked_exams(dataset, every, task.select,
                                 min(index, len(objective.target_columns) - 1))
        scores = every[positions]
    tracings, metadata = batch_of(dataset, positions)
    maps = attribute(task.method, net, tracings, index, layer=task.layer, metadata=metadata,
                     batch_size=task.batch_size)
    if task.intensity:
        maps = gradient_intensity(maps)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    leads = list(run_config.preprocessing.leads)
    with atomic_path(out / "heatmaps.h5", key="paths.output_dir") as partial, \
            h5py.File(partial, "w") as handle:
        handle.create_dataset("heatmaps", data=maps.astype(np.float32))
        handle.create_dataset("exam_id", data=dataset.exam_ids[positions])
        handle.create_dataset("score", data=scores.astype(np.float32))
        handle.create_dataset("tracings", data=tracings.numpy())
        handle.attrs.update({"method": task.method, "layer": str(task.layer),
                             "target": str(task.target), "output_index": index,
                             "checkpoint": str(checkpoint), "leads": leads,
                             "intensity": bool(task.intensity)})
    figures = out / "figures"
    for position in range(min(task.figures.max_exams, len(positions))):
        exam_id = int(dataset.exam_ids[positions[position]])
        figure = make_ecg_figure(
            tracings[position].numpy(), leads, run_config.dataset.get("sampling_rate", 400),
            heatmap=np.abs(maps[position]), layout=task.figures.layout, style=task.figures.style,
            title=f"exam {exam_id}: {task.method}, output {task.target}, "
                  f"score {scores[position]:.3f}")
        for suffix in task.figures.formats:
            save(figure, confined_path(figures, exam_id, "task.select.exam_ids", f".{suffix}"))
    summary = {"heatmaps": str(out / "heatmaps.h5"), "exams": len(positions),
               "figures": min(task.figures.max_exams, len(positions)),
               "run": str(run_folder), "method": task.method}
    write_text_atomic(out / "heatmap_summary.json", json.dumps(summary, indent=2),
                      key="paths.output_dir")
    print(f"Heatmaps of {len(positions)} exams: {out / 'heatmaps.h5'} (figures in {figures})")
    return summary
