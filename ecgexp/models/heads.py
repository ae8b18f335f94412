"""The one model signature and the task's head on any backbone (:class:`ECGNetwork`).

Every network of ecgexp takes the same named shape arguments, so that any task runs on any
model: ``in_leads`` and ``n_samples`` (the input ``(batch, leads, samples)``), ``n_outputs`` and
``head`` (from the task's objective), ``n_metadata`` (inputs fused into the head) and
``gaussian_hidden``. A backbone gives ``features(x)``, ``(batch, F)``; the head maps them to the
output, no activation applied:

- ``linear``: ``lin`` = Linear(F, n_outputs); output ``(batch, n_outputs)``.
- ``gaussian``: ``lin`` = Linear(F, n_outputs) gives the means, ``lin_log_var_1`` =
  Linear(F, hidden), ReLU, ``lin_log_var_2`` = Linear(hidden, n_outputs) the log-variances;
  output ``(batch, 2 * n_outputs)`` = ``[means, log_variances]``.
- ``coral``: ``lin`` = Linear(F, 1, bias=False), one weight vector shared by the
  ``n_outputs = K - 1`` logits, plus ``lin_bias`` of shape ``(1, n_outputs)``; output
  ``lin(features) + lin_bias``. ``sigmoid(logit k)`` is ``P(class > k)``.

With ``n_metadata > 0`` the metadata goes through ``meta_to_features`` (Linear(n_metadata, 64),
ReLU, Linear(64, 128), ReLU, Linear(128, 512)) and is concatenated with the features;
``combined_lin`` = Sequential(Linear(F + 512, H), ReLU, Linear(H, n_outputs)) with
``H = (F + 512) // 2`` then gives the output of the linear head and ``lin`` is an Identity (the
published ``ResNet1dMetaData``); for the gaussian and coral heads ``combined_lin`` stops after
the ReLU and the head above is applied to its ``H`` features. The parameter names are the
published electrolyte models', on every backbone.
"""

from __future__ import annotations

import torch
from torch import nn

HEADS = ("linear", "gaussian", "coral")
# The modules :meth:`ECGNetwork.build_head` adds: what a linear probe trains.
HEAD_MODULES = ("lin", "lin_log_var_1", "lin_log_var_2", "lin_bias", "meta_to_features",
                "combined_lin")
# Metadata branch of ResNet1dMetaData: n_metadata -> 64 -> 128 -> META_FEATURES.
META_FEATURES = 512


class ECGNetwork(nn.Module):
    """A backbone with the task's head. Subclasses build their layers, then call
    :meth:`build_head` with their feature width, and define :meth:`features`;
    ``gradcam_layer`` names the module whose ``(batch, channels, time)`` activations Grad-CAM
    explains by default (``ecgexp-heatmap layer=null``), None for a network without one."""

    gradcam_layer: str | None = None

    def __init__(self, in_leads: int, n_samples: int, head: str = "linear", n_metadata: int = 0,
                 gaussian_hidden: int | None = None):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"model.head: expected one of {', '.join(HEADS)}, got {head!r}")
        if n_metadata < 0:
            raise ValueError(f"model.n_metadata: a count >= 0 is needed, got {n_metadata}")
        if gaussian_hidden is not None and (head != "gaussian" or gaussian_hidden < 1):
            raise ValueError(f"model.gaussian_hidden: a width >= 1 for head=gaussian is needed, "
                             f"got {gaussian_hidden} with head={head}")
        self.in_leads, self.n_samples = int(in_leads), int(n_samples)
        self.head, self.n_metadata = head, int(n_metadata)

    # ------------------------------------------------------------------ the head
    def build_head(self, n_features: int, n_outputs: int,
                   gaussian_hidden: int | None = None) -> None:
        """The head's layers on ``n_features`` backbone features (the metadata fusion first
        when ``n_metadata > 0``)."""
        if self.n_metadata:
            n_features = self._build_metadata_fusion(n_features, n_outputs)
        if self.head == "linear":
            self.lin = nn.Identity() if self.n_metadata else nn.Linear(n_features, n_outputs)
        elif self.head == "gaussian":
            hidden = n_features if gaussian_hidden is None else gaussian_hidden
            self.lin = nn.Linear(n_features, n_outputs)
            self.lin_log_var_1 = nn.Linear(n_features, hidden)
            self.lin_log_var_2 = nn.Linear(hidden, n_outputs)
        else:
            self.lin = nn.Linear(n_features, 1, bias=False)
            # CORAL's initialisation: decreasing biases (K-1)/(K-1), ..., 1/(K-1), not zeros.
            self.lin_bias = nn.Parameter(torch.arange(n_outputs, 0, -1).float()[None] / n_outputs)

    def _build_metadata_fusion(self, n_features: int, n_outputs: int) -> int:
        """Adds ``meta_to_features`` and ``combined_lin``; returns the head's input width."""
        self.meta_to_features = nn.Sequential(
            nn.Linear(self.n_metadata, 64), nn.ReLU(), nn.Linear(64, 128), nn.ReLU(),
            nn.Linear(128, META_FEATURES))
        n_hidden = (n_features + META_FEATURES) // 2
        layers = [nn.Linear(n_features + META_FEATURES, n_hidden), nn.ReLU()]
        if self.head == "linear":  # published ResNet1dMetaData: combined_lin.2 is the output
            layers.append(nn.Linear(n_hidden, n_outputs))
        self.combined_lin = nn.Sequential(*layers)
        return n_outputs if self.head == "linear" else n_hidden

    @property
    def output_layer(self) -> nn.Linear | None:
        """The linear layer whose outputs are the network's (linear head: ``lin``, or
        ``combined_lin``'s last with metadata); None for the gaussian and coral heads."""
        if self.head != "linear":
            return None
        return self.combined_lin[-1] if self.n_metadata else self.lin

    # ------------------------------------------------------------------ forward
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's ``(batch, F)`` features of ``(batch, leads, samples)`` tracings."""
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        if x.shape[1:] != (self.in_leads, self.n_samples):
            raise ValueError(f"{type(self).__name__} expects (batch, {self.in_leads}, "
                             f"{self.n_samples}) tracings, got {tuple(x.shape)}")

    def _check_metadata(self, metadata: torch.Tensor | None, batch: int) -> None:
        name = type(self).__name__
        if not self.n_metadata:
            if metadata is not None:
                raise ValueError(f"{name} was built without metadata (model.n_metadata=0) "
                                 f"but metadata was given")
            return
        expected = (batch, self.n_metadata)
        if metadata is None or tuple(metadata.shape) != expected:
            got = None if metadata is None else tuple(metadata.shape)
            raise ValueError(f"{name} expects metadata of shape {expected} "
                             f"(model.n_metadata={self.n_metadata}), got {got}")

    def forward(self, x: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        self._check_metadata(metadata, x.shape[0])
        return self.head_outputs(self.features(x), metadata)

    def head_outputs(self, h: torch.Tensor, metadata: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """The head on ``(batch, F)`` backbone features (a linear probe's cached embeddings)."""
        if self.n_metadata:
            meta = self.meta_to_features(metadata.to(h.dtype))
            h = self.combined_lin(torch.cat([h, meta], dim=1))
        if self.head == "gaussian":
            log_var = self.lin_log_var_2(torch.relu(self.lin_log_var_1(h)))
            return torch.cat([self.lin(h), log_var], dim=1)
        if self.head == "coral":
            return self.lin(h) + self.lin_bias
        return self.lin(h)
