"""``ecgexp.inference.screening``: the amplitude (median over leads of each lead's
peak-to-peak) against a loop over leads by hand; the per-exam flags, the no-ECG problems and
the dataset-wide flag on made-up tracings whose peak-to-peaks are chosen, by their text;
``training_amplitude`` on a stand-in dataset that records which exams it was asked for."""

import numpy as np
import pandas as pd
import pytest
import torch

from ecgexp.inference.screening import (
    amplitude_mv,
    dataset_flag,
    exam_flags,
    no_ecg,
    screen,
    training_amplitude,
)

LEADS = ["I", "II", "V1"]


def tracing(*peak_to_peaks: float, samples: int = 8) -> np.ndarray:
    """One exam ``(leads, samples)``: lead ``i`` a ramp from ``-p/2`` to ``p/2`` plus a
    non-integer offset (no whole-number values), so that its peak-to-peak is ``p``."""
    ramp = np.linspace(-0.5, 0.5, samples)
    return np.stack([p * ramp + 0.013 for p in peak_to_peaks])


def test_amplitude_is_the_median_over_leads_of_the_peak_to_peak():
    rng = np.random.default_rng(0)
    tracings = rng.normal(size=(4, 5, 30))
    expected = []
    for exam in tracings:
        spans = sorted(max(lead) - min(lead) for lead in exam)
        expected.append(spans[2])  # the middle one of five leads
    assert amplitude_mv(tracings).shape == (4,)
    np.testing.assert_allclose(amplitude_mv(tracings), expected)


def test_amplitude_of_an_even_number_of_leads_averages_the_middle_two():
    tracings = tracing(1.0, 2.0, 4.0, 10.0)[None]
    np.testing.assert_allclose(amplitude_mv(tracings), [3.0])


def test_a_normal_exam_has_no_flag():
    amplitude, flags = exam_flags(tracing(1.0, 1.2, 0.8)[None], LEADS, reference_mv=1.1)
    np.testing.assert_allclose(amplitude, [1.0])
    assert flags == [""]


def test_flat_leads_are_named_below_the_threshold_only():
    tracings = tracing(1.0, 0.04, 0.05)[None]  # 0.05 mV is not below 0.05 mV
    _, flags = exam_flags(tracings, LEADS, reference_mv=None)
    assert flags == ["flat leads II (peak-to-peak < 0.05 mV)"]
    _, flags = exam_flags(tracing(0.01, 0.02, 1.0)[None], LEADS, reference_mv=None)
    assert flags == ["flat leads I,II (peak-to-peak < 0.05 mV)"]


def test_whole_number_values_are_flagged_from_an_absolute_value_of_two():
    counts = np.array([[[0, 200, -150, 40], [1, 300, -100, 0], [5, -250, 120, 9]]], float)
    _, flags = exam_flags(counts, LEADS, reference_mv=None)
    assert flags == ["whole-number values (ADC counts without their gain?)"]
    small = np.array([[[0, 1, -1, 0], [1, 0, -1, 1], [0, 1, 1, -1]]], float)  # max |x| 1
    assert exam_flags(small, LEADS, reference_mv=None)[1] == [""]


def test_amplitude_flag_beyond_ten_times_either_way_with_its_ratio():
    # reference 2.5 mV: amplitudes 25, 2.4 and 0.22 mV are ratios 10, 0.96 and 0.088
    tracings = np.stack([tracing(25.0, 25.0, 25.0), tracing(2.4, 2.4, 2.4),
                         tracing(0.22, 0.22, 0.22)])
    amplitude, flags = exam_flags(tracings, LEADS, reference_mv=2.5)
    np.testing.assert_allclose(amplitude, [25.0, 2.4, 0.22])
    assert flags[0] == ""  # exactly 10x is still within
    assert flags[1] == ""
    assert flags[2] == "amplitude 0.22 mV is 0.088x the training data's 2.5 mV"
    _, flags = exam_flags(tracing(26.0, 26.0, 26.0)[None], LEADS, reference_mv=2.5)
    assert flags == ["amplitude 26 mV is 10.4x the training data's 2.5 mV"]


def test_no_amplitude_flag_without_a_usable_reference():
    tracings = tracing(500.0, 500.0, 500.0)[None]
    for reference in (None, 0.0, -1.0):
        assert exam_flags(tracings, LEADS, reference_mv=reference)[1] == [""]


def test_findings_are_joined_in_order():
    counts = np.zeros((1, 3, 6))
    counts[0, 0, :] = [0, 400, -300, 0, 0, 0]
    counts[0, 2, :] = [0, 200, -200, 0, 0, 0]
    _, flags = exam_flags(counts, LEADS, reference_mv=1.0)
    assert flags == ["flat leads II (peak-to-peak < 0.05 mV); whole-number values (ADC counts "
                     "without their gain?); amplitude 400 mV is 400x the training data's 1 mV"]


