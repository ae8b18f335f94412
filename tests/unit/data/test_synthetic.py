"""Synthetic CODE-15% generator: layout, reproducibility, and labels measured back from the
signals with simple, independent ECG measurements (R-peak detection, averaged beats)."""

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.signal import butter, filtfilt, find_peaks
from scipy.stats import spearmanr

from ecgexp.data import synthetic
from ecgexp.data.synthetic import (
    ABNORMALITIES,
    LEADS,
    N_SAMPLES,
    SAMPLING_RATE,
    synthesize_exams,
    write_code15,
)

FS = SAMPLING_RATE
CSV_COLUMNS = ["exam_id", "age", "is_male", "nn_predicted_age", "1dAVb", "RBBB", "LBBB", "SB",
               "AF", "ST", "patient_id", "normal_ecg", "death", "timey", "trace_file", "chagas",
               "potassium", "exam_date"]


@pytest.fixture(scope="module")
def cohort():
    """1500 exams: enough for about 100 exams per abnormality."""
    return synthesize_exams(1500, seed=11)


# ---------------------------------------------------------------------------------------------
# Independent measurements (lead order DI, DII, DIII, AVR, AVL, AVF, V1-V6; mV; 400 Hz).


def unpadded(tracing):
    """The recorded part of a (4096, 12) tracing: the rows between the zero padding."""
    recorded = np.flatnonzero(np.any(tracing != 0, axis=1))
    return tracing[recorded[0]:recorded[-1] + 1]


def without_baseline(record):
    b, a = butter(2, 0.7, btype="highpass", fs=FS)
    return filtfilt(b, a, record, axis=0)


def r_peaks(record):
    """Sample indices of the QRS complexes: peaks of the 5-30 Hz energy summed over leads."""
    b, a = butter(2, [5, 30], btype="bandpass", fs=FS)
    energy = np.sum(filtfilt(b, a, record, axis=0) ** 2, axis=1)
    energy = np.convolve(energy, np.ones(20) / 20, mode="same")
    peaks, _ = find_peaks(energy, height=0.25 * np.percentile(energy, 99.5),
                          distance=int(0.25 * FS))
    return peaks


def rr_intervals(tracing):
    return np.diff(r_peaks(unpadded(tracing))) / FS


def heart_rate(tracing):
    return 60.0 / np.median(rr_intervals(tracing))


def rr_variation(tracing):
    rr = rr_intervals(tracing)
    return rr.std() / rr.mean()


def average_beat(tracing, before, after):
    """Mean beat (samples, 12) from ``before`` s before to ``after`` s after the R peaks."""
    record = without_baseline(unpadded(tracing))
    peaks = r_peaks(record)
    lo, hi = int(before * FS), int(after * FS)
    peaks = peaks[(peaks >= lo) & (peaks + hi < len(record))]
    return np.mean([record[p - lo:p + hi] for p in peaks], axis=0)


def qrs_width(tracing):
    """QRS duration (s) of the mean beat: the span around the largest spatial velocity (within
    80 ms of the detected R peak) over which the velocity, smoothed over 20 ms, stays above
    15 % of that maximum."""
    beat = average_beat(tracing, 0.2, 0.2)
    velocity = np.sqrt(np.sum(np.diff(beat, axis=0) ** 2, axis=1))
    velocity = np.convolve(velocity, np.ones(8) / 8, mode="same")
    centre = int(0.12 * FS) + np.argmax(velocity[int(0.12 * FS):int(0.28 * FS)])
    above = velocity > 0.15 * velocity[centre]
    start = centre - np.argmin(above[centre::-1])
    stop = centre + np.argmin(above[centre:])
    return (stop - start) / FS


def t_wave_amplitude(tracing):
    """Largest spatial magnitude (mV) of the mean beat 120-350 ms after the R peak."""
    beat = average_beat(tracing, 0.1, 0.35)
    return np.sqrt(np.sum(beat[int(0.22 * FS):] ** 2, axis=1)).max()


def p_to_r(tracing):
    """Time (s) from the P peak (largest DII deflection 70-380 ms before R) to the R peak."""
    beat = average_beat(tracing, 0.38, 0.02)[:, LEADS.index("DII")]
    window = beat[:int(0.31 * FS)]
    return 0.38 - np.argmax(window) / FS


