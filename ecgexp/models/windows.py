"""Training on random crops and predicting from sliding windows (``model.crop``), as the
PTB-XL benchmark does (Strodthoff et al., IEEE JBHI 2021: ``fastai_model``: random 2.5 s crops
of each record in training; at validation and test, windows of 2.5 s every 1.25 s whose
outputs are aggregated by their maximum).

:class:`SlidingWindows` wraps any network built for ``window`` samples so that it takes the
whole exam, ``(batch, leads, n_samples)``: in training mode one random crop per exam (the
start drawn from torch's generator, so the run's seed fixes it), in eval mode every window
``stride`` samples apart from the start (the rest, shorter than a stride, is not used), the
network's outputs of an exam's windows aggregated by ``max`` (the benchmark's: for logits, the
highest probability) or ``mean``.
"""

from __future__ import annotations

import torch
from torch import nn

AGGREGATES = ("max", "mean")


class SlidingWindows(nn.Module):
    """``net`` (taking ``(batch, leads, window)``) on crops of ``(batch, leads, n_samples)``
    exams; the state-dict keys are ``net``'s under ``net.``."""

    # Grad-CAM would see each window's activations, not the exam's: saliency methods apply.
    gradcam_layer = None

    def __init__(self, net: nn.Module, n_samples: int, window: int, stride: int,
                 aggregate: str = "max"):
        super().__init__()
        if not 1 <= window <= n_samples:
            raise ValueError(f"model.crop.window: 1 to the exam's {n_samples} samples, "
                             f"got {window}")
        if stride < 1:
            raise ValueError(f"model.crop.stride: at least 1 sample, got {stride}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"model.crop.aggregate: one of {', '.join(AGGREGATES)}, "
                             f"got {aggregate!r}")
        self.net, self.window, self.stride, self.aggregate = net, window, stride, aggregate
        self.n_samples, self.in_leads = n_samples, net.in_leads
        self.head, self.n_metadata = net.head, net.n_metadata
        self.n_windows = 1 + (n_samples - window) // stride

    @property
    def output_layer(self):
        return getattr(self.net, "output_layer", None)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[1:] != (self.in_leads, self.n_samples):
            raise ValueError(f"SlidingWindows expects (batch, {self.in_leads}, "
                             f"{self.n_samples}) tracings, got {tuple(x.shape)}")
        inputs = () if metadata is None else (metadata,)
        if self.training:
            starts = torch.randint(0, self.n_samples - self.window + 1, (x.shape[0],),
                                   device=x.device)
            index = (starts[:, None] + torch.arange(self.window, device=x.device))[:, None]
            return self.net(x.gather(2, index.expand(-1, x.shape[1], -1)), *inputs)
        windows = x.unfold(2, self.window, self.stride)[:, :, :self.n_windows]
        windows = windows.permute(0, 2, 1, 3).reshape(-1, x.shape[1], self.window)
        inputs = tuple(m.repeat_interleave(self.n_windows, dim=0) for m in inputs)
        outputs = self.net(windows, *inputs).reshape(x.shape[0], self.n_windows, -1)
        return outputs.amax(dim=1) if self.aggregate == "max" else outputs.mean(dim=1)