def test_an_all_zero_exam_has_no_flag_but_the_problem_no_ecg():
    tracings = np.stack([np.zeros((3, 8)), tracing(0.01, 0.0, 0.049), tracing(1.0, 0.0, 1.0)])
    assert exam_flags(tracings, LEADS, reference_mv=1.0)[1][0] == ""
    assert no_ecg(tracings) == ["no ECG: all-zero tracing",
                                "no ECG: every lead flat (peak-to-peak < 0.05 mV)", ""]


def test_screen_puts_the_dataset_flag_first_and_drops_flags_of_exams_without_ecg():
    # training amplitude 1 mV, exams at 2 mV: dataset ratio 2 > 1.5, each exam within 10x
    tracings = np.stack([tracing(2.0, 2.0, 2.0), tracing(2.0, 0.01, 2.0), np.zeros((3, 8))])
    contract = {"leads": LEADS, "amplitude_mv": 1.0}
    amplitude, flags, problems = screen(tracings, contract)
    np.testing.assert_allclose(amplitude, [2.0, 2.0, 0.0])
    whole = ("dataset amplitude 2 mV is 2x the training data's 1 mV "
             "(another unit or amplitude scale?)")
    assert flags == [whole, f"{whole}; flat leads II (peak-to-peak < 0.05 mV)", ""]
    assert problems == ["", "", "no ECG: all-zero tracing"]


def test_screen_without_a_training_amplitude_flags_exams_only():
    tracings = np.stack([tracing(2.0, 2.0, 0.0)])
    _, flags, problems = screen(tracings, {"leads": ("I", "II", "V1")})
    assert flags == ["flat leads V1 (peak-to-peak < 0.05 mV)"] and problems == [""]


def test_dataset_flag_on_the_median_of_the_positive_amplitudes_beyond_one_and_a_half():
    # positive, non-missing amplitudes 1, 3, 4 -> median 3; zero and NaN are left out
    amplitudes = pd.Series([0.0, 1.0, np.nan, 3.0, 4.0])
    assert dataset_flag(amplitudes, reference_mv=2.0) == ""  # 1.5x exactly
    assert dataset_flag(amplitudes, reference_mv=1.9) == (
        "dataset amplitude 3 mV is 1.58x the training data's 1.9 mV "
        "(another unit or amplitude scale?)")
    assert dataset_flag(amplitudes, reference_mv=4.5) == ""  # 1/1.5x exactly
    assert dataset_flag(amplitudes, reference_mv=4.6).startswith(
        "dataset amplitude 3 mV is 0.652x the training data's 4.6 mV")
    assert dataset_flag(amplitudes, reference_mv=None) == ""
    assert dataset_flag(pd.Series([0.0, np.nan]), reference_mv=1.0) == ""


class StandIn:
    """An ExamDataset's reading interface: exam ``i`` has every lead of peak-to-peak
    ``spans[i]``; the items asked for are recorded."""

    def __init__(self, spans, readable=True):
        self.spans, self.readable, self.asked = spans, readable, []

    def __len__(self):
        return len(self.spans)

    def __getitems__(self, items):
        self.asked.append(list(items))
        if not self.readable:
            return None
        batch = np.stack([tracing(s, s, s) for s in np.asarray(self.spans)[items]])
        return {"tracing": torch.from_numpy(batch)}


def test_training_amplitude_is_the_median_over_exams_spread_over_the_dataset():
    spans = np.arange(1, 11, dtype=float)  # exam i: amplitude i + 1
    dataset = StandIn(spans)
    # 4 exams spread over 10: linspace(0, 9, 4) = 0, 3, 6, 9 -> amplitudes 1, 4, 7, 10
    assert training_amplitude(dataset, n_exams=4) == pytest.approx(5.5)
    assert dataset.asked == [[0, 3, 6, 9]]
    dataset = StandIn(spans)
    assert training_amplitude(dataset) == pytest.approx(5.5)
    assert dataset.asked == [list(range(10))]


def test_training_amplitude_leaves_out_flat_exams_and_is_none_without_any():
    # positive amplitudes 2, 3, 10 -> median 3 (with the zeros it would be 2, the mean 5)
    assert training_amplitude(StandIn([0.0, 2.0, 0.0, 3.0, 10.0])) == pytest.approx(3.0)
    assert training_amplitude(StandIn([0.0, 0.0])) is None
    assert training_amplitude(StandIn([])) is None
    assert training_amplitude(StandIn([1.0, 2.0], readable=False)) is None
