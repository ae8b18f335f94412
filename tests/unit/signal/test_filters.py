"""Signal steps (ecgexp.signal.filters) and the SignalPipeline against independent references.

Signals are ``(samples, leads)`` arrays in mV; rates and frequencies in Hz. Expected values come
from scipy/numpy directly (filter responses, analytic sines, written-out arrays), never from the
function under test.
"""

import math

import numpy as np
import pytest
from scipy import signal as sps

from ecgexp.signal import filters
from ecgexp.signal.pipeline import RecordRejected, SignalPipeline

TWELVE = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _db(response: np.ndarray) -> np.ndarray:
    return 20 * np.log10(np.maximum(np.abs(response), 1e-300))


def _sine(frequency: float, rate: float, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and a unit sine (mV) of ``frequency`` Hz sampled at ``rate`` Hz."""
    t = np.arange(int(round(seconds * rate))) / rate
    return t, np.sin(2 * np.pi * frequency * t)


# -- baseline removal ---------------------------------------------------------------------------

@pytest.mark.parametrize("fs", [400, 500, 1000])
def test_baseline_filter_meets_the_published_specification(fs):
    sos = filters.baseline_filter(fs)
    _, stop = sps.sosfreqz(sos, worN=[0.01, 0.05, 0.1, 0.15, 0.2], fs=fs)
    _, passband = sps.sosfreqz(sos, worN=[0.8, 1.0, 2.0, 5.0, 40.0, 150.0], fs=fs)
    assert np.all(_db(stop) <= -40 + 1e-3)
    assert np.all(_db(passband) >= -0.5 - 1e-3) and np.all(_db(passband) <= 1e-6)
    order = sps.ellipord(0.8, 0.2, 0.5, 40, fs=fs)[0]
    assert order == 3
    _, poles, _ = sps.sos2zpk(sos)
    assert np.count_nonzero(np.abs(poles) > 1e-12) == order


def test_baseline_removal_is_zero_phase_and_removes_drift():
    fs = 500
    t, sine = _sine(5.0, fs, 30)
    middle = slice(len(t) // 3, 2 * len(t) // 3)
    _, gain = sps.sosfreqz(sps.ellip(3, 0.5, 40, 0.8, btype="highpass", output="sos", fs=fs),
                           worN=[5.0], fs=fs)
    filtered = filters.remove_baseline(sine[:, None], fs)[:, 0]
    # forward-backward: no phase shift, amplitude |H(5 Hz)|^2 (within the 2 x 0.5 dB ripple)
    assert np.max(np.abs(filtered - np.abs(gain[0]) ** 2 * sine)[middle]) < 1e-5
    assert np.max(np.abs(filtered - sine)[middle]) < 1 - 10 ** (-1 / 20)
    drift = np.sin(2 * np.pi * 0.1 * t) + 0.5
    assert np.max(np.abs(filters.remove_baseline(drift[:, None], fs)[middle])) < 1e-3


def test_baseline_filter_is_cached_and_read_only():
    first = filters.baseline_filter(437)
    hits = filters.baseline_filter.cache_info().hits
    second = filters.baseline_filter(437)
    assert second is first
    assert filters.baseline_filter.cache_info().hits == hits + 1
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first[0, 0] = 0.0


# -- powerline notch ----------------------------------------------------------------------------

def test_notch_removes_60_hz_and_keeps_the_passband():
    fs = 500
    b, a = filters.notch_filter(fs, 60)
    _, response = sps.freqz(b, a, worN=[60.0, 10.0], fs=fs)
    assert _db(response)[0] < -40
    assert abs(_db(response)[1]) < 0.01
    t, hum = _sine(60.0, fs, 10)
    _, wave = _sine(10.0, fs, 10)
    middle = slice(len(t) // 4, 3 * len(t) // 4)
    cleaned = filters.remove_powerline(np.stack([hum, wave], axis=1), fs, 60)
    residual_db = 20 * np.log10(np.max(np.abs(cleaned[middle, 0])) / 1.0)
    assert residual_db < -30
    assert np.max(np.abs(cleaned[middle, 1] - wave[middle])) < 1e-3


def test_notch_above_nyquist_names_the_config_key():
    with pytest.raises(ValueError, match="preprocessing.powerline_hz"):
        filters.notch_filter(100, 60)


# -- resampling ---------------------------------------------------------------------------------

def test_resample_500_to_400_matches_the_analytic_sine():
    _, sine = _sine(7.0, 500, 4)
    out = filters.resample(sine[:, None], 500, 400)[:, 0]
    assert out.shape == (1600,)
    expected = np.sin(2 * np.pi * 7.0 * np.arange(1600) / 400)
    assert np.max(np.abs(out - expected)[100:-100]) < 1e-2


def test_resample_non_integer_rate():
    n = 1030
    _, sine = _sine(3.0, 257.5, n / 257.5)
    out = filters.resample(np.stack([sine, -sine], axis=1), 257.5, 400)
    # 400 / 257.5 = 160 / 103 exactly; resample_poly gives ceil(n * up / down) samples
    assert out.shape == (-(-n * 160 // 103), 2) == (1600, 2)
    expected = np.sin(2 * np.pi * 3.0 * np.arange(out.shape[0]) / 400)
    assert np.max(np.abs(out[:, 0] - expected)[100:-100]) < 1e-2
    assert np.array_equal(out[:, 1], -out[:, 0])


def test_resample_equal_rates_is_a_no_op():
    signal = np.arange(12.0).reshape(6, 2)
    assert filters.resample(signal, 400, 400.0) is signal


# -- derived limb leads -------------------------------------------------------------------------

def _limb_record():
    rng = np.random.default_rng(0)
    return rng.normal(size=(50, 4)), ["I", "ii", "aVR", "V1"]


def test_derived_leads_always_overwrite():
    signal, leads = _limb_record()
    out, names = filters.derive_limb_leads(signal, leads, "always")
    assert names == ("DI", "DII", "AVR", "V1", "DIII", "AVL", "AVF")
    di, dii = signal[:, 0], signal[:, 1]
    col = {name: out[:, i] for i, name in enumerate(names)}
    assert np.array_equal(col["DIII"], dii - di)
    assert np.array_equal(col["AVR"], -(di + dii) / 2)
    assert np.array_equal(col["AVL"], (di - (dii - di)) / 2)
    assert np.array_equal(col["AVF"], (dii + (dii - di)) / 2)
    assert np.array_equal(col["V1"], signal[:, 3])
    assert np.array_equal(signal, _limb_record()[0])  # input untouched


def test_derived_leads_missing_keeps_recorded_and_never_derives_nothing():
    signal, leads = _limb_record()
    out, names = filters.derive_limb_leads(signal, leads, "missing")
    assert np.array_equal(out[:, names.index("AVR")], signal[:, 2])
    assert np.array_equal(out[:, names.index("DIII")], signal[:, 1] - signal[:, 0])
    out, names = filters.derive_limb_leads(signal, leads, "never")
    assert names == ("DI", "DII", "AVR", "V1") and np.array_equal(out, signal)
    out, names = filters.derive_limb_leads(signal[:, 1:], leads[1:], "always")
    assert names == ("DII", "AVR", "V1")  # no DI: nothing can be derived
    with pytest.raises(ValueError, match="preprocessing.derive_limb_leads"):
        filters.derive_limb_leads(signal, leads, "sometimes")


# -- length -------------------------------------------------------------------------------------

def test_fix_length_pads_and_crops_around_the_centre():
    short = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    padded = filters.fix_length(short, 8)
    assert padded[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 0, 0]
    long = np.arange(9.0)[:, None]
    assert filters.fix_length(long, 4)[:, 0].tolist() == [2, 3, 4, 5]
    assert filters.fix_length(long, 9) is long


# -- pipeline -----------------------------------------------------------------------------------

def _plain(**options) -> SignalPipeline:
    """A pipeline that only maps leads (no filtering, same rate, same length) unless told."""
    settings = {"sampling_rate": 100, "n_samples": 20, "baseline_removal": False,
                "derive_limb_leads": "never"}
    return SignalPipeline(**{**settings, **options})


def test_pipeline_maps_leads_by_name():
    record = np.arange(20.0)[:, None] + 100.0 * np.arange(12)[None, :]
    order = [5, 11, 0, 3, 8, 1, 10, 2, 7, 4, 9, 6]
    shuffled = record[:, order]
    names = [TWELVE[i].lower() for i in order]
    out = _plain()(shuffled, 100, names)
    assert out.dtype == np.float32 and out.shape == (20, 12)
    assert np.array_equal(out, record.astype(np.float32))
    eight = _plain(leads=["DI", "DII", "V1", "V2", "V3", "V4", "V5", "V6"])
    assert np.array_equal(eight(shuffled, 100, names), record[:, [0, 1, 6, 7, 8, 9, 10, 11]])


def test_pipeline_missing_leads_reject_or_zero_fill():
    record = np.ones((20, 3))
    with pytest.raises(RecordRejected, match="missing leads .*preprocessing.missing_leads=zero"):
        _plain()(record, 100, ["I", "II", "V1"])
    out = _plain(missing_leads="zero")(record, 100, ["I", "II", "V1"])
    assert np.array_equal(out[:, [0, 1, 6]], np.ones((20, 3)))
    assert not out[:, [2, 3, 4, 5, 7, 8, 9, 10, 11]].any()
    derived = _plain(derive_limb_leads="always", missing_leads="zero")(record, 100,
                                                                       ["I", "II", "V1"])
    assert np.array_equal(derived[:, 3], -np.ones(20))  # AVR = -(DI + DII) / 2


@pytest.mark.parametrize(("signal", "rate", "leads", "reason"), [
    (np.array([[1.0, math.nan], [math.inf, 0.0]]), 100, ["I", "II"], "2 NaN/Inf"),
    (np.zeros((0, 2)), 100, ["I", "II"], "empty"),
    (np.zeros((20, 2)), 0, ["I", "II"], "sampling rate"),
    (np.zeros((20, 2)), None, ["I", "II"], "sampling rate"),
    (np.zeros((20, 2)), math.nan, ["I", "II"], "sampling rate"),
    (np.zeros((2, 20)), 100, ["I", "II"], "shape"),
    (np.zeros((20, 2)), 100, ["I", "i"], "duplicate"),
])
def test_pipeline_rejects_bad_records(signal, rate, leads, reason):
    with pytest.raises(RecordRejected, match=reason) as caught:
        _plain(missing_leads="zero")(signal, rate, leads)
    assert reason in caught.value.reason


def test_pipeline_rejects_records_too_short_to_filter():
    with pytest.raises(RecordRejected, match="baseline removal"):
        SignalPipeline()(np.zeros((5, 12)), 400, TWELVE)


def test_pipeline_published_defaults_shape_and_scale():
    rng = np.random.default_rng(1)
    record = rng.normal(size=(10_000, 12))
    out = SignalPipeline()(record, 1000, TWELVE)
    assert out.shape == (4096, 12) and out.dtype == np.float32
    # 10 s at 400 Hz = 4000 samples, centred: 48 zeros before, 48 after
    assert not out[:48].any() and not out[-48:].any() and out[48:-48].all()
    doubled = SignalPipeline(scale=2.0)(record, 1000, TWELVE)
    np.testing.assert_allclose(doubled, 2 * out, rtol=1e-6, atol=1e-6)


def test_pipeline_baseline_removal_on_and_off():
    fs = 400
    t, wave = _sine(10.0, fs, 30)
    drift = 0.8 + np.sin(2 * np.pi * 0.1 * t)
    record = np.stack([wave + drift, 2 * wave + drift], axis=1)
    options = {"leads": ["DI", "DII"], "n_samples": len(t)}
    kept = SignalPipeline(baseline_removal=False, **options)(record, fs, ["I", "II"])
    np.testing.assert_allclose(kept, record, atol=1e-6)
    removed = SignalPipeline(**options)(record, fs, ["I", "II"])
    middle = slice(len(t) // 3, 2 * len(t) // 3)
    np.testing.assert_allclose(removed[middle], record[middle] - drift[middle, None], atol=0.03)
    assert abs(removed[middle].mean()) < 1e-3


@pytest.mark.parametrize(("options", "key"), [
    ({"derive_limb_leads": "sometimes"}, "preprocessing.derive_limb_leads"),
    ({"missing_leads": "drop"}, "preprocessing.missing_leads"),
    ({"n_samples": 0}, "preprocessing.n_samples"),
    ({"sampling_rate": 0}, "preprocessing.sampling_rate"),
    ({"leads": ["I", "DI"]}, "preprocessing.leads"),
    ({"powerline_hz": -50}, "preprocessing.powerline_hz"),
])
def test_pipeline_rejects_invalid_options(options, key):
    with pytest.raises(ValueError, match=key):
        SignalPipeline(**options)


def test_pipeline_settings_for_provenance():
    settings = SignalPipeline(leads=["i", "ii"], powerline_hz=50).as_dict()
    assert settings["leads"] == ["DI", "DII"]
    assert settings["powerline_hz"] == 50 and settings["sampling_rate"] == 400
    assert settings["derive_limb_leads"] == "always" and settings["n_samples"] == 4096
