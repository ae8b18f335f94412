"""Signal steps of the published ecg-preprocessing, as small pure functions.

Every signal is a float array of shape ``(samples, leads)`` in mV; filtering and resampling act
along axis 0 (time). Sampling rates and frequencies are in Hz. Filter designs depend only on
their arguments and are cached (``functools.lru_cache``), so they are computed once per sampling
rate rather than once per record; the cached arrays are read-only so no caller can alter them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as sps

from ecgexp.signal.leads import normalise_lead_name

DERIVE_MODES = ("always", "missing", "never")
LIMB_LEADS = ("DIII", "AVR", "AVL", "AVF")


def _read_only(*arrays: np.ndarray) -> None:
    """Marks cached filter coefficients read-only so callers cannot alter the cache."""
    for array in arrays:
        array.setflags(write=False)


def _check_rate(sampling_rate: float, key: str) -> float:
    """A rate in Hz as a finite positive float; ``ValueError`` naming ``key`` otherwise."""
    rate = float(sampling_rate)
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"{key}: must be a positive number of Hz, got {sampling_rate}")
    return rate


def check_baseline_design(pass_hz: float, stop_hz: float, ripple_db: float,
                          attenuation_db: float) -> None:
    """Validates the baseline high-pass specification (edges in Hz, ripple/attenuation in dB).

    Raises ``ValueError`` naming the ``preprocessing.baseline_*`` key at fault.
    """
    if not 0 < stop_hz < pass_hz:
        raise ValueError(f"preprocessing.baseline_stop_hz/baseline_pass_hz: need "
                         f"0 < stop ({stop_hz} Hz) < pass ({pass_hz} Hz)")
    if not ripple_db > 0:
        raise ValueError(f"preprocessing.baseline_ripple_db: must be > 0 dB, got {ripple_db}")
    if not attenuation_db > ripple_db:
        raise ValueError(f"preprocessing.baseline_attenuation_db: must exceed the ripple "
                         f"({ripple_db} dB), got {attenuation_db}")


@lru_cache(maxsize=64)
def baseline_filter(sampling_rate: float, pass_hz: float = 0.8, stop_hz: float = 0.2,
                    ripple_db: float = 0.5, attenuation_db: float = 40) -> np.ndarray:
    """Elliptic high-pass removing baseline wander, as second-order sections.

    ``sampling_rate`` in Hz; passband edge ``pass_hz`` and stopband edge ``stop_hz`` in Hz, at
    most ``ripple_db`` dB ripple in the passband and at least ``attenuation_db`` dB attenuation
    in the stopband. The order is the minimum from ``scipy.signal.ellipord`` (3 for 250–1000 Hz
    with the defaults). Returns a read-only ``(sections, 6)`` SOS array, cached per arguments.
    """
    fs = _check_rate(sampling_rate, "baseline_filter sampling_rate")
    check_baseline_design(pass_hz, stop_hz, ripple_db, attenuation_db)
    if pass_hz >= fs / 2:
        raise ValueError(f"preprocessing.baseline_pass_hz: {pass_hz} Hz is not below the "
                         f"Nyquist frequency ({fs / 2} Hz) of a {fs} Hz record")
    order, natural = sps.ellipord(pass_hz, stop_hz, ripple_db, attenuation_db, fs=fs)
    sos = sps.ellip(order, ripple_db, attenuation_db, natural, btype="highpass", output="sos",
                    fs=fs)
    _read_only(sos)
    return sos


def remove_baseline(signal: np.ndarray, sampling_rate: float, **design: float) -> np.ndarray:
    """Zero-phase baseline removal of a ``(samples, leads)`` mV signal sampled at Hz.

    Applies :func:`baseline_filter` (``design`` are its keyword arguments) forwards and backwards
    with ``sosfiltfilt(..., axis=0, padtype="constant")`` as published; returns a new array of
    the same shape in mV.
    """
    sos = baseline_filter(sampling_rate, **design).copy()  # scipy's sosfilt needs it writable
    return sps.sosfiltfilt(sos, signal, axis=0, padtype="constant")


@lru_cache(maxsize=64)
def notch_filter(sampling_rate: float, frequency: float,
                 quality: float = 30) -> tuple[np.ndarray, np.ndarray]:
    """``iirnotch`` at ``frequency`` Hz with quality factor ``quality`` for a rate in Hz.

    Returns read-only ``(b, a)`` coefficients, cached per arguments. The frequency must lie
    strictly between 0 and the Nyquist frequency (``preprocessing.powerline_hz``).
    """
    fs = _check_rate(sampling_rate, "notch_filter sampling_rate")
    if not 0 < frequency < fs / 2:
        raise ValueError(f"preprocessing.powerline_hz: {frequency} Hz is not between 0 and the "
                         f"Nyquist frequency ({fs / 2} Hz) of a {fs} Hz record")
    if not quality > 0:
        raise ValueError(f"preprocessing.notch_quality: must be > 0, got {quality}")
    b, a = sps.iirnotch(frequency, quality, fs=fs)
    _read_only(b, a)
    return b, a


def remove_powerline(signal: np.ndarray, sampling_rate: float, frequency: float,
                     quality: float = 30) -> np.ndarray:
    """Zero-phase notch (``filtfilt`` along axis 0) of a ``(samples, leads)`` mV signal.

    ``sampling_rate`` and ``frequency`` in Hz; returns a new array of the same shape in mV.
    """
    b, a = notch_filter(sampling_rate, frequency, quality)
    return sps.filtfilt(b, a, signal, axis=0)


def resample(signal: np.ndarray, from_rate: float, to_rate: float) -> np.ndarray:
    """Polyphase resampling of a ``(samples, leads)`` signal from ``from_rate`` to ``to_rate`` Hz.

    The factor ``to_rate / from_rate`` is approximated by a fraction ``up / down`` with
    ``down <= 1000`` so non-integer rates (e.g. 257.5 Hz) work; the output has
    ``ceil(samples * up / down)`` samples. Equal rates (or a factor of exactly 1 after the
    approximation) return the input unchanged.
    """
    source = _check_rate(from_rate, "resample from_rate")
    target = _check_rate(to_rate, "preprocessing.sampling_rate")
    factor = Fraction(target / source).limit_denominator(1000)
    if factor == 1:
        return signal
    return sps.resample_poly(signal, factor.numerator, factor.denominator, axis=0)


def derive_limb_leads(signal: np.ndarray, leads: Sequence[str],
                      mode: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Derives DIII, AVR, AVL and AVF from DI and DII of a ``(samples, leads)`` mV signal.

    DIII = DII − DI, AVR = −(DI + DII)/2, AVL = (DI − DIII)/2, AVF = (DII + DIII)/2, where
    DIII is the derived one whenever DIII is derived (else the recorded one). ``mode``
    (``preprocessing.derive_limb_leads``): ``"always"`` overwrites recorded limb leads
    (published behaviour), ``"missing"`` only adds absent ones, ``"never"`` derives nothing.
    Without both DI and DII nothing is derived. Returns ``(signal, names)``: a new array with
    derived leads overwritten in place or appended as columns, and the normalised lead names
    (the input is not modified; with nothing to derive, the input array itself is returned).
    """
    if mode not in DERIVE_MODES:
        raise ValueError(f"preprocessing.derive_limb_leads: unknown mode {mode!r}; "
                         f"choose one of {list(DERIVE_MODES)}")
    names = [normalise_lead_name(lead) for lead in leads]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate lead names in {list(leads)}")
    if mode == "never" or "DI" not in names or "DII" not in names:
        return signal, tuple(names)
    columns = {name: signal[:, i] for i, name in enumerate(names)}
    formulas = {
        "DIII": lambda c: c["DII"] - c["DI"],
        "AVR": lambda c: -(c["DI"] + c["DII"]) / 2,
        "AVL": lambda c: (c["DI"] - c["DIII"]) / 2,
        "AVF": lambda c: (c["DII"] + c["DIII"]) / 2,
    }
    for lead in LIMB_LEADS:
        if mode == "always" or lead not in columns:
            columns[lead] = formulas[lead](columns)
    out_names = names + [lead for lead in LIMB_LEADS if lead not in names]
    return np.stack([columns[name] for name in out_names], axis=1), tuple(out_names)


def fix_length(signal: np.ndarray, n_samples: int) -> np.ndarray:
    """Centres a ``(samples, leads)`` signal in ``n_samples`` samples (published convention).

    A shorter signal of length L is zero-padded with ``floor((n_samples - L) / 2)`` samples
    before it and the rest after; a longer one is cropped to the window starting at
    ``floor((L - n_samples) / 2)``. Equal lengths return the input unchanged.
    """
    if n_samples < 1:
        raise ValueError(f"preprocessing.n_samples: must be >= 1, got {n_samples}")
    length = signal.shape[0]
    if length < n_samples:
        before = (n_samples - length) // 2
        widths = [(before, n_samples - length - before)] + [(0, 0)] * (signal.ndim - 1)
        return np.pad(signal, widths)
    if length > n_samples:
        start = (length - n_samples) // 2
        return signal[start:start + n_samples]
    return signal
