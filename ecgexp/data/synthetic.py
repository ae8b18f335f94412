"""Synthetic 12-lead ECGs with labels, written in the CODE-15% layout.

The generator is seeded and vectorised over exams; it stands in for the real (large or private)
datasets in the demo, the tests and the CI.

Cohort
    Patients have 1-4 exams (mean about 1.5) on increasing dates in 2010-2016; sex, Chagas
    disease, the QRS axis, bundle-branch blocks and the baseline age are patient-level, so a
    patient's exams agree and age grows with the exam date. The six CODE-15% abnormalities each
    have a prevalence of about 5-8 %. About 5 % of the patients seen again after a first exam
    without AF show AF in a later exam (and keep it); their earlier sinus exams carry the atrial
    substrate of AF risk, a longer and larger P wave. Chagas raises the chance of RBBB four
    times and of left anterior fascicular block (frontal QRS axis -45 to -90 degrees), and 60 %
    of the Chagas patients have a cardiomyopathy that widens the QRS by 12 ms and lowers its
    voltage by 20 %. Death,
    recorded with ``timey`` (years to death or to the end of follow-up) on each patient's first
    exam only, follows a Weibull proportional-hazards process with a known log-hazard
    linear in the first exam's age, AF and bundle-branch blocks (:func:`log_hazard`: hazard
    ratio 1.35 per 10 years, 2.7 with AF, 7.4 with LBBB or RBBB; cumulative baseline hazard
    0.04 t^1.3, t in years), censored at the end of follow-up (2018-06-30, at most 8 years) or by
    an independent loss to follow-up (5 % a year); about a quarter of the patients die during
    follow-up. Serum potassium
    (mmol/L) is about 4.2 +- 0.5 with heavier tails into hypo- (< 3.5) and hyperkalaemia (> 5.5).

Signal model (a dipole, or vectorcardiogram, model)
    The heart is a 3-D dipole in body coordinates x = patient's left, y = inferior (feet),
    z = anterior. Each wave of a beat (P; septal Q, main R and terminal S of the QRS; the
    right-ventricular R' of RBBB; the second, late left-ventricular R of LBBB; T; U) is a
    Gaussian pulse in time with its own 3-D direction, amplitude (mV) and width. Per exam, every
    wave's pulses at all beats are summed into one scalar source signal; the eight recorded
    leads DI, DII, V1-V6 are projections of the dipole onto lead vectors (DI and DII from the
    hexaxial angles 0 and 60 degrees; V1-V6 along horizontal-plane directions from right
    parasternal to left mid-axillary, with a proximity gain). Noise is then added to these
    eight leads: baseline wander (< 0.5 Hz), 60 Hz powerline (Brazilian mains) and white
    noise. As in a real electrocardiograph, DIII = DII - DI, AVR = -(DI + DII) / 2,
    AVL = (DI - DIII) / 2 and AVF = (DII + DIII) / 2 are derived afterwards, so these
    identities hold exactly, noise included.

    Rhythm: sinus RR intervals carry respiratory sinus arrhythmia (1-5 %) and a little random
    variability; heart rate falls slightly with age. SB is 38-48/min, ST 105-150/min, other
    sinus exams 55-95/min. AF has i.i.d. log-normal RR intervals (coefficient of variation
    0.18-0.30, 70-130/min), no P waves and a fibrillatory wave (4-8 Hz, 0.04-0.10 mV) whose
    dipole points anterior-inferior, so it is largest in V1 and DII.
    Conduction: PR (P onset to QRS onset) is 120-200 ms, lengthening with age, and 220-320 ms in
    1dAVb. The normal QRS is 80-100 ms. RBBB adds a late rightward-anterior R' (rsR' in V1,
    broad slurred S in DI and V6; QRS >= 120 ms). LBBB replaces the septal Q and the S by two
    broad, separated left-posterior R components (notched R in DI, AVL, V5-V6, deep QS in V1;
    QRS 125-160 ms) with a T wave discordant to the QRS.
    Repolarisation: QT and the T width scale with the square root of RR (Bazett). The T wave
    grows taller and narrower with serum potassium (peaked T in hyperkalaemia) and flattens
    below 3.5 mmol/L, where a U wave appears. QRS and T amplitudes fall with age (1 and 1.2 % per
    year), and the P wave widens with age.

Record lengths are 7 s (2800 samples) or 10 s (4000 samples) at 400 Hz, centre-padded with
zeros to 4096 samples as in CODE-15%. Amplitudes are in mV.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import pandas as pd

from ecgexp.signal.leads import CANONICAL_LEADS

LEADS = CANONICAL_LEADS
ABNORMALITIES = ("1dAVb", "RBBB", "LBBB", "SB", "AF", "ST")
SAMPLING_RATE = 400  # Hz
N_SAMPLES = 4096

LABEL_COLUMNS = ("exam_id", "age", "is_male", "nn_predicted_age", *ABNORMALITIES, "patient_id",
                 "normal_ecg", "death", "timey")
EXTRA_COLUMNS = ("chagas", "potassium", "exam_date")
CSV_COLUMNS = (*LABEL_COLUMNS, "trace_file", *EXTRA_COLUMNS)

CHUNK_SIZE = 250  # exams rendered at a time
RECORD_LENGTHS = (2800, 4000)  # samples: 7 s and 10 s
RECORD_LENGTH_PROBABILITIES = (0.3, 0.7)
MAX_ID = 10**7  # exam and patient ids are distinct random integers in 1..MAX_ID
COHORT_STREAM, RENDER_STREAM, CSV_ORDER_STREAM = 0, 1, 2  # random streams of one seed

# Cohort.
EXAMS_PER_PATIENT_PROBABILITIES = (0.62, 0.25, 0.09, 0.04)  # 1, 2, 3, 4 exams
STUDY_START = np.datetime64("2010-01-01")
STUDY_DAYS = int((np.datetime64("2016-12-31") - STUDY_START).astype(int))
FOLLOW_UP_END = np.datetime64("2018-06-30")
DAYS_BETWEEN_EXAMS = (14, 700)
MALE_FRACTION = 0.4
CHAGAS_PREVALENCE = 0.1
AGE_MEAN, AGE_SD, AGE_RANGE = 52.0, 17.0, (16.0, 83.0)  # baseline age, years
PREDICTED_AGE_ERROR_SD = 8.0  # years
POTASSIUM_MEAN, POTASSIUM_SCALE, POTASSIUM_RANGE = 4.2, 0.45, (2.0, 8.0)  # mmol/L
PREVALENCE = 0.065  # target of each abnormality
AF_INCIDENCE = 0.05  # AF at a later exam, patients seen again without AF at their first
CHAGAS_RBBB_RISK = 4.0
LAFB_PROBABILITY = {"chagas": 0.45, "other": 0.02}
# Chagas cardiomyopathy (a share of the Chagas patients): QRS widening (s), QRS voltage factor.
CARDIOMYOPATHY_SHARE, CARDIOMYOPATHY_QRS_WIDENING, CARDIOMYOPATHY_QRS_VOLTAGE = 0.6, 0.012, 0.8
MAX_TIMEY = 8.0  # years
MIN_TIMEY = 0.001  # years: a death on the day of the exam still has a positive time
# Survival: Weibull proportional hazards (time in years from the first exam), per-year and
# log hazard ratios of the first exam's age, AF and a bundle-branch block; independent loss
# to follow-up.
WEIBULL_SHAPE, WEIBULL_SCALE = 1.3, 0.04
HAZARD_REFERENCE_AGE, LOG_HAZARD_PER_YEAR = 55.0, 0.03
LOG_HAZARD_RATIO_AF, LOG_HAZARD_RATIO_BBB = 1.0, 2.0  # BBB: LBBB or RBBB
LOSS_TO_FOLLOW_UP_RATE = 0.05  # per year

# Rhythm.
SINUS_RATE = (55.0, 95.0)  # beats/min
BRADYCARDIA_RATE = (38.0, 48.0)
TACHYCARDIA_RATE = (105.0, 150.0)
AF_RATE = (70.0, 130.0)
AF_RR_VARIATION = (0.18, 0.30)  # coefficient of variation of the RR intervals
AF_MIN_RR = 0.3  # s
RESPIRATION_HZ = (0.2, 0.33)
BEAT_MARGIN = 0.8  # s: beats this far outside the record still reach into it

# Waves: durations in s, amplitudes in mV.
NORMAL_PR = (0.12, 0.17)  # plus 0.8 ms per year of age above 16, at most 0.20
AVB1_PR = (0.22, 0.32)
NORMAL_QRS = (0.08, 0.10)
LBBB_QRS = (0.125, 0.16)
RBBB_DELAY = (0.035, 0.05)  # R' after the S
QTC = (0.38, 0.44)

# Lead vectors of the eight recorded leads DI, DII, V1-V6 in (left, inferior, anterior).
PRECORDIAL_AZIMUTH_DEG = (115, 95, 75, 55, 30, 0)  # from the left towards anterior
PRECORDIAL_GAIN = (1.1, 1.6, 1.7, 1.6, 1.3, 1.0)
POWERLINE_HZ = 60.0


def _lead_vectors() -> np.ndarray:
    """(8, 3) lead vectors of DI, DII and V1-V6."""
    limb = [(1.0, 0.0, 0.0), (np.cos(np.pi / 3), np.sin(np.pi / 3), 0.0)]
    azimuth = np.deg2rad(PRECORDIAL_AZIMUTH_DEG)
    precordial = np.stack([np.cos(azimuth), np.zeros(6), np.sin(azimuth)], axis=1)
    return np.vstack([limb, precordial * np.array(PRECORDIAL_GAIN)[:, None]])


def _limb_derivation() -> np.ndarray:
    """(8, 12) matrix turning DI, DII, V1-V6 into the 12 leads of ``LEADS``."""
    di, dii = np.eye(8)[0], np.eye(8)[1]
    diii = dii - di
    columns = [di, dii, diii, -(di + dii) / 2, (di - diii) / 2, (dii + diii) / 2, *np.eye(8)[2:]]
    return np.stack(columns, axis=1)


LEAD_VECTORS = _lead_vectors()
LIMB_DERIVATION = _limb_derivation()


def synthesize_exams(n_exams: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Synthetic exams and their label table.

    Returns:
        tracings: float32 (n_exams, 4096, 12) in mV, leads in ``LEADS`` order, centre-padded.
        labels: one row per exam in the same order, columns ``LABEL_COLUMNS`` then
            ``EXTRA_COLUMNS`` (the ``exams.csv`` columns except ``trace_file``).
    """
    if n_exams < 1:
        raise ValueError(f"synthesize_exams: n_exams must be at least 1, got {n_exams}")
    exams = _sample_cohort(n_exams, _stream(seed, COHORT_STREAM))
    tracings = np.empty((n_exams, N_SAMPLES, len(LEADS)), dtype=np.float32)
    for start, chunk in _rendered_chunks(exams, seed):
        tracings[start:start + len(chunk)] = chunk
    return tracings, exams[[*LABEL_COLUMNS, *EXTRA_COLUMNS]].reset_index(drop=True)


