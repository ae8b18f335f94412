"""The one inference loop: trained networks over batches of exams, for every path that
predicts (a run's validation and test splits, its external test sets, ``ecgexp-predict``, the
Python API, the Challenge interface and the benchmarks), and a frozen backbone's embeddings
(:func:`embedded`, a linear probe's cache).

Each path brings its batches (read its own way) and builds its table from what this loop
yields (:func:`ecgexp.inference.rows.prediction_rows`); the forward pass, the device, the
metadata inputs and the objective's ``predict`` are done here alone, in float32 and under
``torch.inference_mode``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ecgexp.errors import UserError


def device_of(name: str) -> torch.device:
    """``auto`` (a CUDA device when there is one), or a torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device: '{name}' is not a device (auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device: '{name}', but this machine has no CUDA device "
                        f"(torch.cuda.is_available() is false); set device=cpu or device=auto")
    return device


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning ``trainer.precision`` (``bf16-mixed``, ``16-mixed``,
    and their ``-true`` forms), so that a run's splits are predicted in the precision it was
    trained and validated in; None for 32 and 64 bits."""
    name = str(precision)
    if name.startswith("bf16"):
        return torch.bfloat16
    if name.startswith("16"):
        return torch.float16
    return None


@dataclass
class Inferred:
    """One batch through the loop.

    batch: the batch as it came in; outputs: per member, its raw network outputs
    ``(batch, len(objective.output_names))`` on the CPU; predictions: ``(members, batch,
    len(objective.prediction_columns))`` float32 in the target's units, NaN for the exams
    not fed (``batch["fed"]`` false)."""

    batch: dict
    outputs: list[torch.Tensor]
    predictions: np.ndarray


def inferred(models: Sequence, batches: Iterable[dict | None], device: str | torch.device = "auto",
             autocast: torch.dtype | None = None) -> Iterator[Inferred]:
    """``models`` (:class:`~ecgexp.inference.model.TrainedModel` of one task: one, or the
    members of an ensemble) over ``batches``, in order; a ``None`` batch (every exam of it left
    out by ``dataset.nan_policy=skip``) is passed over.

    A batch holds ``"tracing"``: ``(batch, leads, samples)`` float32 mV; optionally
    ``"metadata"``: the network's metadata input ``(batch, columns)`` already standardised (a
    run's own splits), or ``"raw_metadata"``: raw values in the model's column order that each
    member standardises as it was trained (:meth:`TrainedModel.metadata_inputs`); and
    ``"fed"``: ``(batch,)`` bools, the exams whose predictions count (the others are NaN).
    ``autocast``: the dtype the network computes in under ``torch.autocast`` (a run trained in
    mixed precision); float32 by default."""
    target = device if isinstance(device, torch.device) else device_of(device)
    nets = [model.net.to(target).eval() for model in models]
    n_columns = len(models[0].objective.prediction_columns)
    for batch in batches:
        if batch is None:
            continue
        tracings = torch.as_tensor(batch["tracing"]).to(target, torch.float32, non_blocking=True)
        n = len(tracings)
        fed = np.ones(n, bool) if batch.get("fed") is None else np.asarray(batch["fed"], bool)
        predictions = np.full((len(models), n, n_columns), np.nan, np.float32)
        outputs = []
        for member, (model, net) in enumerate(zip(models, nets)):
            extra = ()
            if batch.get("metadata") is not None:
                extra = (torch.as_tensor(batch["metadata"]).to(target, torch.float32),)
            elif batch.get("raw_metadata") is not None:
                extra = (model.metadata_inputs(batch["raw_metadata"], n).to(target),)
            with torch.inference_mode(), torch.autocast(target.type, autocast,
                                                        enabled=autocast is not None):
                raw = net(tracings, *extra)
                scores = model.objective.predict(raw).float().cpu().numpy()
            outputs.append(raw.cpu())
            predictions[member, fed] = scores.reshape(n, -1)[fed]
        yield Inferred(batch, outputs, predictions)


def embedded(net: torch.nn.Module, batches: Iterable[dict | None],
             device: str | torch.device = "auto") -> torch.Tensor:
    """``(exams, F)`` float32 backbone features (``net.features``) of the exams of
    ``batches`` (``"tracing"``: ``(batch, leads, samples)`` mV), in order, on the CPU."""
    target = device if isinstance(device, torch.device) else device_of(device)
    net = net.to(target).eval()
    found = []
    with torch.inference_mode():
        for batch in batches:
            if batch is not None:
                tracings = torch.as_tensor(batch["tracing"]).to(target, torch.float32)
                found.append(net.features(tracings).float().cpu())
    return torch.cat(found)
