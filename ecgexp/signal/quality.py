"""Signal quality of raw records, lead by lead, before the signal steps: what is found, and
what is done about it (the ``quality`` config group).

Findings (one per record and kind, or per lead for the lead kinds), on the record as read
(``(samples, leads)`` mV, invalid samples such as WFDB's -32768 read as NaN):

- ``invalid_samples``: NaN/Inf samples of a lead: their count and first positions.
- ``zero_record``: every sample of every lead is 0.
- ``zero_lead``: every sample of a lead is 0 (the record is not all zero).
- ``flat_lead``: a lead whose peak-to-peak amplitude is below ``flat_lead_mv`` (not all 0).
- ``saturation``: a lead that stays at its own maximum or minimum, at least
  ``saturation_mv`` from 0, for ``saturation_samples`` consecutive samples or more (the
  amplifier's clipping plateau).
- ``implausible_amplitude``: a lead with a sample beyond ``implausible_mv`` in magnitude.
- ``short_record``: less than :data:`SHORT_RECORD_FRACTION` of the model's window at the
  record's rate (it is padded; a standard 10 s record, 97.7 % of the 10.24 s window, is not
  short).
- ``duplicate``: the same samples as an earlier record (by a hash of the raw signal).

Actions per kind: ``keep`` (report only), ``reject`` (the record is left out), ``zero_lead``
(the lead is set to 0; lead kinds only) and ``interpolate`` (``invalid_samples`` only: gaps of
at most ``max_gap_samples`` are filled linearly from their neighbours; a longer gap rejects).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ecgexp.errors import UserError

KINDS = ("invalid_samples", "zero_record", "zero_lead", "flat_lead", "saturation",
         "implausible_amplitude", "short_record", "duplicate")
LEAD_KINDS = ("invalid_samples", "zero_lead", "flat_lead", "saturation",
              "implausible_amplitude")
ACTIONS = ("keep", "reject", "zero_lead", "interpolate")
DEFAULT_ACTIONS = {"invalid_samples": "reject", "zero_record": "reject", "zero_lead": "keep",
                   "flat_lead": "keep", "saturation": "keep", "implausible_amplitude": "keep",
                   "short_record": "keep", "duplicate": "keep"}
POSITIONS_SHOWN = 5
# The quality report: one row per record and finding.
QUALITY_COLUMNS = ["exam_id", "record", "finding", "lead", "count", "detail", "action"]


@dataclass(frozen=True)
class Finding:
    """One finding: its kind, the lead (``""`` for the record) and what was measured."""

    kind: str
    lead: str
    count: int
    detail: str


@dataclass
class QualityRules:
    """The ``quality`` config group: thresholds (mV, samples) and an action per kind."""

    flat_lead_mv: float = 0.05
    saturation_mv: float = 2.0
    saturation_samples: int = 20
    implausible_mv: float = 20.0
    max_gap_samples: int = 10
    actions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for name, minimum, whole in (("flat_lead_mv", 0, False), ("saturation_mv", 0, False),
                                     ("implausible_mv", 0, False),
                                     ("saturation_samples", 1, True),
                                     ("max_gap_samples", 0, True)):
            value = getattr(self, name)
            number = isinstance(value, int if whole else (int, float)) and not isinstance(
                value, bool)
            if not number or not (value >= minimum if whole else value > minimum) or (
                    not whole and not np.isfinite(value)):
                wanted = f"a whole number >= {minimum}" if whole else "a number > 0"
                raise UserError(f"quality.{name}: {value!r} is not {wanted}; set "
                                f"quality.{name}=<value>")
        unknown = sorted(set(self.actions) - set(KINDS))
        if unknown:
            raise UserError(f"quality.actions: unknown finding {unknown[0]!r}; the findings "
                            f"are {', '.join(KINDS)}")
        self.actions = {**DEFAULT_ACTIONS, **dict(self.actions)}
        for kind, action in self.actions.items():
            allowed = (ACTIONS if kind == "invalid_samples" else
                       ("keep", "reject", "zero_lead") if kind in LEAD_KINDS else
                       ("keep", "reject"))
            if action not in allowed:
                raise UserError(f"quality.actions.{kind}: {action!r} is not one of "
                                f"{', '.join(allowed)}")


    @property
    def repairs(self) -> bool:
        """Whether an action changes a record's samples (``zero_lead``, ``interpolate``)."""
        return any(a in ("zero_lead", "interpolate") for a in self.actions.values())


def content_hash(signal: np.ndarray) -> str:
    """A hash of the raw samples (shape and values): equal for byte-identical records."""
    values = np.ascontiguousarray(signal, dtype=np.float64)
    return hashlib.sha256(repr(values.shape).encode() + values.tobytes()).hexdigest()