def synthesize_labels(n_exams: int, seed: int) -> pd.DataFrame:
    """The label table of :func:`synthesize_exams` (same seed, same rows) without rendering
    the tracings."""
    exams = _sample_cohort(n_exams, _stream(seed, COHORT_STREAM))
    return exams[[*LABEL_COLUMNS, *EXTRA_COLUMNS]].reset_index(drop=True)


def write_code15(output_dir, n_exams: int = 2000, n_parts: int = 2, seed: int = 0) -> Path:
    """Writes ``exams_part{k}.hdf5`` (k < n_parts) and ``exams.csv`` into ``output_dir``.

    Each part holds ``tracings`` float32 (n_k + 1, 4096, 12) and ``exam_id`` int64 (n_k + 1,),
    whose last row is CODE-15%'s padding row (exam id 0, zero tracing). The CSV (columns
    ``CSV_COLUMNS``) lists the exams in a shuffled order. The exams are those of
    ``synthesize_exams(n_exams, seed)``, generated ``CHUNK_SIZE`` at a time. Existing files
    are never overwritten.
    """
    output_dir = Path(output_dir)
    if n_parts < 1 or n_exams < n_parts:
        raise ValueError(f"write_code15: need 1 <= n_parts <= n_exams, got n_parts={n_parts}, "
                         f"n_exams={n_exams}")
    part_names = [f"exams_part{k}.hdf5" for k in range(n_parts)]
    csv_path = output_dir / "exams.csv"
    for path in [csv_path, *(output_dir / name for name in part_names)]:
        if path.exists():
            raise FileExistsError(f"write_code15: '{path}' exists; refusing to overwrite it "
                                  f"(choose another output directory)")
    output_dir.mkdir(parents=True, exist_ok=True)

    exams = _sample_cohort(n_exams, _stream(seed, COHORT_STREAM))
    part_bounds = np.linspace(0, n_exams, n_parts + 1).astype(int)
    exams["trace_file"] = np.repeat(part_names, np.diff(part_bounds))
    parts = [_create_part(output_dir / name, exams["exam_id"].to_numpy()[lo:hi])
             for name, lo, hi in zip(part_names, part_bounds[:-1], part_bounds[1:])]
    try:
        for start, chunk in _rendered_chunks(exams, seed):
            _write_rows(parts, part_bounds, start, chunk)
    finally:
        for part in parts:
            part.close()

    order = _stream(seed, CSV_ORDER_STREAM).permutation(n_exams)
    with open(csv_path, "x", newline="") as handle:
        exams.iloc[order][list(CSV_COLUMNS)].to_csv(handle, index=False)
    return output_dir


