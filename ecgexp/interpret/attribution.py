"""Batched attribution maps for ECG models (docs/studies.md §5.2; defects of §6.27-30 fixed).

Every method takes ``tracings`` of shape ``(batch, leads, samples)`` (NumPy array or tensor),
an output index ``target`` and, for models built with ``n_metadata > 0``, ``metadata`` of shape
``(batch, n_metadata)``; it runs one forward and one backward pass for the whole batch
(integrated gradients: one per internal batch of interpolation steps) and returns a float32
NumPy map of shape ``(batch, leads, samples)``; inputs are cast to the dtype and device of the
model's parameters. The model is switched to eval mode for the computation (dropout off, batch
norm on running statistics, so exams do not interact and a batch gives the same maps as one
exam at a time) and its previous mode is restored afterwards; parameter gradients are never
accumulated. "The same" is up to rounding: in float32 a ReLU pre-activation within rounding
error of zero can fall on the other side of zero at another batch size, which changes the
gradients behind it (seen once in 32 exams of the default network: 2e-4 on a Grad-CAM map).

- ``grad_cam``: Grad-CAM of a named layer, one time map per exam copied to every lead;
- ``saliency``: gradient of the output with respect to the input (absolute value by default);
- ``guided_backprop``: captum's guided backpropagation (overrides the ``nn.ReLU`` modules'
  backward pass);
- ``integrated_gradients``: captum's integrated gradients from a constant baseline;
- ``attribute``: any of the above by name, in chunks of ``batch_size`` exams;
- ``gradient_intensity``: the published scatter-marker intensity of a map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, IntegratedGradients, Saliency
from torch import nn

ArrayLike = np.ndarray | torch.Tensor
# Floor of the mean squared map in the published marker area scale * g^2 / max(mean g^2, 0.001).
INTENSITY_FLOOR = 1e-3
N_LAYER_NAMES_SHOWN = 6


def output_of(model: nn.Module, target: int) -> Callable[..., torch.Tensor]:
    """``forward(x, metadata=None) -> (batch,)``: output ``target`` of ``model`` for ``x``.

    ``x`` is ``(batch, leads, samples)``; ``metadata`` (``(batch, n_metadata)``) is passed on as
    ``model(x, metadata)`` when given, otherwise the model is called as ``model(x)``.
    """

    def forward(x: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        output = model(x) if metadata is None else model(x, metadata)
        return output[:, target]

    return forward


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode; restore every submodule's own mode on exit."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _as_tensor(values: ArrayLike | None, model: nn.Module) -> torch.Tensor | None:
    """``values`` on the device and in the floating dtype of the model's parameters, detached
    from the caller's tensor and graph."""
    if values is None:
        return None
    parameter = next(model.parameters())
    return torch.as_tensor(values, dtype=parameter.dtype, device=parameter.device).detach()


def _to_numpy(maps: torch.Tensor) -> np.ndarray:
    """``maps`` as a float32 NumPy array."""
    return maps.detach().cpu().numpy().astype(np.float32, copy=False)


def _forward_args(metadata: torch.Tensor | None) -> tuple[torch.Tensor, ...] | None:
    """captum's ``additional_forward_args``: the metadata, expanded with the inputs."""
    return None if metadata is None else (metadata,)


def _find_layer(model: nn.Module, layer: str | None) -> nn.Module:
    """The submodule called ``layer`` (dotted name, e.g. ``resblock1d_2.conv1``)."""
    modules = dict(model.named_modules())
    if layer and layer in modules:
        return modules[layer]
    convolutions = [name for name, module in modules.items() if isinstance(module, nn.Conv1d)]
    shown = ", ".join(convolutions[:N_LAYER_NAMES_SHOWN])
    more = ", ..." if len(convolutions) > N_LAYER_NAMES_SHOWN else ""
    raise ValueError(f"layer: Grad-CAM needs the dotted name of a module of the model, "
                     f"got {layer!r}; convolutions include {shown}{more}")