def qrs_axis(tracing):
    """Frontal QRS axis (degrees) from the net QRS areas in DI and AVF."""
    beat = average_beat(tracing, 0.06, 0.06)
    di, avf = beat[:, LEADS.index("DI")].sum(), beat[:, LEADS.index("AVF")].sum()
    return np.degrees(np.arctan2(avf, di))


# ---------------------------------------------------------------------------------------------
# Shapes, padding, values.


def test_shapes_dtypes_and_centre_padding(cohort):
    tracings, labels = cohort
    assert tracings.shape == (1500, N_SAMPLES, 12) and tracings.dtype == np.float32
    assert len(labels) == 1500 and np.isfinite(tracings).all()
    recorded = np.any(tracings != 0, axis=2)
    lengths = recorded.sum(axis=1)
    assert set(lengths) == {2800, 4000}
    first = np.argmax(recorded, axis=1)
    assert np.array_equal(first, (N_SAMPLES - lengths) // 2)  # 648 or 48 zeros before ...
    assert np.array_equal(N_SAMPLES - first - lengths, first)  # ... and as many after
    assert (tracings[lengths == 2800][:, :648] == 0).all()
    assert (tracings[lengths == 2800][:, -648:] == 0).all()


def test_amplitudes_are_plausible_in_mv(cohort):
    tracings, _ = cohort
    peak = np.abs(tracings).max(axis=(1, 2))
    assert 0.5 < np.median(peak) < 3.0
    assert peak.min() > 0.2 and peak.max() < 10.0


def test_derived_limb_leads_follow_einthoven_and_goldberger(cohort):
    x = cohort[0][:100].astype(np.float64)
    di, dii, diii, avr, avl, avf = (x[..., LEADS.index(name)] for name in LEADS[:6])
    np.testing.assert_allclose(diii, dii - di, atol=1e-5)
    np.testing.assert_allclose(avr, -(di + dii) / 2, atol=1e-5)
    np.testing.assert_allclose(avl, (di - diii) / 2, atol=1e-5)
    np.testing.assert_allclose(avf, (dii + diii) / 2, atol=1e-5)


def test_single_exam_and_invalid_count():
    tracings, labels = synthesize_exams(1, seed=0)
    assert tracings.shape == (1, N_SAMPLES, 12) and len(labels) == 1
    with pytest.raises(ValueError, match="n_exams"):
        synthesize_exams(0, seed=0)


def test_same_seed_same_output_and_different_seed_different_output():
    tracings, labels = synthesize_exams(30, seed=5)
    again_tracings, again_labels = synthesize_exams(30, seed=5)
    other_tracings, other_labels = synthesize_exams(30, seed=6)
    assert np.array_equal(tracings, again_tracings)
    pd.testing.assert_frame_equal(labels, again_labels)
    assert not np.array_equal(tracings, other_tracings)
    assert not labels["exam_id"].equals(other_labels["exam_id"])


# ---------------------------------------------------------------------------------------------
# Label table.


def test_label_table_columns_and_consistency(cohort):
    _, labels = cohort
    assert list(labels.columns) == [c for c in CSV_COLUMNS if c != "trace_file"]
    assert labels["exam_id"].is_unique and (labels["exam_id"] > 0).all()
    flags = labels[list(ABNORMALITIES)]
    assert labels["normal_ecg"].equals(~flags.any(axis=1))
    for name in ABNORMALITIES:
        assert 0.03 < flags[name].mean() < 0.10, name
    assert not (labels["SB"] & labels["ST"]).any()
    assert not (labels["RBBB"] & labels["LBBB"]).any()
    assert not (labels["AF"] & (labels["SB"] | labels["ST"] | labels["1dAVb"])).any()
    assert labels["age"].between(16, 90).all()
    assert np.corrcoef(labels["age"], labels["nn_predicted_age"])[0, 1] > 0.8
    potassium = labels["potassium"]
    assert abs(potassium.median() - 4.2) < 0.1
    assert 0.02 < (potassium < 3.5).mean() < 0.2 and 0.005 < (potassium > 5.5).mean() < 0.1


def test_patients_visits_death_and_af_onset(cohort):
    _, labels = cohort
    visits = labels.sort_values(["patient_id", "exam_date"])
    per_patient = visits.groupby("patient_id")
    assert 1.3 < per_patient.size().mean() < 1.8 and per_patient.size().max() <= 4
    assert (per_patient[["is_male", "chagas"]].nunique() == 1).all().all()
    assert per_patient["exam_date"].apply(lambda d: d.is_unique).all()
    assert per_patient["age"].apply(lambda a: a.is_monotonic_increasing).all()
    assert visits["exam_date"].between("2010-01-01", "2016-12-31").all()
    first = ~visits["patient_id"].duplicated()
    assert visits.loc[first, "death"].notna().all() and visits.loc[~first, "death"].isna().all()
    assert visits.loc[~first, "timey"].isna().all()
    assert visits.loc[first, "timey"].between(0.001, 8).all()
    died = visits.loc[first, "death"].astype(bool)
    age = visits.loc[first, "age"]
    assert died[age >= 70].mean() > 2 * died[age < 50].mean()
    seen_again = per_patient.filter(lambda p: len(p) > 1).groupby("patient_id")["AF"]
    af_later = seen_again.apply(lambda af: (not af.iloc[0]) and af.iloc[1:].any())
    sinus_first = seen_again.apply(lambda af: not af.iloc[0])
    assert 0.01 < af_later.sum() / sinus_first.sum() < 0.15


def test_death_follows_the_documented_weibull_hazard():
    """A Cox model fitted (lifelines) to the first exams recovers the documented log hazard
    ratios of age (0.03 a year), AF (1.0) and a bundle-branch block (2.0), and the Weibull
    baseline shows in the event times: the cumulative hazard of reference patients (age near
    55, no AF or block) is 0.04 t^1.3 (Nelson–Aalen at 2 and 6 years)."""
    from lifelines import CoxPHFitter, NelsonAalenFitter

    labels = synthetic.synthesize_labels(12000, seed=5)
    first = labels.dropna(subset=["timey"])
    data = first[["timey", "age", "AF", "LBBB", "RBBB"]].astype(float).assign(
        death=first["death"].astype(float))
    assert 0.15 < data.death.mean() < 0.4
    fit = CoxPHFitter().fit(data, "timey", "death")
    assert fit.params_["age"] == pytest.approx(0.03, abs=0.006)
    assert fit.params_["AF"] == pytest.approx(1.0, abs=0.25)
    assert fit.params_["LBBB"] == pytest.approx(2.0, abs=0.25)
    assert fit.params_["RBBB"] == pytest.approx(2.0, abs=0.25)
    # Scaled to the reference patient (age 55, no AF, no LBBB) by exp(-eta), the cumulative
    # hazards of the cohort follow 0.02 t^1.3; checked where follow-up is complete enough.
    eta = 0.03 * (data.age - 55) + 1.0 * data.AF + 2.0 * (data.LBBB + data.RBBB)
    reference = data[(eta.abs() < 0.2)]
    hazard = NelsonAalenFitter().fit(reference.timey, reference.death).cumulative_hazard_at_times(
        [2.0, 6.0]).to_numpy()
    assert hazard == pytest.approx(0.04 * np.array([2.0, 6.0]) ** 1.3, rel=0.25)


def test_chagas_raises_rbbb_and_left_axis_deviation(cohort):
    tracings, labels = cohort
    chagas = labels["chagas"] == 1
    assert 0.05 < chagas.mean() < 0.16
    assert labels.loc[chagas, "RBBB"].mean() > 2 * labels.loc[~chagas, "RBBB"].mean()
    rows = np.flatnonzero(~labels["LBBB"] & ~labels["RBBB"])
    left_axis = np.array([qrs_axis(tracings[i]) for i in rows]) < -40
    with_chagas = chagas.to_numpy()[rows]
    assert left_axis[with_chagas].mean() > 0.15
    assert left_axis[with_chagas].mean() > 4 * left_axis[~with_chagas].mean()


# ---------------------------------------------------------------------------------------------
# Labels measured back from the signals.


def _rows(mask, limit=150):
    return np.flatnonzero(mask)[:limit]


def test_heart_rate_of_sinus_bradycardia_and_tachycardia(cohort):
    tracings, labels = cohort
    sb = np.array([heart_rate(tracings[i]) for i in _rows(labels["SB"])])
    st = np.array([heart_rate(tracings[i]) for i in _rows(labels["ST"])])
    normal = np.array([heart_rate(tracings[i]) for i in _rows(labels["normal_ecg"])])
    assert (sb < 50).mean() >= 0.9 and (st > 100).mean() >= 0.9
    assert ((normal > 50) & (normal < 100)).mean() >= 0.9


def test_af_rr_intervals_are_irregular(cohort):
    tracings, labels = cohort
    af = np.array([rr_variation(tracings[i]) for i in _rows(labels["AF"])])
    sinus = np.array([rr_variation(tracings[i]) for i in _rows(labels["normal_ecg"])])
    assert np.median(af) > 3 * np.median(sinus)
    assert (af > 0.1).mean() >= 0.9 and (sinus < 0.1).mean() >= 0.9


def test_bundle_branch_blocks_widen_the_qrs(cohort):
    tracings, labels = cohort
    # Without hyperkalaemia, whose peaked T waves this simple QRS detector may take for beats.
    no_peaked_t = labels["potassium"] < 5.5
    normal = np.array([qrs_width(tracings[i])
                       for i in _rows(labels["normal_ecg"] & no_peaked_t)])
    for block in ("RBBB", "LBBB"):
        wide = np.array([qrs_width(tracings[i]) for i in _rows(labels[block] & no_peaked_t)])
        assert np.median(wide) > np.median(normal) + 0.03, block
        assert (wide > np.median(normal)).mean() >= 0.9, block


def test_first_degree_av_block_lengthens_pr(cohort):
    tracings, labels = cohort
    slow_sinus = ~labels["ST"] & ~labels["AF"]
    normal = np.array([p_to_r(tracings[i]) for i in _rows(labels["normal_ecg"])])
    avb = np.array([p_to_r(tracings[i]) for i in _rows(labels["1dAVb"] & slow_sinus)])
    assert np.median(avb) > np.median(normal) + 0.06
    assert (avb > np.percentile(normal, 90)).mean() >= 0.75


def test_t_wave_grows_with_potassium(cohort):
    tracings, labels = cohort
    # Normal ECGs without hypokalaemia (whose U wave would count as T here).
    rows = _rows(labels["normal_ecg"] & (labels["potassium"] >= 3.6), limit=400)
    amplitude = np.array([t_wave_amplitude(tracings[i]) for i in rows])
    assert spearmanr(labels["potassium"].to_numpy()[rows], amplitude)[0] > 0.5


# ---------------------------------------------------------------------------------------------
# Files in the CODE-15% layout.


def test_write_code15_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "CHUNK_SIZE", 25)  # chunks that straddle the part boundary
    directory = write_code15(tmp_path / "new" / "code15", n_exams=70, n_parts=2, seed=3)
    assert directory == tmp_path / "new" / "code15"
    table = pd.read_csv(directory / "exams.csv")
    assert list(table.columns) == CSV_COLUMNS and len(table) == 70

    tracings_by_id = {}
    for k in range(2):
        with h5py.File(directory / f"exams_part{k}.hdf5", "r") as part:
            exam_id, tracings = part["exam_id"][:], part["tracings"][:]
        assert exam_id.dtype == np.int64 and tracings.dtype == np.float32
        assert tracings.shape == (len(exam_id), N_SAMPLES, 12)
        assert exam_id[-1] == 0 and not tracings[-1].any() and (exam_id[:-1] > 0).all()
        assert set(table.loc[table["trace_file"] == f"exams_part{k}.hdf5", "exam_id"]) \
            == set(exam_id[:-1])
        tracings_by_id.update(zip(exam_id[:-1], tracings[:-1]))
    assert len(tracings_by_id) == 70 == table["exam_id"].nunique()

    expected_tracings, expected_labels = synthesize_exams(70, seed=3)
    expected = dict(zip(expected_labels["exam_id"], expected_tracings))
    for exam in table["exam_id"]:
        np.testing.assert_array_equal(tracings_by_id[exam], expected[exam])
    merged = table.merge(expected_labels, on="exam_id", suffixes=("", "_expected"))
    assert (merged["AF"] == merged["AF_expected"]).all()
    assert np.allclose(merged["potassium"], merged["potassium_expected"])
    assert not table["exam_id"].equals(expected_labels["exam_id"])  # CSV order is shuffled
    assert set(table["death"].dropna()) <= {True, False}


def test_write_code15_refuses_to_overwrite(tmp_path):
    write_code15(tmp_path, n_exams=6, n_parts=2, seed=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match="exams.csv"):
        write_code15(tmp_path, n_exams=6, n_parts=2, seed=1)
    (tmp_path / "exams.csv").unlink()
    with pytest.raises(FileExistsError, match="exams_part0.hdf5"):
        write_code15(tmp_path, n_exams=6, n_parts=2, seed=1)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == \
        {name: data for name, data in before.items() if name != "exams.csv"}
