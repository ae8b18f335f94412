"""Inputs that look wrong for a model, measured on the tracings it is fed (mV, after the
contract's steps), for the ``flags`` and ``problem`` columns of a predictions table and the log.

An exam that carries no ECG (:func:`no_ecg`: an all-zero tracing, or every lead flat) gets no
prediction and no label in any prediction path (``ecgexp-predict``, external test sets, the
Python API; the Challenge interface answers ``(False, 0.0)``): its ``problem`` says why.
Every other finding is a flag beside the prediction.

Per exam: an all-zero tracing, flat leads (peak-to-peak below :data:`FLAT_LEAD_MV`), values
that are all whole numbers (ADC counts stored without their gain) and an amplitude (the median
over leads of the peak-to-peak, ``amplitude_mv``) more than :data:`EXAM_AMPLITUDE_FACTOR`
times off the training data's. Per dataset: a median amplitude more than
:data:`DATASET_AMPLITUDE_FACTOR` times off the training data's (e.g. CODE-15%'s tracings, stored
at twice their mV, or uV instead of mV), which flags every exam.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# A lead whose peak-to-peak is below this (mV) carries no ECG (real leads show >= 0.3 mV QRS).
FLAT_LEAD_MV = 0.05
# Exams and datasets whose amplitude is this many times above or below the training data's.
EXAM_AMPLITUDE_FACTOR = 10.0
DATASET_AMPLITUDE_FACTOR = 1.5


def amplitude_mv(tracings: np.ndarray) -> np.ndarray:
    """``(exams,)`` median over leads of each lead's peak-to-peak, of ``(exams, leads,
    samples)`` tracings."""
    return np.median(np.ptp(tracings, axis=2), axis=1)


def exam_flags(tracings: np.ndarray, leads: list[str], reference_mv: float | None
               ) -> tuple[np.ndarray, list[str]]:
    """``(amplitude_mv, flags)`` of a batch ``(exams, leads, samples)``: one ``; ``-joined
    string of findings per exam (empty when none)."""
    amplitude = amplitude_mv(tracings)
    peak_to_peak = np.ptp(tracings, axis=2)
    flags = []
    for exam, tracing in enumerate(tracings):
        found = []
        if tracing.any():
            flat = [leads[i] for i in np.flatnonzero(peak_to_peak[exam] < FLAT_LEAD_MV)]
            if flat:
                found.append(f"flat leads {','.join(flat)} (peak-to-peak < {FLAT_LEAD_MV} mV)")
            if np.abs(tracing).max() >= 2 and np.all(tracing == np.round(tracing)):
                found.append("whole-number values (ADC counts without their gain?)")
            ratio = _ratio(amplitude[exam], reference_mv)
            factor = EXAM_AMPLITUDE_FACTOR
            if ratio is not None and not 1 / factor <= ratio <= factor:
                found.append(f"amplitude {amplitude[exam]:.3g} mV is {ratio:.3g}x the training "
                             f"data's {reference_mv:.3g} mV")
        flags.append("; ".join(found))
    return amplitude, flags


def no_ecg(tracings: np.ndarray) -> list[str]:
    """Per exam of ``(exams, leads, samples)`` tracings, why it carries no ECG (``no ECG:
    all-zero tracing``, ``no ECG: every lead flat``), else an empty string."""
    peak_to_peak = np.ptp(tracings, axis=2)
    return ["no ECG: all-zero tracing" if not tracing.any() else
            f"no ECG: every lead flat (peak-to-peak < {FLAT_LEAD_MV} mV)"
            if (peak_to_peak[exam] < FLAT_LEAD_MV).all() else ""
            for exam, tracing in enumerate(tracings)]


def screen(tracings: np.ndarray, contract: dict) -> tuple[np.ndarray, list[str], list[str]]:
    """``(amplitude_mv, flags, problems)`` of a batch of tracings fed to a model of
    ``contract`` (its leads and training amplitude): :func:`exam_flags`, the batch's
    :func:`dataset_flag` on every exam, and :func:`no_ecg` as the problem of an exam."""
    amplitude, flags = exam_flags(tracings, list(contract["leads"]),
                                  contract.get("amplitude_mv"))
    problems = no_ecg(tracings)
    whole = dataset_flag(pd.Series(amplitude), contract.get("amplitude_mv"))
    flags = ["" if problem else "; ".join(f for f in (whole, flag) if f)
             for flag, problem in zip(flags, problems)]
    return amplitude, flags, problems


def dataset_flag(amplitudes: pd.Series, reference_mv: float | None) -> str:
    """The finding on the whole dataset's amplitude (empty when it matches the training data)."""
    amplitudes = amplitudes[amplitudes > 0].dropna()
    if amplitudes.empty:
        return ""
    median = float(amplitudes.median())
    ratio = _ratio(median, reference_mv)
    if ratio is None or 1 / DATASET_AMPLITUDE_FACTOR <= ratio <= DATASET_AMPLITUDE_FACTOR:
        return ""
    return (f"dataset amplitude {median:.3g} mV is {ratio:.3g}x the training data's "
            f"{reference_mv:.3g} mV (another unit or amplitude scale?)")


def _ratio(value: float, reference: float | None) -> float | None:
    if reference is None or not reference > 0 or not value > 0:
        return None
    return float(value / reference)


def training_amplitude(dataset, n_exams: int = 128) -> float | None:
    """The training data's typical amplitude (mV): the median :func:`amplitude_mv` of up to
    ``n_exams`` exams spread over ``dataset`` (an :class:`~ecgexp.data.dataset.ExamDataset`,
    as fed to the network); ``None`` when none can be read."""
    if len(dataset) == 0:
        return None
    items = np.unique(np.linspace(0, len(dataset) - 1, min(n_exams, len(dataset))).astype(int))
    batch = dataset.__getitems__(items)
    if batch is None:
        return None
    amplitudes = amplitude_mv(batch["tracing"].numpy())
    amplitudes = amplitudes[amplitudes > 0]
    return float(np.median(amplitudes)) if len(amplitudes) else None
