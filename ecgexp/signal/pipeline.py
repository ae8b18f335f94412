"""The published ecg-preprocessing signal pipeline as one configurable callable."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ecgexp.signal.filters import (
    DERIVE_MODES,
    check_baseline_design,
    derive_limb_leads,
    fix_length,
    remove_baseline,
    remove_powerline,
    resample,
)
from ecgexp.signal.leads import CANONICAL_LEADS, normalise_lead_name

MISSING_LEAD_MODES = ("error", "zero")


class RecordRejected(ValueError):
    """A record the pipeline cannot turn into a tracing; ``reason`` says why (for the report)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SignalPipeline:
    """The published signal steps, in order: baseline removal at the original rate, powerline
    notch, polyphase resampling, amplitude scale, mapping to the target leads by name (deriving
    the limb leads from DI and DII), and fixing the length. Each is a config option
    (`preprocessing` group); defaults reproduce the published ecg-preprocessing (baseline
    removal on, no notch, 400 Hz, scale 1, 12 leads with the limb leads always derived, 4096
    samples).

    Units: ``sampling_rate``, ``baseline_*_hz`` and ``powerline_hz`` in Hz, ``baseline_ripple_db``
    and ``baseline_attenuation_db`` in dB, ``n_samples`` in samples at ``sampling_rate``;
    ``scale`` multiplies the mV amplitudes. ``powerline_hz=None`` skips the notch;
    ``missing_leads`` is ``"error"`` (reject the record) or ``"zero"`` (zero-fill).
    """

    def __init__(self, leads: Sequence[str] = CANONICAL_LEADS, sampling_rate: float = 400,
                 n_samples: int = 4096, baseline_removal: bool = True,
                 baseline_pass_hz: float = 0.8, baseline_stop_hz: float = 0.2,
                 baseline_ripple_db: float = 0.5, baseline_attenuation_db: float = 40,
                 powerline_hz: float | None = None, notch_quality: float = 30,
                 scale: float = 1.0, derive_limb_leads: str = "always",
                 missing_leads: str = "error"):
        self.leads = tuple(normalise_lead_name(lead) for lead in leads)
        if not self.leads or len(set(self.leads)) != len(self.leads):
            raise ValueError(f"preprocessing.leads: need distinct lead names, got {list(leads)}")
        if not (isinstance(sampling_rate, numbers.Real) and math.isfinite(sampling_rate)
                and sampling_rate > 0):
            raise ValueError(f"preprocessing.sampling_rate: must be > 0 Hz, got {sampling_rate}")
        if (not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool)
                or n_samples < 1):
            raise ValueError(f"preprocessing.n_samples: must be an integer >= 1, got {n_samples}")
        check_baseline_design(baseline_pass_hz, baseline_stop_hz, baseline_ripple_db,
                              baseline_attenuation_db)
        if powerline_hz is not None and not (math.isfinite(powerline_hz) and powerline_hz > 0):
            raise ValueError(f"preprocessing.powerline_hz: must be > 0 Hz or null, "
                             f"got {powerline_hz}")
        if not notch_quality > 0:
            raise ValueError(f"preprocessing.notch_quality: must be > 0, got {notch_quality}")
        if not (math.isfinite(scale) and scale != 0):
            raise ValueError(f"preprocessing.scale: must be finite and non-zero, got {scale}")
        if derive_limb_leads not in DERIVE_MODES:
            raise ValueError(f"preprocessing.derive_limb_leads: unknown mode "
                             f"{derive_limb_leads!r}; choose one of {list(DERIVE_MODES)}")
        if missing_leads not in MISSING_LEAD_MODES:
            raise ValueError(f"preprocessing.missing_leads: unknown mode {missing_leads!r}; "
                             f"choose one of {list(MISSING_LEAD_MODES)}")
        self.sampling_rate = sampling_rate
        self.n_samples = int(n_samples)
        self.baseline_removal = bool(baseline_removal)
        self.baseline_design = {"pass_hz": baseline_pass_hz, "stop_hz": baseline_stop_hz,
                                "ripple_db": baseline_ripple_db,
                                "attenuation_db": baseline_attenuation_db}
        self.powerline_hz = powerline_hz
        self.notch_quality = notch_quality
        self.scale = scale
        self.derive_limb_leads = derive_limb_leads
        self.missing_leads = missing_leads

    def as_dict(self) -> dict[str, Any]:
        """The settings, keyed like the ``preprocessing`` config group (for run metadata)."""
        design = self.baseline_design
        return {"leads": list(self.leads), "sampling_rate": self.sampling_rate,
                "n_samples": self.n_samples, "baseline_removal": self.baseline_removal,
                "baseline_pass_hz": design["pass_hz"], "baseline_stop_hz": design["stop_hz"],
                "baseline_ripple_db": design["ripple_db"],
                "baseline_attenuation_db": design["attenuation_db"],
                "powerline_hz": self.powerline_hz, "notch_quality": self.notch_quality,
                "scale": self.scale, "derive_limb_leads": self.derive_limb_leads,
                "missing_leads": self.missing_leads}

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.as_dict().items())
        return f"SignalPipeline({settings})"

    def __call__(self, signal: np.ndarray, sampling_rate: float,
                 leads: Sequence[str]) -> np.ndarray:
        """(samples, record leads) mV at `sampling_rate` -> (n_samples, len(self.leads)) float32.

        ``sampling_rate`` is the record's rate in Hz and ``leads`` names the record's columns;
        columns are matched to ``self.leads`` by (normalised) name, extra ones are dropped.
        Raises :class:`RecordRejected` for a record that cannot be processed.
        """
        rate = _record_rate(sampling_rate)
        names = [normalise_lead_name(lead) for lead in leads]
        data = _record_array(signal, names)
        if self.baseline_removal:
            data = _filter(remove_baseline, "baseline removal", data, rate,
                           **self.baseline_design)
        if self.powerline_hz is not None:
            data = _filter(remove_powerline, "powerline notch", data, rate, self.powerline_hz,
                           self.notch_quality)
        data = resample(data, rate, self.sampling_rate) * self.scale
        recorded = list(names)
        data, names = derive_limb_leads(data, names, self.derive_limb_leads)
        missing = [lead for lead in self.leads if lead not in names]
        if missing and self.missing_leads == "error":
            derived = [lead for lead in names if lead not in recorded]
            raise RecordRejected(
                f"missing leads {missing}: the record has {len(recorded)} leads {recorded}"
                + (f" (and {derived} derived from them)" if derived else "")
                + "; set preprocessing.missing_leads=zero to zero-fill")
        out = np.zeros((data.shape[0], len(self.leads)), dtype=np.float32)
        for column, lead in enumerate(self.leads):
            if lead in names:
                out[:, column] = data[:, names.index(lead)]
        return fix_length(out, self.n_samples)


