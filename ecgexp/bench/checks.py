"""The benchmarks' correctness checks: two code paths timed against each other must compute the
same thing, and each check records the difference it saw against the tolerance it allows.

Exact checks (tolerance 0) are kept for computations that are provably the same operations on
the same numbers: data read two ways (copies and one correctly rounded multiplication by the
scale), integer counts, the same function called twice on the same inputs. Everything that sums
floating-point numbers is compared with a rounding tolerance: convolution and matrix kernels add
their terms in an order that depends on the batch size, the thread count, the CPU's vector
width (``ATEN_CPU_CAPABILITY``) and, in a CPU backward pass, on which thread finishes first.

Rounding tolerance. In the probabilistic model of Higham and Mary ("A new approach to
probabilistic rounding error analysis", SIAM J. Sci. Comput. 41, 2019), where each rounding
error is an independent zero-mean variable, a float32 sum of ``n`` terms is within
``lambda * sqrt(n) * u * sum |terms|`` of the exact sum with probability at least
``1 - 2 exp(-lambda^2 / 2)`` (``u = eps / 2``, the unit roundoff). Two evaluations of the same
sum, each within that, differ by at most ``lambda * sqrt(n) * eps`` times the magnitude of the
terms. Here ``lambda = 5`` (the bound fails with probability below 1e-5), ``n`` is the longest
reduction of the computation (``longest_reduction``) and the magnitude is the norm of the
reference result: differences are measured normwise, ``||a - b||_2 / ||b||_2`` over a whole
tensor (all parameters' gradients, all exams' scores, one exam's map), so that an entry that
cancels to near zero (the gradient of a BatchNorm bias ahead of another BatchNorm: 7e-5 of its
own size between kernel sets on an AMD EPYC) is weighed against the size of its tensor, as its
terms are. Deeper networks chain reductions; on the default network the measured normwise
differences (8e-7 for a training step's gradients between kernel sets or thread counts, 5e-7
for attribution maps between batch sizes) stay well inside the bound (7.6e-5 and 4.4e-5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LAMBDA = 5.0
EPS32 = float(np.finfo(np.float32).eps)


def rounding_tolerance(n: int, eps: float = EPS32) -> float:
    """Largest normwise relative difference between two evaluations of a computation whose
    longest sum has ``n`` terms: ``LAMBDA * sqrt(n) * eps`` (module docstring)."""
    return LAMBDA * math.sqrt(n) * eps


def _float64(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    return np.asarray(values, dtype=np.float64)


def max_abs_difference(a, b) -> float:
    """``max |a - b|``; positions NaN in both count as equal, NaN in one as infinite; infinite
    for different shapes. Dicts (a batch): the largest over their keys, infinite when the keys
    differ."""
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or a.keys() != b.keys():
            return math.inf
        return max((max_abs_difference(a[key], b[key]) for key in a), default=0.0)
    a, b = _float64(a), _float64(b)
    if a.shape != b.shape:
        return math.inf
    same = (a == b) | (np.isnan(a) & np.isnan(b))  # equal infinities too
    with np.errstate(invalid="ignore"):
        difference = np.where(same, 0.0, np.abs(a - b))
    return float(np.nan_to_num(difference, nan=math.inf, posinf=math.inf).max(initial=0.0))


def relative_difference(a, b) -> float:
    """Normwise relative difference ``||a - b||_2 / ||b||_2`` (0 for two zero tensors, NaN when
    either holds NaN, infinite for different shapes)."""
    a, b = _float64(a), _float64(b)
    if a.shape != b.shape:
        return math.inf
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(np.float64).tiny))


@dataclass
class Check:
    """One comparison: ``observed`` (the difference seen, in ``measure``) against
    ``tolerance`` (derived as ``basis`` says); passed when ``observed <= tolerance`` (NaN
    fails)."""

    name: str
    observed: float
    tolerance: float
    measure: str
    basis: str
    max_abs_difference: float | None = None

    def __post_init__(self) -> None:
        self.observed, self.tolerance = float(self.observed), float(self.tolerance)

    @property
    def passed(self) -> bool:
        return bool(self.observed <= self.tolerance)

    @property
    def margin(self) -> float | None:
        """``tolerance / observed``: how many times the difference seen fits in the tolerance
        (None for an exact check, or when no difference was seen)."""
        if self.tolerance == 0 or self.observed == 0:
            return None
        return self.tolerance / self.observed

    def as_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "observed": self.observed,
                "tolerance": self.tolerance, "margin": self.margin, "measure": self.measure,
                "basis": self.basis, "max_abs_difference": self.max_abs_difference}


def exact(name: str, a, b, why: str) -> Check:
    """``a`` and ``b`` must be equal, entry by entry (``why``: the computation is the same)."""
    difference = max_abs_difference(a, b)
    return Check(name, difference, 0.0, "max abs difference", f"exact: {why}", difference)


def within_rounding(name: str, observed: float, n: int,
                    max_abs: float | None = None) -> Check:
    """A relative difference ``observed`` within float32 rounding of a computation whose
    longest sum has ``n`` terms."""
    return Check(name, observed, rounding_tolerance(n), "relative difference",
                 f"float32 rounding, {LAMBDA:g} sqrt({n}) eps", max_abs)


def close(name: str, a, b, n: int) -> Check:
    """``a`` within float32 rounding of the reference ``b`` (``within_rounding``)."""
    return within_rounding(name, relative_difference(a, b), n, max_abs_difference(a, b))


def none_of(name: str, count: int, what: str) -> Check:
    """A count that must be zero, e.g. records rejected."""
    return Check(name, count, 0, what, "exact: none expected")


def longest_reduction(net: nn.Module, inputs: tuple[torch.Tensor, ...],
                      weight_gradients: bool) -> int:
    """The most terms any one sum adds in a forward and backward pass of ``net`` over
    ``inputs``: a convolution adds ``C_in / groups * kernel`` products per output value and as
    many ``C_out / groups * kernel`` per input gradient; a linear layer ``in_features`` and
    ``out_features``. With ``weight_gradients`` (a training step), a weight's gradient adds one
    product per output position of every exam (``batch * L_out``; a linear layer: ``batch``),
    as a BatchNorm's batch statistics do per channel. Found by forward hooks on one pass in
    eval mode, without gradients (``net`` is left as it was)."""
    lengths = [1]

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        positions = output.shape[2] if output.dim() == 3 else 1
        if isinstance(module, nn.Conv1d):
            kernel = module.kernel_size[0]
            lengths.extend([module.in_channels // module.groups * kernel,
                            module.out_channels // module.groups * kernel])
        elif isinstance(module, nn.Linear):
            lengths.extend([module.in_features, module.out_features])
        if weight_gradients:
            lengths.append(len(output) * positions)

    hooks = [module.register_forward_hook(record) for module in net.modules()
             if isinstance(module, (nn.Conv1d, nn.Linear, nn.BatchNorm1d))]
    training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(*inputs)
    finally:
        net.train(training)
        for hook in hooks:
            hook.remove()
    return max(lengths)