def _create_part(path: Path, exam_ids: np.ndarray) -> h5py.File:
    """Opens a new part file with its ``exam_id`` and an empty ``tracings`` dataset whose last
    row is the zero padding row."""
    part = h5py.File(path, "x")
    part.create_dataset("exam_id", data=np.append(exam_ids, 0).astype(np.int64))
    tracings = part.create_dataset("tracings", shape=(len(exam_ids) + 1, N_SAMPLES, len(LEADS)),
                                   dtype=np.float32)
    tracings[-1] = 0.0
    return part


def _write_rows(parts: list[h5py.File], part_bounds: np.ndarray, start: int,
                tracings: np.ndarray) -> None:
    """Writes exams ``start .. start + len(tracings)`` (cohort order) into the parts holding
    them; part k holds cohort rows ``part_bounds[k] .. part_bounds[k + 1]``."""
    stop = start + len(tracings)
    for part, lo, hi in zip(parts, part_bounds[:-1], part_bounds[1:]):
        first, last = max(start, lo), min(stop, hi)
        if first < last:
            part["tracings"][first - lo:last - lo] = tracings[first - start:last - start]


def _stream(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream of ``seed``: ``COHORT_STREAM``, ``CSV_ORDER_STREAM`` or
    ``RENDER_STREAM`` followed by a block number."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _rendered_chunks(exams: pd.DataFrame, seed: int):
    """Yields ``(start, tracings)`` for consecutive blocks of ``CHUNK_SIZE`` exams, each block
    rendered from its own random stream so the result does not depend on how it is stored."""
    for block, start in enumerate(range(0, len(exams), CHUNK_SIZE)):
        yield start, _render_exams(exams.iloc[start:start + CHUNK_SIZE],
                                   _stream(seed, RENDER_STREAM, block))


# ---------------------------------------------------------------------------------------------
# Cohort: patients, exams and labels.


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _sample_cohort(n_exams: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per exam, in a random order: the public label columns plus the hidden traits
    the renderer needs (``age_years``, exact age; ``qrs_axis``, frontal QRS axis in degrees;
    ``atrial_substrate``, a sinus exam of a patient who later has AF; ``cardiomyopathy``, Chagas
    heart disease)."""
    exam_counts = rng.choice(4, size=n_exams, p=EXAMS_PER_PATIENT_PROBABILITIES) + 1
    n_patients = int(np.searchsorted(np.cumsum(exam_counts), n_exams)) + 1
    exam_counts = exam_counts[:n_patients]
    exam_counts[-1] -= exam_counts.sum() - n_exams
    patient = np.repeat(np.arange(n_patients), exam_counts)
    first_row = np.cumsum(exam_counts) - exam_counts
    visit = np.arange(n_exams) - first_row[patient]

    gaps = np.where(visit > 0, rng.integers(*DAYS_BETWEEN_EXAMS, n_exams), 0)
    days_since_first = np.cumsum(gaps) - np.cumsum(gaps)[first_row][patient]
    span = days_since_first[first_row + exam_counts - 1]
    first_day = (rng.random(n_patients) * (STUDY_DAYS - span + 1)).astype(int)
    exam_day = first_day[patient] + days_since_first

    is_male = rng.random(n_patients) < MALE_FRACTION
    chagas = rng.random(n_patients) < CHAGAS_PREVALENCE
    baseline_age = np.clip(rng.normal(AGE_MEAN, AGE_SD, n_patients), *AGE_RANGE)
    age = baseline_age[patient] + days_since_first / 365.25

    af, atrial_substrate = _atrial_fibrillation(baseline_age, exam_counts, patient, visit, rng)
    rbbb, lbbb = _bundle_branch_blocks(baseline_age, chagas, rng)
    labels = {"AF": af, "RBBB": rbbb[patient], "LBBB": lbbb[patient],
              **_sinus_labels(age, af, rng)}
    abnormal = np.any([labels[name] for name in ABNORMALITIES], axis=0)

    first_visit = visit == 0
    death, timey = _survival(np.floor(baseline_age), af[first_visit], lbbb, rbbb,
                             exam_day[first_visit], rng)
    exams = pd.DataFrame({
        "exam_id": rng.choice(MAX_ID, size=n_exams, replace=False) + 1,
        "age": np.floor(age).astype(int),
        "is_male": is_male[patient],
        "nn_predicted_age": np.round(age + rng.normal(0, PREDICTED_AGE_ERROR_SD, n_exams), 1),
        **{name: labels[name] for name in ABNORMALITIES},
        "patient_id": (rng.choice(MAX_ID, size=n_patients, replace=False) + 1)[patient],
        "normal_ecg": ~abnormal,
        "death": pd.Series(np.repeat(death, exam_counts), dtype=object).where(first_visit),
        "timey": np.where(first_visit, np.repeat(timey, exam_counts), np.nan),
        "chagas": chagas[patient].astype(int),
        "potassium": _potassium(n_exams, rng),
        "exam_date": np.datetime_as_string(STUDY_START + exam_day.astype("timedelta64[D]")),
        "age_years": age,
        "qrs_axis": _qrs_axis(baseline_age, chagas, rng)[patient],
        "atrial_substrate": atrial_substrate,
        "cardiomyopathy": (chagas & (rng.random(n_patients) < CARDIOMYOPATHY_SHARE))[patient],
    })
    return exams.iloc[rng.permutation(n_exams)].reset_index(drop=True)


def _atrial_fibrillation(baseline_age, exam_counts, patient, visit, rng):
    """AF per exam (bool, n_exams), from the first exam on or from a later onset visit, and the
    sinus exams that precede a later onset (bool, n_exams)."""
    n_patients = len(baseline_age)
    af_at_first = rng.random(n_patients) < 0.01 + 0.22 * _sigmoid((baseline_age - 72) / 7)
    onset_risk = 2 * AF_INCIDENCE * _sigmoid((baseline_age - 52) / 12)
    develops_af = ~af_at_first & (exam_counts > 1) & (rng.random(n_patients) < onset_risk)
    onset_visit = np.where(develops_af, rng.integers(1, np.maximum(exam_counts, 2)),
                           np.iinfo(int).max)
    af = af_at_first[patient] | (visit >= onset_visit[patient])
    return af, develops_af[patient] & ~af


def _bundle_branch_blocks(baseline_age, chagas, rng):
    """Mutually exclusive RBBB and LBBB per patient (bool, n_patients); Chagas raises RBBB."""
    age_risk = np.clip(0.5 + (baseline_age - 30) / 45, 0.5, 1.8)
    chagas_risk = np.where(chagas, CHAGAS_RBBB_RISK, 1.0)
    rbbb_risk = PREVALENCE / (1 + CHAGAS_PREVALENCE * (CHAGAS_RBBB_RISK - 1)) * chagas_risk
    u = rng.random(len(baseline_age))
    return u < rbbb_risk * age_risk, u > 1 - PREVALENCE * age_risk


def _sinus_labels(age, af, rng):
    """SB, ST (exclusive) and 1dAVb per exam (bool, n_exams); none of them with AF."""
    sinus_prevalence = PREVALENCE / (1 - PREVALENCE)
    rate = rng.random(len(age))
    avb1_risk = sinus_prevalence * np.clip(0.4 + (age - 30) / 40, 0.4, 1.8)
    return {"1dAVb": ~af & (rng.random(len(age)) < avb1_risk),
            "SB": ~af & (rate < sinus_prevalence),
            "ST": ~af & (rate > 1 - sinus_prevalence)}


def log_hazard(age, af, lbbb, rbbb) -> np.ndarray:
    """The true log relative hazard of death of the survival process, from the public columns
    of a patient's first exam: ``age`` (whole years), ``AF``, ``LBBB`` and ``RBBB`` (0/1)."""
    return (LOG_HAZARD_PER_YEAR * (np.asarray(age, dtype=float) - HAZARD_REFERENCE_AGE)
            + LOG_HAZARD_RATIO_AF * np.asarray(af, dtype=float)
            + LOG_HAZARD_RATIO_BBB * (np.asarray(lbbb, dtype=float)
                                      + np.asarray(rbbb, dtype=float)))


def _survival(age, af, lbbb, rbbb, first_day, rng):
    """Death (bool) and ``timey`` (years to death or censoring) per patient, from their first
    exam on: Weibull proportional hazards ``h(t) = WEIBULL_SCALE * k * t^(k-1) * exp(eta)``
    with ``eta = log_hazard(age, af, lbbb, rbbb)``, censored at the end of follow-up (2018-06-30,
    at most ``MAX_TIMEY``) or at an independent exponential loss to follow-up."""
    follow_up = (FOLLOW_UP_END - (STUDY_START + first_day.astype("timedelta64[D]"))).astype(float)
    follow_up = np.clip(follow_up / 365.25, 0.1, MAX_TIMEY)
    cumulative_hazard = -np.log(1 - rng.random(len(age)))  # Exp(1) = H(T) at the event time
    time_to_death = (cumulative_hazard / (WEIBULL_SCALE * np.exp(log_hazard(age, af, lbbb, rbbb)))
                     ) ** (1 / WEIBULL_SHAPE)
    lost = -np.log(1 - rng.random(len(age))) / LOSS_TO_FOLLOW_UP_RATE
    censoring = np.minimum(follow_up, lost)
    death = time_to_death <= censoring
    return death, np.maximum(np.round(np.minimum(time_to_death, censoring), 3), MIN_TIMEY)


def _potassium(n_exams, rng):
    """Serum potassium per exam (mmol/L): Student-t (4 degrees of freedom) around 4.2."""
    potassium = POTASSIUM_MEAN + POTASSIUM_SCALE * rng.standard_t(4, n_exams)
    return np.round(np.clip(potassium, *POTASSIUM_RANGE), 2)


def _qrs_axis(baseline_age, chagas, rng):
    """Frontal QRS axis per patient (degrees): normal, shifting left with age, or -45 to -90
    with left anterior fascicular block."""
    normal = np.clip(rng.normal(50, 22, len(chagas)) - 0.3 * (baseline_age - 50), -30, 100)
    lafb = rng.random(len(chagas)) < np.where(chagas, LAFB_PROBABILITY["chagas"],
                                              LAFB_PROBABILITY["other"])
    return np.where(lafb, rng.uniform(-90, -45, len(chagas)), normal)


# ---------------------------------------------------------------------------------------------
# Signals.


class _Wave(NamedTuple):
    """One wave of every beat, per exam (n,): offset from the R peak (s), Gaussian width (s),
    amplitude (mV; 0 where the exam has no such wave) and unit dipole direction (n, 3)."""
    offset: np.ndarray
    sigma: np.ndarray
    amplitude: np.ndarray
    direction: np.ndarray


def _render_exams(exams: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Tracings float32 (n, 4096, 12) in mV for the exams (rows of ``_sample_cohort``).

    Everything is computed on the padded 4096-sample frame: a record of ``length`` samples
    starts at sample ``(4096 - length) // 2`` and the samples outside it are set to zero.
    """
    n = len(exams)
    record_samples = rng.choice(RECORD_LENGTHS, size=n, p=RECORD_LENGTH_PROBABILITIES)
    record_start = (N_SAMPLES - record_samples) // 2
    af = exams["AF"].to_numpy()
    rr_mean = 60.0 / _heart_rate(exams, rng)
    beat_exam, beat_time, beat_gain = _beat_times(rr_mean, af, record_samples / SAMPLING_RATE, rng)
    beat_time = beat_time + record_start[beat_exam] / SAMPLING_RATE
    waves = _waves(exams, rr_mean, rng)

    n_sources = len(waves) + 5  # the waves, the f-wave and four interference signals
    sources = np.empty((n, N_SAMPLES, n_sources), dtype=np.float32)
    projections = np.empty((n, n_sources, 8), dtype=np.float32)
    for column, wave in enumerate(waves):
        sources[:, :, column] = _gaussian_train(
            beat_exam, beat_time + wave.offset[beat_exam], wave.sigma[beat_exam],
            wave.amplitude[beat_exam] * beat_gain, n, N_SAMPLES)
        projections[:, column] = wave.direction @ LEAD_VECTORS.T
    sources[:, :, len(waves)], projections[:, len(waves)] = _fibrillatory_wave(af, rng)
    sources[:, :, len(waves) + 1:], projections[:, len(waves) + 1:] = _interference(n, rng)

    recorded = np.matmul(sources, projections)
    recorded += _white_noise(n, rng)
    sample = np.arange(N_SAMPLES)
    inside = (sample >= record_start[:, None]) & (sample < (record_start + record_samples)[:, None])
    recorded *= inside[:, :, None]
    return recorded @ LIMB_DERIVATION.astype(np.float32)


def _white_noise(n, rng):
    """White noise (n, 4096, 8) in mV, independent per recorded lead, of standard deviation
    0.005-0.02 mV per exam; triangular (the sum of two uniforms), which is cheaper to draw
    than Gaussian noise."""
    noise = rng.random((n, N_SAMPLES, 8), dtype=np.float32)
    noise -= rng.random((n, N_SAMPLES, 8), dtype=np.float32)
    noise *= (rng.uniform(0.005, 0.02, (n, 1, 1)) * np.sqrt(6)).astype(np.float32)
    return noise


def _heart_rate(exams: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Mean heart rate per exam (beats/min) from the rhythm labels, age and sex."""
    n = len(exams)
    age, male = exams["age_years"].to_numpy(), exams["is_male"].to_numpy()
    sinus = np.clip(rng.uniform(62, 95, n) - 0.2 * (age - 50) - 3 * male, *SINUS_RATE)
    rate = np.where(exams["SB"], rng.uniform(*BRADYCARDIA_RATE, n), sinus)
    rate = np.where(exams["ST"], rng.uniform(*TACHYCARDIA_RATE, n), rate)
    return np.where(exams["AF"], rng.uniform(*AF_RATE, n), rate)


def _beat_times(rr_mean, af, record_seconds, rng):
    """R-peak times of all beats of all exams, flattened over (exam, beat).

    Args:
        rr_mean: (n,) mean RR interval, s.
        af: (n,) bool, irregular AF rhythm instead of sinus rhythm.
        record_seconds: (n,) record duration, s.
    Returns:
        beat_exam (B,) exam row of each beat; beat_time (B,) s from the record start;
        beat_gain (B,) respiratory amplitude modulation, about 1.
    """
    n = len(rr_mean)
    shortest_rr = np.where(af, AF_MIN_RR, 0.9 * rr_mean).min()
    beat = np.arange(int(np.ceil((record_seconds.max() + 2 * BEAT_MARGIN) / shortest_rr)) + 1)
    respiration_hz = rng.uniform(*RESPIRATION_HZ, (n, 1))
    respiration_phase = rng.uniform(0, 2 * np.pi, (n, 1))
    sinus_arrhythmia = rng.uniform(0.01, 0.05, (n, 1))
    sinus_rr = rr_mean[:, None] * (
        1 + sinus_arrhythmia * np.sin(2 * np.pi * respiration_hz * beat * rr_mean[:, None]
                                      + respiration_phase)
        + 0.01 * rng.standard_normal((n, len(beat))))
    variation = rng.uniform(*AF_RR_VARIATION, (n, 1))
    af_rr = rr_mean[:, None] * np.exp(variation * rng.standard_normal((n, len(beat)))
                                      - variation**2 / 2)
    rr = np.where(af[:, None], np.maximum(af_rr, AF_MIN_RR), sinus_rr)
    time = np.cumsum(rr, axis=1) - rr - BEAT_MARGIN + rng.random((n, 1)) * rr[:, :1]
    inside = time <= record_seconds[:, None] + BEAT_MARGIN
    gain = (1 + 0.05 * np.sin(2 * np.pi * respiration_hz * time + respiration_phase)
            + 0.02 * rng.standard_normal(time.shape))
    beat_exam = np.broadcast_to(np.arange(n)[:, None], time.shape)
    return beat_exam[inside], time[inside], gain[inside]


def _gaussian_train(beat_exam, centre, sigma, amplitude, n_exams, n_samples):
    """Sum over beats of ``amplitude * exp(-(t - centre)^2 / (2 sigma^2))``.

    Args:
        beat_exam: (B,) exam row of each pulse.
        centre, sigma: (B,) pulse centre and width, s.
        amplitude: (B,) mV; pulses with amplitude 0 are skipped.
    Returns:
        (n_exams, n_samples) float64, mV, sampled at ``SAMPLING_RATE``.
    """
    present = amplitude != 0
    if not present.any():
        return np.zeros((n_exams, n_samples))
    centre = centre[present] * SAMPLING_RATE  # in samples from here on
    sigma = sigma[present] * SAMPLING_RATE
    half_width = int(np.ceil(4 * sigma.max()))
    sample = np.rint(centre).astype(np.int64)[:, None] + np.arange(-half_width, half_width + 1)
    pulse = amplitude[present, None] * np.exp(-0.5 * ((sample - centre[:, None])
                                                      / sigma[:, None]) ** 2)
    inside = (sample >= 0) & (sample < n_samples)
    flat_index = beat_exam[present, None] * n_samples + sample
    return np.bincount(flat_index[inside], weights=pulse[inside],
                       minlength=n_exams * n_samples).reshape(n_exams, n_samples)


def _direction(frontal_deg, anterior):
    """Unit dipole directions (n, 3) from a frontal-plane angle (hexaxial degrees: 0 = left,
    90 = inferior) and an anterior component (posterior when negative)."""
    angle = np.deg2rad(frontal_deg)
    vector = np.stack(np.broadcast_arrays(np.cos(angle), np.sin(angle), anterior), axis=-1)
    return vector / np.linalg.norm(vector, axis=-1, keepdims=True)


def _jittered(direction, n, rng, spread=0.15):
    """(n, 3) unit vectors scattered around ``direction`` (3,)."""
    vector = np.asarray(direction) / np.linalg.norm(direction) + rng.normal(0, spread, (n, 3))
    return vector / np.linalg.norm(vector, axis=-1, keepdims=True)


def _waves(exams: pd.DataFrame, rr_mean: np.ndarray, rng: np.random.Generator) -> list[_Wave]:
    """The P, Q, R, late R, S, R', T and U waves of each exam (see the module docstring)."""
    n = len(exams)
    age, male = exams["age_years"].to_numpy(), exams["is_male"].to_numpy()
    rbbb, lbbb = exams["RBBB"].to_numpy(), exams["LBBB"].to_numpy()
    axis = exams["qrs_axis"].to_numpy()
    cardiomyopathy = exams["cardiomyopathy"].to_numpy()
    qrs_scale = (np.clip(1 - 0.01 * (age - 50), 0.55, 1.35) * np.where(male, 1.15, 1.0)
                 * np.where(cardiomyopathy, CARDIOMYOPATHY_QRS_VOLTAGE, 1.0))

    # Normal (or right-bundle-blocked) depolarisation of duration `qrs`: septal Q, main R,
    # terminal S and, in RBBB, the delayed right-ventricular R'.
    qrs = (np.clip(rng.uniform(*NORMAL_QRS, n) + 0.005 * male, *NORMAL_QRS)
           + CARDIOMYOPATHY_QRS_WIDENING * cardiomyopathy)
    septal = _Wave(-0.3 * qrs, 0.08 * qrs,
                   np.where(lbbb, 0.0, rng.uniform(0.12, 0.2, n) * qrs_scale),
                   _jittered((-0.6, 0.25, 0.75), n, rng))
    terminal = _Wave(0.3 * qrs, 0.08 * qrs,
                     np.where(lbbb, 0.0, rng.uniform(0.2, 0.4, n) * qrs_scale),
                     _jittered((-0.35, -0.5, -0.8), n, rng))
    right_delay = _Wave(0.3 * qrs + rng.uniform(*RBBB_DELAY, n), rng.uniform(0.014, 0.018, n),
                        np.where(rbbb, rng.uniform(0.4, 0.8, n) * qrs_scale, 0.0),
                        _jittered((-0.55, 0.1, 0.85), n, rng))

    # LBBB: two broad left-posterior components, 2.25 widths apart, make the wide notched R.
    lbbb_qrs = rng.uniform(*LBBB_QRS, n)
    lbbb_sigma = 0.16 * lbbb_qrs
    lbbb_axis = np.clip(axis, -30, 30)
    main_amplitude = rng.uniform(0.9, 1.6, n) * qrs_scale
    main = _Wave(np.where(lbbb, -lbbb_qrs / 2 + 2 * lbbb_sigma, 0.0),
                 np.where(lbbb, lbbb_sigma, 0.1 * qrs), main_amplitude,
                 np.where(lbbb[:, None], _direction(lbbb_axis, -0.4),
                          _direction(axis, -rng.uniform(0.3, 0.7, n))))
    late_left = _Wave(lbbb_qrs / 2 - 2 * lbbb_sigma, lbbb_sigma,
                      np.where(lbbb, main_amplitude * rng.uniform(0.9, 1.2, n), 0.0),
                      _direction(lbbb_axis - 10, -0.6))

    qrs_onset = np.where(lbbb, -lbbb_qrs / 2, septal.offset - 2 * septal.sigma)
    atrial = _p_wave(exams, qrs_onset, rng)
    t_wave, u_wave = _repolarisation(exams, qrs_onset, rr_mean, main.direction, rng)
    return [atrial, septal, main, late_left, terminal, right_delay, t_wave, u_wave]


def _p_wave(exams, qrs_onset, rng) -> _Wave:
    """Atrial depolarisation: P wave ending the PR interval before the QRS onset; none in AF."""
    n = len(exams)
    age = exams["age_years"].to_numpy()
    substrate = exams["atrial_substrate"].to_numpy()
    pr = np.minimum(rng.uniform(*NORMAL_PR, n) + 0.0008 * (age - 16), 0.2)
    pr = np.where(exams["1dAVb"], rng.uniform(*AVB1_PR, n), pr)
    sigma = (rng.uniform(0.018, 0.022, n) * np.where(substrate, 1.3, 1.0)
             * np.clip(1 + 0.004 * (age - 50), 0.8, 1.15))  # P widens with age
    amplitude = rng.uniform(0.1, 0.2, n) * np.where(substrate, 1.2, 1.0)
    return _Wave(qrs_onset - pr + 2.5 * sigma, sigma, np.where(exams["AF"], 0.0, amplitude),
                 _jittered(_direction(55.0, 0.1), n, rng, spread=0.1))


def _repolarisation(exams, qrs_onset, rr_mean, qrs_direction, rng) -> tuple[_Wave, _Wave]:
    """T wave (potassium sets its height and width; discordant in LBBB) and U wave (K < 3.6)."""
    n = len(exams)
    age, potassium = exams["age_years"].to_numpy(), exams["potassium"].to_numpy()
    lbbb = exams["LBBB"].to_numpy()
    sigma = (rng.uniform(0.04, 0.05, n) * np.sqrt(rr_mean)
             * np.clip(1 - 0.12 * (potassium - POTASSIUM_MEAN), 0.6, 1.2))
    qt = rng.uniform(*QTC, n) * np.sqrt(rr_mean)
    amplitude = (rng.uniform(0.25, 0.4, n) * np.clip(1 - 0.012 * (age - 50), 0.4, 1.4)
                 * np.clip(1 + 0.75 * (potassium - POTASSIUM_MEAN), 0.12, 3.2))
    direction = np.where(lbbb[:, None], -qrs_direction,
                         _direction(rng.normal(40, 15, n), 0.45))
    t_wave = _Wave(qrs_onset + qt - 2.5 * sigma, sigma, amplitude, direction)
    u_wave = _Wave(t_wave.offset + 2.5 * sigma + 0.06, np.full(n, 0.03),
                   np.clip(0.3 * (3.6 - potassium), 0.0, 0.35), direction)
    return t_wave, u_wave


def _fibrillatory_wave(af, rng):
    """AF f-wave source (n, 4096) in mV, zero without AF, and its lead projections (n, 8)."""
    n = len(af)
    time = np.arange(N_SAMPLES, dtype=np.float32) / SAMPLING_RATE
    source = np.zeros((n, N_SAMPLES), dtype=np.float32)
    rows = np.flatnonzero(af)
    frequency = rng.uniform(4, 8, (len(rows), 1)).astype(np.float32)
    phase = (2 * np.pi * frequency * time + 0.8 * np.sin(2 * np.pi * 0.2 * time)
             + rng.uniform(0, 2 * np.pi, (len(rows), 1)).astype(np.float32))
    envelope = 1 + 0.4 * np.sin(2 * np.pi * 0.3 * time
                                + rng.uniform(0, 2 * np.pi, (len(rows), 1)).astype(np.float32))
    amplitude = rng.uniform(0.04, 0.1, (len(rows), 1)).astype(np.float32)
    source[rows] = amplitude * envelope * np.sin(phase)
    direction = _jittered((-0.3, 0.6, 0.75), n, rng, spread=0.1)
    return source, direction @ LEAD_VECTORS.T


def _interference(n, rng):
    """Baseline wander (one frequency < 0.5 Hz per exam) and 60 Hz powerline: sources
    (n, 4096, 4) (sine and cosine of each) and per-lead weights (n, 4, 8) in mV."""
    time = np.arange(N_SAMPLES, dtype=np.float32) / SAMPLING_RATE
    wander = 2 * np.pi * rng.uniform(0.05, 0.45, (n, 1)).astype(np.float32) * time
    mains = 2 * np.pi * POWERLINE_HZ * time
    sources = np.stack(np.broadcast_arrays(np.sin(wander), np.cos(wander), np.sin(mains),
                                           np.cos(mains)), axis=-1)
    scale = np.concatenate([np.repeat(rng.uniform(0.02, 0.12, (n, 1)), 2, axis=1),
                            np.repeat(rng.uniform(0.0, 0.015, (n, 1)), 2, axis=1)], axis=1)
    return sources, rng.normal(0, 1, (n, 4, 8)) * scale[:, :, None]