def _record_rate(sampling_rate: Any) -> float:
    """The record's sampling rate in Hz as a float; rejects unknown or non-positive rates."""
    try:
        rate = float(sampling_rate)
    except (TypeError, ValueError):
        raise RecordRejected(f"unknown sampling rate {sampling_rate!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise RecordRejected(f"invalid sampling rate {sampling_rate!r} Hz")
    return rate


def _record_array(signal: Any, names: list[str]) -> np.ndarray:
    """The record as a float64 ``(samples, leads)`` array after checking shape and values."""
    if len(set(names)) != len(names):
        raise RecordRejected(f"duplicate lead names {names}")
    data = np.asarray(signal, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(names):
        raise RecordRejected(f"signal shape {data.shape} disagrees with {len(names)} leads "
                             f"{names}; expected (samples, leads)")
    if data.size == 0:
        raise RecordRejected(f"empty record (shape {data.shape})")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise RecordRejected(f"{bad} NaN/Inf sample(s) of {data.size}")
    return data


def _filter(step, label: str, data: np.ndarray, rate: float, *args, **kwargs) -> np.ndarray:
    """Runs a filtering step, turning a failure caused by the record into a rejection."""
    try:
        return step(data, rate, *args, **kwargs)
    except ValueError as error:
        raise RecordRejected(f"{label} failed for {data.shape[0]} samples at {rate} Hz: "
                             f"{error}") from error
