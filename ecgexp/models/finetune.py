"""How a network's parameters train (the ``finetune`` config group): all of them, the head
alone on a frozen backbone, or with layer-wise learning-rate decay.

- ``full``: every parameter at the optimiser's ``lr``.
- ``linear_probe``: only the task's head trains (:data:`ecgexp.models.heads.HEAD_MODULES`);
  the backbone is frozen and kept in eval mode (its BatchNorm statistics and dropout fixed).
- ``llrd``: layer ``i`` of ``n`` layer groups (``layer_groups()``, input first) trains at
  ``lr * layer_decay ** (n - i)``, the head at ``lr`` (Clark et al. 2020, as the ECG
  foundation-model benchmarks fine-tune).

``freeze_until``: the layer groups up to and including this one (an index, 0 the input side,
or a parameter-name prefix of a group) are frozen, in ``full`` and ``llrd``.
``random_encoder``: the architecture without its pretrained weights (``model.weights`` is not
loaded): the baseline a pretrained encoder must beat. ``cache_embeddings``: a linear probe
embeds each exam once and trains the head on the cached embeddings
(:mod:`ecgexp.tasks.embeddings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from ecgexp.errors import UserError
from ecgexp.models.heads import HEAD_MODULES

MODES = ("full", "linear_probe", "llrd")


@dataclass(frozen=True)
class FineTuning:
    mode: str = "full"
    freeze_until: int | str | None = None
    layer_decay: float = 0.75
    random_encoder: bool = False
    cache_embeddings: bool = True

    @classmethod
    def from_config(cls, settings: Mapping | None) -> FineTuning:
        """The ``finetune`` config (absent in runs made before it: ``full``), checked."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserError(f"finetune.{unknown[0]}: not a fine-tuning setting (mode, "
                            f"freeze_until, layer_decay, random_encoder, cache_embeddings)")
        tuning = cls(**settings)
        if tuning.mode not in MODES:
            raise UserError(f"finetune.mode: '{tuning.mode}' is not one of {', '.join(MODES)} "
                            f"(finetune=full|linear_probe|llrd)")
        if not 0.0 < float(tuning.layer_decay) <= 1.0:
            raise UserError(f"finetune.layer_decay: a factor in (0, 1] is needed, got "
                            f"{tuning.layer_decay}")
        return tuning

    def _groups(self, net: nn.Module) -> list[list[str]]:
        if not hasattr(net, "layer_groups"):
            raise UserError(f"finetune: mode={self.mode} with freeze_until="
                            f"{self.freeze_until} needs a network with layer groups (a "
                            f"pretrained encoder: model=ecg_fm, merl_resnet18, ecgfounder, "
                            f"hubert_ecg); {type(net).__name__} has none")
        return net.layer_groups()

    def _frozen_groups(self, groups: list[list[str]]) -> int:
        """How many layer groups, from the input, ``freeze_until`` freezes."""
        if self.freeze_until is None:
            return 0
        if isinstance(self.freeze_until, int):
            if not 0 <= self.freeze_until < len(groups):
                raise UserError(f"finetune.freeze_until: a layer group 0 to {len(groups) - 1}, "
                                f"got {self.freeze_until}")
            return self.freeze_until + 1
        for index, group in enumerate(groups):
            if any(prefix.startswith(str(self.freeze_until)) for prefix in group):
                return index + 1
        raise UserError(f"finetune.freeze_until: no layer group starts with "
                        f"'{self.freeze_until}' (groups: "
                        f"{', '.join(group[0] for group in groups)})")

    def parameter_groups(self, net: nn.Module, lr: float | None) -> list[dict]:
        """The optimiser's parameter groups (each with its ``lr``; ``lr=None``: the
        optimiser's default, not with ``llrd``); frozen parameters get ``requires_grad=False``
        and are left out."""
        if lr is None:
            if self.mode == "llrd":
                raise UserError("optimizer.lr: finetune=llrd scales the learning rate per layer "
                                "group: set optimizer.lr")
            return [{"params": [p for p in self._trained(net)]}]
        named = dict(net.named_parameters())
        if self.mode == "linear_probe":
            head = {name for name in named if name.split(".")[0] in HEAD_MODULES}
            for name, parameter in named.items():
                parameter.requires_grad_(name in head)
            return [{"params": [named[name] for name in sorted(head)], "lr": lr}]
        if self.mode == "full" and self.freeze_until is None:
            return [{"params": list(named.values()), "lr": lr}]
        groups = self._groups(net)
        frozen = self._frozen_groups(groups)
        assigned: dict[str, int] = {}
        for index, group in enumerate(groups):
            for name in named:
                if name not in assigned and name.startswith(tuple(group)):
                    assigned[name] = index
        result = []
        for index in range(len(groups)):
            names = [n for n, i in assigned.items() if i == index]
            for name in names:
                named[name].requires_grad_(index >= frozen)
            scale = self.layer_decay ** (len(groups) - index) if self.mode == "llrd" else 1.0
            if index >= frozen and names:
                result.append({"params": [named[n] for n in names], "lr": lr * scale})
        rest = [parameter for name, parameter in named.items() if name not in assigned]
        return result + [{"params": rest, "lr": lr}]

    def _trained(self, net: nn.Module) -> list[nn.Parameter]:
        return [p for group in self.parameter_groups(net, 1.0) for p in group["params"]]

    def frozen_modules(self, net: nn.Module) -> list[nn.Module]:
        """The modules kept in eval mode while training (the backbone of a linear probe)."""
        if self.mode != "linear_probe":
            return []
        return [module for name, module in net.named_children() if name not in HEAD_MODULES]
