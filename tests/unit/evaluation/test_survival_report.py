"""``ecgexp.evaluation.survival_report``: the report of five exams (four events, one censoring
after every horizon, so that every censoring weight is 1) worked out pair by pair by hand:
Harrell's C, Uno's C truncated at the last horizon, the time-dependent AUROC of the risk or of
``1 - S(h)``, the Brier scores and their trapezoidal integral; NaN and the warning for a split
without an event; the arrays taken from a predictions table."""

import logging
import math

import numpy as np
import pandas as pd
import pytest

from ecgexp.evaluation.survival_report import survival_arrays, survival_report

# exam:        A    B    C    D    E (censored at 6)
TABLE = pd.DataFrame({"target_time": [1.0, 2.0, 3.0, 4.0, 6.0],
                      "target_death": [1, 1, 1, 1, 0],
                      "risk_score": [0.9, 0.5, 0.7, 0.2, 0.3],
                      "survival_at_2.5": [0.2, 0.4, 0.5, 0.9, 0.8],
                      "survival_at_3.5": [0.1, 0.3, 0.6, 0.7, 0.5]})
HORIZONS = [2.5, 3.5]
SURVIVAL = ["survival_at_2.5", "survival_at_3.5"]


def test_survival_arrays_from_the_table():
    time, event, risk, survival = survival_arrays(TABLE, "time", "death", SURVIVAL)
    assert time.tolist() == [1, 2, 3, 4, 6] and event.tolist() == [1, 1, 1, 1, 0]
    assert risk.dtype == np.float64 and risk.tolist() == [0.9, 0.5, 0.7, 0.2, 0.3]
    assert survival.shape == (5, 2) and survival[:, 1].tolist() == [0.1, 0.3, 0.6, 0.7, 0.5]
    assert survival_arrays(TABLE, "time", "death", [])[3].shape == (5, 0)


def test_risk_model_metrics_by_hand():
    report = survival_report({"test": TABLE}, "time", "death", HORIZONS)
    # Comparable pairs (event i, later j), concordant when risk_i > risk_j:
    # A-B A-C A-D A-E (4 of 4), B-C B-D B-E (2 of 3: 0.5 < 0.7), C-D C-E (2 of 2), D-E (0 of 1).
    # Uno's C at tau 3.5 keeps the events before 3.5 (A, B, C): 8 of 9.
    # AUROC at 2.5: cases A, B against C, D, E: A beats 3, B beats 2 -> 5/6; at 3.5: cases
    # A, B, C against D, E (0.2, 0.3): 6/6.
    assert report == {"test": {"death": pytest.approx({
        "n": 5, "events": 4, "harrell_c": 8 / 10, "uno_c": 8 / 9,
        "auroc_at_2.5": 5 / 6, "auroc_at_3.5": 1.0})}}


def test_survival_curve_metrics_by_hand():
    metrics = survival_report({"val": TABLE}, "time", "death", HORIZONS, SURVIVAL)["val"]["death"]
    # AUROC of 1 - S(h): at 2.5 risks .8, .6 (A, B) against .5, .1, .2: 6/6; at 3.5 .9, .7, .4
    # (A, B, C) against .3, .5: 2 + 2 + 1 of 6.
    assert metrics["auroc_at_2.5"] == pytest.approx(1.0)
    assert metrics["auroc_at_3.5"] == pytest.approx(5 / 6)
    # Brier at 2.5: cases A, B S^2 = .04, .16; controls C, D, E (1 - S)^2 = .25, .01, .04.
    assert metrics["brier_at_2.5"] == pytest.approx((0.04 + 0.16 + 0.25 + 0.01 + 0.04) / 5)
    # at 3.5: cases A, B, C .01, .09, .36; controls D, E .09, .25.
    assert metrics["brier_at_3.5"] == pytest.approx((0.01 + 0.09 + 0.36 + 0.09 + 0.25) / 5)
    assert metrics["ibs"] == pytest.approx((0.1 + 0.16) / 2)  # one trapezoid over its span
    assert metrics["harrell_c"] == pytest.approx(0.8)  # of the risk score still


def test_one_horizon_gives_no_integrated_brier_score():
    metrics = survival_report({"val": TABLE}, "time", "death", [2.5],
                              ["survival_at_2.5"])["val"]["death"]
    assert sorted(metrics) == ["auroc_at_2.5", "brier_at_2.5", "events", "harrell_c", "n",
                               "uno_c"]


def test_a_split_without_an_event_is_nan_with_a_warning(caplog):
    censored = TABLE.assign(target_death=0).iloc[:3]
    with caplog.at_level(logging.WARNING, logger="ecgexp.evaluation.survival_report"):
        report = survival_report({"val": TABLE, "test": censored}, "time", "death", HORIZONS,
                                 SURVIVAL)
    metrics = report["test"]["death"]
    assert metrics["n"] == 3 and metrics["events"] == 0
    assert sorted(metrics) == ["auroc_at_2.5", "auroc_at_3.5", "brier_at_2.5", "brier_at_3.5",
                               "events", "harrell_c", "ibs", "n", "uno_c"]
    assert all(math.isnan(v) for k, v in metrics.items() if k not in ("n", "events"))
    assert [r.getMessage() for r in caplog.records] == [
        "test split: no death event among its 3 exams; its survival metrics are undefined "
        "(NaN)"]
    assert report["val"]["death"]["events"] == 4