def _min_max(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each row of ``(batch, samples)`` to [0, 1]; a flat row becomes 0."""
    low = maps.amin(dim=1, keepdim=True)
    spread = maps.amax(dim=1, keepdim=True) - low
    return (maps - low) / torch.where(spread > 0, spread, torch.ones_like(spread))


def grad_cam(model: nn.Module, tracings: ArrayLike, target: int, layer: str,
             metadata: ArrayLike | None = None) -> np.ndarray:
    """Grad-CAM of ``layer`` for output ``target``: ``(batch, leads, samples)`` float32 in [0, 1].

    The activations ``A`` ``(batch, channels, time)`` of ``layer`` are captured by a forward hook
    (for a residual block, whose output is a pair, its main-path output); their gradients
    ``dy/dA`` come from ``torch.autograd.grad``. Per exam and channel the weight is the mean of
    the gradient over time, ``w (batch, channels)``; the map ``ReLU(sum_c w_c A_c)``
    ``(batch, time)`` is linearly interpolated to ``samples``, min-max normalised per exam (an
    all-zero map stays zero) and copied to every lead. The hook is removed before returning,
    also when the forward pass fails.

    Raises:
        ValueError: ``layer`` is not a module of the model, runs more or less than once per
            forward pass (a shared module, docs/studies.md §6.30), or its output is not 3-D.
    """
    module = _find_layer(model, layer)
    x, meta = _as_tensor(tracings, model).requires_grad_(), _as_tensor(metadata, model)
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: tuple, output) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = module.register_forward_hook(keep)
    try:
        with _eval_mode(model), torch.enable_grad():
            selected = output_of(model, target)(x, meta)
            if len(captured) != 1:
                raise ValueError(f"layer: {layer!r} ran {len(captured)} times in one "
                                 f"forward pass; Grad-CAM needs a module used exactly once")
            (activations,) = captured
            if activations.dim() != 3:
                raise ValueError(f"layer: Grad-CAM needs a (batch, channels, time) "
                                 f"activation, {layer!r} gives {tuple(activations.shape)}")
            # Exams are independent in eval mode, so the gradient of the sum is per exam.
            (gradients,) = torch.autograd.grad(selected.sum(), activations)
    finally:
        handle.remove()
    with torch.no_grad():
        weights = gradients.mean(dim=2, keepdim=True)           # (batch, channels, 1)
        cam = torch.relu((weights * activations).sum(dim=1))  # (batch, time)
        cam = F.interpolate(cam[:, None], size=x.shape[-1], mode="linear",
                            align_corners=False)[:, 0]          # (batch, samples)
        cam = _min_max(cam)
    return _to_numpy(cam[:, None].expand(-1, x.shape[1], -1).contiguous())


def saliency(model: nn.Module, tracings: ArrayLike, target: int,
             metadata: ArrayLike | None = None, absolute: bool = True) -> np.ndarray:
    """Gradient of output ``target`` w.r.t. the input, ``(batch, leads, samples)`` float32.

    ``absolute``: return its absolute value (the usual saliency map) rather than the signed
    gradient.
    """
    x, meta = _as_tensor(tracings, model).requires_grad_(), _as_tensor(metadata, model)
    with _eval_mode(model):
        maps = Saliency(output_of(model, target)).attribute(
            x, abs=absolute, additional_forward_args=_forward_args(meta))
    return _to_numpy(maps)


def guided_backprop(model: nn.Module, tracings: ArrayLike, target: int,
                    metadata: ArrayLike | None = None) -> np.ndarray:
    """Guided backpropagation for output ``target``, ``(batch, leads, samples)`` float32.

    captum overrides the backward pass of the model's ``nn.ReLU`` modules (only positive
    gradients go back) for the call and removes its hooks afterwards.
    """
    x, meta = _as_tensor(tracings, model).requires_grad_(), _as_tensor(metadata, model)
    with _eval_mode(model):
        maps = GuidedBackprop(model).attribute(
            x, target=target, additional_forward_args=_forward_args(meta))
    return _to_numpy(maps)


def integrated_gradients(model: nn.Module, tracings: ArrayLike, target: int,
                         metadata: ArrayLike | None = None, baseline: float = 0.0,
                         steps: int = 32, internal_batch_size: int | None = None) -> np.ndarray:
    """Integrated gradients of output ``target`` from a constant ``baseline`` tracing.

    ``steps`` Gauss-Legendre points along the path; ``internal_batch_size`` caps the number of
    interpolated exams per forward pass (None: all ``batch * steps`` at once). Returns
    ``(batch, leads, samples)`` float32.
    """
    x, meta = _as_tensor(tracings, model).requires_grad_(), _as_tensor(metadata, model)
    with _eval_mode(model):
        maps = IntegratedGradients(output_of(model, target)).attribute(
            x, baselines=float(baseline), n_steps=steps,
            internal_batch_size=internal_batch_size,
            additional_forward_args=_forward_args(meta))
    return _to_numpy(maps)


def gradient_intensity(maps: ArrayLike) -> np.ndarray:
    """Published marker intensity ``g^2 / max(mean over samples of g^2, 0.001)`` (§5.2).

    ``maps`` is ``(batch, leads, samples)``; the mean is taken per exam and lead. The plotted
    marker area is ``scale`` (4.0 in the published code) times this. Returns float32 of the
    same shape.
    """
    squared = np.square(np.asarray(maps, dtype=np.float32))
    return squared / np.maximum(squared.mean(axis=-1, keepdims=True), INTENSITY_FLOOR)


def visible_intensity(maps: ArrayLike, clip_percentile: float = 99.0) -> np.ndarray:
    """A map made visible on a figure: ``|map|`` divided by its ``clip_percentile``-th
    percentile over the exam's samples, clipped to [0, 1]. Signed, sparse maps (integrated
    gradients) have a few large values; dividing by the maximum would leave the rest near 0
    and the overlay blank. ``clip_percentile=100`` divides by the maximum."""
    magnitude = np.abs(np.asarray(maps, dtype=np.float64))
    scale = np.percentile(magnitude, clip_percentile) if magnitude.size else 0.0
    if not scale > 0:
        scale = magnitude.max() if magnitude.size and magnitude.max() > 0 else 1.0
    return np.clip(magnitude / scale, 0.0, 1.0)


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "gradcam": grad_cam,
    "saliency": saliency,
    "guided_backprop": guided_backprop,
    "integrated_gradients": integrated_gradients,
}


def attribute(method: str, model: nn.Module, tracings: ArrayLike, target: int,
              layer: str | None = None, metadata: ArrayLike | None = None,
              batch_size: int = 32, **options) -> np.ndarray:
    """Maps of ``method`` for ``tracings`` ``(n, leads, samples)``: ``(n, leads, samples)``.

    The exams are processed ``batch_size`` at a time, each chunk in one batched call of the
    method, and the maps concatenated. ``layer`` is used by ``gradcam`` only; ``options`` go to
    the method (``absolute`` for saliency; ``baseline``, ``steps``, ``internal_batch_size`` for
    integrated gradients).
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size: a positive number of exams is needed, got {batch_size}")
    if method == "gradcam":
        options = {**options, "layer": layer}
    maps = [
        METHODS[method](model, tracings[start:start + batch_size], target,
                        metadata=None if metadata is None else metadata[start:start + batch_size],
                        **options)
        for start in range(0, len(tracings), batch_size)
    ]
    if not maps:
        return np.zeros(tuple(tracings.shape), dtype=np.float32)
    return np.concatenate(maps).astype(np.float32, copy=False)