# The share of the model's window a record must cover not to be a ``short_record``.
SHORT_RECORD_FRACTION = 0.9


def shortest_samples(n_samples: int, sampling_rate: float, target_rate: float) -> int:
    """The fewest samples at ``sampling_rate`` that cover :data:`SHORT_RECORD_FRACTION` of a
    window of ``n_samples`` at ``target_rate``."""
    return int(np.ceil(SHORT_RECORD_FRACTION * n_samples * sampling_rate / target_rate))


def record_findings(signal: np.ndarray, leads: Sequence[str], rules: QualityRules,
                    min_samples: int | None = None) -> list[Finding]:
    """The findings of one record (``(samples, leads)`` mV) except ``duplicate``;
    ``min_samples``: the length below which it is ``short_record``."""
    findings = []
    finite = np.isfinite(signal)
    if finite.all() and not signal.any():
        return [Finding("zero_record", "", signal.size, "every sample is 0")]
    for index, lead in enumerate(leads):
        x = signal[:, index]
        bad = np.flatnonzero(~finite[:, index])
        if len(bad):
            shown = ", ".join(map(str, bad[:POSITIONS_SHOWN])) + (", ..." if len(bad) >
                                                                   POSITIONS_SHOWN else "")
            findings.append(Finding("invalid_samples", lead, len(bad),
                                    f"{len(bad)} invalid samples at {shown}"))
        valid = x[finite[:, index]]
        if not len(valid):
            continue
        if not valid.any():
            findings.append(Finding("zero_lead", lead, len(x), "every sample is 0"))
            continue
        span = float(np.ptp(valid))
        if span < rules.flat_lead_mv:
            findings.append(Finding("flat_lead", lead, len(x),
                                    f"peak-to-peak {span:.3g} mV < {rules.flat_lead_mv:g}"))
        plateau, level = _longest_plateau(valid, rules.saturation_mv)
        if plateau >= rules.saturation_samples:
            findings.append(Finding("saturation", lead, plateau,
                                    f"{plateau} samples at {level:.3g} mV"))
        peak = float(np.abs(valid).max())
        if peak > rules.implausible_mv:
            findings.append(Finding("implausible_amplitude", lead, 1,
                                    f"|sample| up to {peak:.3g} mV > {rules.implausible_mv:g}"))
    if min_samples is not None and len(signal) < min_samples:
        findings.append(Finding("short_record", "", len(signal),
                                f"{len(signal)} of {min_samples} samples (padded)"))
    return findings


def _longest_plateau(x: np.ndarray, min_mv: float) -> tuple[int, float]:
    """The longest run of samples at the lead's maximum or minimum, for extremes at least
    ``min_mv`` from 0; and its level."""
    best, level = 0, 0.0
    for extreme in (x.max(), x.min()):
        if abs(extreme) < min_mv:
            continue
        at = np.concatenate([[0], (x == extreme).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(at))
        longest = int((edges[1::2] - edges[::2]).max())
        if longest > best:
            best, level = longest, float(extreme)
    return best, level


def apply_actions(signal: np.ndarray, leads: Sequence[str], findings: Sequence[Finding],
                  rules: QualityRules) -> tuple[np.ndarray | None, str]:
    """The signal after the rules' actions, and why it is rejected (``None``, reason) when an
    action rejects it."""
    out = signal
    for finding in findings:
        action = rules.actions[finding.kind]
        if action == "reject":
            where = f" in lead {finding.lead}" if finding.lead else ""
            return None, f"{finding.kind}{where}: {finding.detail} (quality.actions." \
                         f"{finding.kind}=reject)"
        if action == "keep":
            continue
        if out is signal:
            out = signal.copy()
        column = list(leads).index(finding.lead)
        if action == "zero_lead":
            out[:, column] = 0.0
        else:  # interpolate
            longest = _longest_gap(~np.isfinite(out[:, column]))
            if longest > rules.max_gap_samples:
                return None, (f"invalid_samples in lead {finding.lead}: a gap of {longest} "
                              f"samples > quality.max_gap_samples={rules.max_gap_samples}")
            out[:, column] = _interpolated(out[:, column])
    return out, ""


def _longest_gap(bad: np.ndarray) -> int:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], bad.astype(np.int8), [0]])))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def _interpolated(x: np.ndarray) -> np.ndarray:
    """``x`` with its NaN/Inf samples filled linearly from the nearest valid neighbours (the
    nearest valid value at the ends)."""
    good = np.isfinite(x)
    if not good.any():
        return np.zeros_like(x)
    positions = np.arange(len(x))
    return np.interp(positions, positions[good], x[good])
