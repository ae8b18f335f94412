"""``ecgexp.signal.pipeline``, beside the lead mapping, rejections and defaults that
tests/unit/signal/test_filters.py checks: the whole messages of the rejections and refused
options, the powerline notch and the resampling as steps of the pipeline (a 50 Hz hum removed
from a slow sine, a sine resampled onto the new sample times, both against the sine written
out in numpy, with DIII derived from them), and the settings' ``repr``."""

import math

import numpy as np
import pytest

from ecgexp.signal.pipeline import RecordRejected, SignalPipeline


def sine(frequency, rate, seconds, amplitude=1.0):
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def test_the_missing_leads_message_names_the_recorded_and_derived_leads():
    pipeline = SignalPipeline(sampling_rate=100, n_samples=20, baseline_removal=False)
    with pytest.raises(RecordRejected) as caught:
        pipeline(np.ones((20, 3)), 100, ["I", "ii", "V1"])
    assert caught.value.reason == str(caught.value) == (
        "missing leads ['V2', 'V3', 'V4', 'V5', 'V6']: the record has 3 leads "
        "['DI', 'DII', 'V1'] (and ['DIII', 'AVR', 'AVL', 'AVF'] derived from them); "
        "set preprocessing.missing_leads=zero to zero-fill")
    plain = SignalPipeline(leads=["DI", "V2"], sampling_rate=100, n_samples=20,
                           baseline_removal=False, derive_limb_leads="never")
    with pytest.raises(RecordRejected, match=r"^missing leads \['V2'\]: the record has 1 leads "
                                             r"\['DI'\]; set preprocessing"):
        plain(np.ones((20, 1)), 100, ["I"])


@pytest.mark.parametrize(("signal", "rate", "leads", "reason"), [
    (np.zeros((20, 2)), "fast", ["I", "II"], "unknown sampling rate 'fast'"),
    (np.zeros((20, 2)), -5, ["I", "II"], "invalid sampling rate -5 Hz"),
    (np.zeros((20, 3)), 100, ["I", "II"],
     "signal shape (20, 3) disagrees with 2 leads ['DI', 'DII']; expected (samples, leads)"),
    (np.zeros(20), 100, ["I"],
     "signal shape (20,) disagrees with 1 leads ['DI']; expected (samples, leads)"),
    (np.zeros((0, 2)), 100, ["I", "II"], "empty record (shape (0, 2))"),
    (np.full((4, 2), math.nan), 100, ["I", "II"], "8 NaN/Inf sample(s) of 8"),
    (np.zeros((20, 2)), 100, ["V1", "v1"], "duplicate lead names ['V1', 'V1']"),
])
def test_rejections_by_their_whole_reason(signal, rate, leads, reason):
    pipeline = SignalPipeline(sampling_rate=100, n_samples=20, baseline_removal=False,
                              missing_leads="zero")
    with pytest.raises(RecordRejected) as caught:
        pipeline(signal, rate, leads)
    assert caught.value.reason == reason


def test_a_filter_failure_is_a_rejection_naming_the_step():
    pipeline = SignalPipeline(leads=["DI"], sampling_rate=400, n_samples=10,
                              baseline_removal=False, powerline_hz=50, derive_limb_leads="never")
    with pytest.raises(RecordRejected, match=r"^powerline notch failed for 5 samples at 400\.0 "
                                             r"Hz: "):
        pipeline(np.ones((5, 1)), 400, ["I"])


@pytest.mark.parametrize(("options", "message"), [
    ({"leads": []}, "preprocessing.leads: need distinct lead names, got []"),
    ({"sampling_rate": math.inf}, "preprocessing.sampling_rate: must be > 0 Hz, got inf"),
    ({"n_samples": True}, "preprocessing.n_samples: must be an integer >= 1, got True"),
    ({"n_samples": 4.0}, "preprocessing.n_samples: must be an integer >= 1, got 4.0"),
    ({"powerline_hz": 0}, "preprocessing.powerline_hz: must be > 0 Hz or null, got 0"),
    ({"notch_quality": 0}, "preprocessing.notch_quality: must be > 0, got 0"),
    ({"scale": 0.0}, "preprocessing.scale: must be finite and non-zero, got 0.0"),
    ({"scale": math.nan}, "preprocessing.scale: must be finite and non-zero, got nan"),
    ({"derive_limb_leads": "sometimes"}, "preprocessing.derive_limb_leads: unknown mode "
     "'sometimes'; choose one of ['always', 'missing', 'never']"),
    ({"missing_leads": "drop"}, "preprocessing.missing_leads: unknown mode 'drop'; choose one "
     "of ['error', 'zero']"),
])
def test_refused_options_by_their_whole_message(options, message):
    with pytest.raises(ValueError) as caught:
        SignalPipeline(**options)
    assert str(caught.value) == message


def test_the_notch_removes_a_50_hz_hum_and_keeps_a_slow_wave():
    rate = 500
    wave, hum = sine(1.0, rate, 4), sine(50.0, rate, 4, amplitude=0.5)
    options = {"leads": ["DI"], "sampling_rate": rate, "n_samples": len(wave),
               "baseline_removal": False, "derive_limb_leads": "never"}
    record = (wave + hum)[:, None]
    untouched = SignalPipeline(**options)(record, rate, ["I"])[:, 0]
    np.testing.assert_allclose(untouched, wave + hum, atol=1e-6)
    notched = SignalPipeline(powerline_hz=50, **options)(record, rate, ["I"])[:, 0]
    middle = slice(rate, 3 * rate)  # away from the filter's edges
    assert np.max(np.abs(notched[middle] - wave[middle])) < 0.02  # hum amplitude 0.5
    assert np.max(np.abs(notched[middle] - (wave + hum)[middle])) > 0.4


def test_resampling_puts_the_scaled_wave_on_the_new_sample_times_and_derives_diii():
    wave = sine(2.0, 500, 2)  # 1000 samples at 500 Hz -> 400 at 200 Hz
    pipeline = SignalPipeline(leads=["DI", "DII", "DIII"], sampling_rate=200, n_samples=400,
                              baseline_removal=False, scale=3.0, derive_limb_leads="always")
    out = pipeline(np.stack([wave, 2 * wave], axis=1), 500, ["I", "II"])
    assert out.shape == (400, 3) and out.dtype == np.float32
    expected = 3.0 * sine(2.0, 200, 2)
    middle = slice(40, 360)
    np.testing.assert_allclose(out[middle, 0], expected[middle], atol=5e-3)
    np.testing.assert_allclose(out[middle, 1], 2 * expected[middle], atol=1e-2)
    np.testing.assert_allclose(out[:, 2], out[:, 1] - out[:, 0], atol=1e-5)  # DIII = DII - DI


def test_repr_lists_every_setting():
    pipeline = SignalPipeline(leads=["i", "v1"], powerline_hz=60)
    assert repr(pipeline) == (
        "SignalPipeline(leads=['DI', 'V1'], sampling_rate=400, n_samples=4096, "
        "baseline_removal=True, baseline_pass_hz=0.8, baseline_stop_hz=0.2, "
        "baseline_ripple_db=0.5, baseline_attenuation_db=40, powerline_hz=60, "
        "notch_quality=30, scale=1.0, derive_limb_leads='always', missing_leads='error')")
