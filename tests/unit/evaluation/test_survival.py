"""Survival models on simulated data with known hazard ratios, Kaplan–Meier by hand, group
boundaries, stratified reports and the evaluation figures."""

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from ecgexp.evaluation import plots
from ecgexp.evaluation.stratify import age_bands, sex_groups, stratified
from ecgexp.evaluation.survival import (
    age_gap_cox,
    age_gap_groups,
    cox_hazard_ratios,
    kaplan_meier,
    score_bins,
)

BASELINE_RATE = 0.05  # events per year at the reference covariates


def simulate_survival(log_hazard: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Exponential event times (years) with rate BASELINE_RATE * exp(log_hazard), censored at
    an independent exponential time (rate 0.05 per year) or at 15 years of follow-up."""
    event_time = rng.exponential(1 / (BASELINE_RATE * np.exp(log_hazard)))
    censor_time = np.minimum(rng.exponential(1 / 0.05, len(log_hazard)), 15.0)
    return pd.DataFrame({"timey": np.minimum(event_time, censor_time),
                         "death": (event_time <= censor_time).astype(int)})


def test_cox_recovers_a_known_hazard_ratio():
    rng = np.random.default_rng(0)
    n = 3000
    exposed = rng.integers(0, 2, n)
    age = rng.uniform(30, 80, n)
    # HR 2.0 for the exposure, HR 1.02 per year of age.
    table = simulate_survival(math.log(2.0) * exposed + 0.02 * (age - 55), rng)
    table["exposed"], table["age"] = exposed, age
    result = cox_hazard_ratios(table, "timey", "death", ["exposed", "age"])
    assert list(result.columns) == ["hazard_ratio", "lower", "upper", "p_value"]
    assert list(result.index) == ["exposed", "age"]
    exposure = result.loc["exposed"]
    assert exposure.lower < 2.0 < exposure.upper
    assert abs(exposure.hazard_ratio - 2.0) < 0.25
    assert exposure.p_value < 1e-6
    assert result.loc["age"].lower < 1.02 < result.loc["age"].upper
    assert result.attrs == {"n": n, "events": int(table["death"].sum())}
    # A narrower level gives a narrower interval around the same estimate.
    narrow = cox_hazard_ratios(table, "timey", "death", ["exposed", "age"], level=0.5)
    assert narrow.loc["exposed", "hazard_ratio"] == pytest.approx(exposure.hazard_ratio)
    assert exposure.lower < narrow.loc["exposed", "lower"] < exposure.hazard_ratio


def test_cox_errors_name_the_config_key():
    table = pd.DataFrame({"timey": [1.0, 2.0, 3.0], "death": [0, 0, 0], "age": [50, 60, 70]})
    with pytest.raises(ValueError, match=r"evaluation\.survival\.event_column: no events"):
        cox_hazard_ratios(table, "timey", "death", ["age"])
    with pytest.raises(ValueError, match=r"evaluation\.survival\.covariates: .*'sex'"):
        cox_hazard_ratios(table, "timey", "death", ["sex"])
    with pytest.raises(ValueError, match=r"evaluation\.survival\.duration_column"):
        cox_hazard_ratios(table.assign(timey=[1.0, -1.0, 2.0]), "timey", "death", ["age"])
    with pytest.raises(ValueError, match=r"evaluation\.survival\.covariates: .*dummy"):
        cox_hazard_ratios(table.assign(sex=["M", "F", "M"], death=[1, 0, 1]), "timey", "death",
                          ["sex"])
    with pytest.raises(ValueError, match=r"evaluation\.survival\.gap_column"):
        age_gap_cox(table)
    with pytest.raises(ValueError, match=r"evaluation\.survival\.covariates: .*missing"):
        cox_hazard_ratios(table.assign(age=[50, None, 70], death=[1, 0, 1]), "timey", "death",
                          ["age"])


def test_age_gap_cox_recovers_published_style_hazard_ratios():
    rng = np.random.default_rng(1)
    n = 6000
    age = rng.uniform(20, 90, n)
    is_male = rng.integers(0, 2, n)
    gap = rng.normal(0, 8, n)
    above, below = gap > 8, gap < -8
    log_hazard = (math.log(1.8) * above + math.log(0.8) * below + 0.05 * (age - 60)
                  + 0.3 * is_male)
    table = simulate_survival(log_hazard, rng)
    table["age_gap"], table["age"], table["is_male"] = gap, age, is_male
    result = age_gap_cox(table)
    assert list(result.index) == ["above", "below"]
    for group, truth in (("above", 1.8), ("below", 0.8)):
        assert result.loc[group, "lower"] < truth < result.loc[group, "upper"]
    assert result.attrs["group_sizes"] == {"normal": int(n - above.sum() - below.sum()),
                                           "above": int(above.sum()), "below": int(below.sum())}
    with pytest.raises(ValueError, match=r"evaluation\.survival\.threshold"):
        age_gap_cox(table, threshold=100.0)


def test_kaplan_meier_matches_the_product_limit_by_hand():
    table = pd.DataFrame({
        "weeks": [1, 2, 2, 3, 4, 5, 6, 7] + [1, 2, 3, 4] + [1, 2, 3, 4],
        "event": [1, 1, 0, 1, 0, 1, 0, 0] + [1, 0, 0, 0] + [1, 1, 0, 0],
        "group": ["a"] * 8 + ["b"] * 4 + ["c"] * 4})
    table["group"] = pd.Categorical(table["group"], categories=["c", "empty", "a", "b"])
    curves, medians = kaplan_meier(table, "weeks", "event", "group")
    assert list(curves) == ["c", "a", "b"]
    a = curves["a"]
    assert list(a.columns) == ["time", "survival", "lower", "upper", "at_risk", "censored"]
    # At risk 8, 7, 5, 4, 3: S = 7/8, ·6/7, ·4/5, (censored), ·2/3.
    by_hand = [1, 7 / 8, 7 / 8 * 6 / 7, 7 / 8 * 6 / 7 * 4 / 5, 0.6, 0.6 * 2 / 3, 0.4, 0.4]
    np.testing.assert_allclose(a["time"], [0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_allclose(a["survival"], by_hand)
    assert np.all(a["lower"] <= a["survival"]) and np.all(a["survival"] <= a["upper"])
    np.testing.assert_allclose(curves["b"]["survival"], [1, 0.75, 0.75, 0.75, 0.75])
    # The median is the first time survival is at or below 0.5.
    assert medians["a"] == 5
    assert medians["c"] == 2
    assert medians["b"] == math.inf


def test_age_gap_groups_are_strict_at_the_threshold():
    groups = age_gap_groups([8.0, 8.01, -8.0, -8.01, 0.0, np.nan])
    assert list(groups.categories) == ["normal", "above", "below"]
    assert list(groups[:5]) == ["normal", "above", "normal", "below", "normal"]
    assert pd.isna(groups[5])


def test_score_bins_are_right_closed_and_include_zero():
    bins = score_bins([0.0, 0.2, 0.2000001, 0.4, 0.99, 1.0])
    assert list(bins.categories) == ["(0, 0.2]", "(0.2, 0.4]", "(0.4, 0.6]", "(0.6, 0.8]",
                                     "(0.8, 1]"]
    assert list(bins) == ["(0, 0.2]", "(0, 0.2]", "(0.2, 0.4]", "(0.2, 0.4]", "(0.8, 1]",
                          "(0.8, 1]"]
    assert list(score_bins([0.1, 0.5], edges=(0, 0.1, 0.4, 0.7, 1))) == ["(0, 0.1]",
                                                                         "(0.4, 0.7]"]
    with pytest.raises(ValueError, match="score_edges"):
        score_bins([1.2])


def test_age_bands_cover_every_boundary_age():
    bands = age_bands([39.9, 40, 50, 60, 69.99, 70, 0, 105])
    assert list(bands.categories) == ["[0, 40)", "[40, 50)", "[50, 60)", "[60, 70)", "≥70"]
    assert list(bands) == ["[0, 40)", "[40, 50)", "[50, 60)", "[60, 70)", "[60, 70)", "≥70",
                           "[0, 40)", "≥70"]
    with pytest.raises(ValueError, match=r"evaluation\.stratify\.age_edges"):
        age_bands([-1.0])
    with pytest.raises(ValueError, match=r"evaluation\.stratify\.age_edges"):
        age_bands([80], edges=(0, 40, 80))


def test_sex_groups():
    groups = sex_groups([1, 0, True, False, 1.0])
    assert list(groups.categories) == ["female", "male"]
    assert list(groups) == ["male", "female", "male", "female", "male"]
    with pytest.raises(ValueError, match="is_male"):
        sex_groups(["M"])


def test_stratified_passes_each_group_its_own_rows():
    predictions = pd.DataFrame({"score": np.arange(7.0)}, index=[f"exam{i}" for i in range(7)])
    ages = [20, 45, 45, 80, 71, 70, 41]
    groups = pd.Series(age_bands(ages), index=predictions.index)
    received = {}

    def report(rows):
        received[rows.index[0]] = list(rows.index)
        return {"n": len(rows), "total": rows["score"].sum()}

    result = stratified(predictions, groups, report)
    assert list(result) == ["[0, 40)", "[40, 50)", "[50, 60)", "[60, 70)", "≥70"]
    assert result["[0, 40)"] == {"n": 1}
    assert result["[50, 60)"] == {"n": 0}
    assert result["[40, 50)"] == {"n": 3, "total": 1 + 2 + 6}
    assert result["≥70"] == {"n": 3, "total": 3 + 4 + 5}
    assert sorted(received.values()) == [["exam1", "exam2", "exam6"],
                                         ["exam3", "exam4", "exam5"]]
    by_sex = stratified(predictions, sex_groups([1, 0, 0, 1, 1, 1, 0]), report)
    assert {g: r["n"] for g, r in by_sex.items()} == {"female": 3, "male": 4}
    with pytest.raises(ValueError, match="indexed"):
        stratified(predictions, groups.reset_index(drop=True), report)


def assert_real_png(path):
    assert path.stat().st_size > 5000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 1


def figure_cases():
    rng = np.random.default_rng(2)
    targets = (rng.random(300) < 0.3).astype(int)
    scores = np.clip(0.3 * targets + rng.normal(0.35, 0.2, 300), 0, 1)
    target_age = rng.uniform(20, 90, 300)
    predicted_age = target_age + rng.normal(0, 8, 300)
    reliability = pd.DataFrame({"bin_lower": np.arange(0, 1, 0.1),
                                "bin_upper": np.arange(0.1, 1.01, 0.1),
                                "count": [50, 40, 30, 30, 20, 20, 10, 5, 0, 1],
                                "mean_probability": [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65,
                                                     0.75, np.nan, 0.95],
                                "observed_rate": [0.02, 0.1, 0.3, 0.3, 0.5, 0.5, 0.7, 0.6,
                                                  np.nan, 1.0]})
    curves, _ = kaplan_meier(pd.DataFrame({"weeks": rng.exponential(50, 200),
                                           "event": rng.integers(0, 2, 200),
                                           "bin": rng.choice(["(0, 0.1]", "(0.1, 0.4]"], 200)}),
                             "weeks", "event", "bin")
    hazard_ratios = pd.DataFrame({"hazard_ratio": [1.79, 0.78, 1.05],
                                  "lower": [1.5, 0.65, 1.04], "upper": [2.1, 0.93, 1.06],
                                  "p_value": [1e-9, 1e-3, 1e-20]},
                                 index=["above", "below", "age"])
    return {
        "roc_pr": (plots.make_roc_pr, (scores, targets), {"label": "AF"},
                   2, ("false positive rate (1 − specificity)", "recall (sensitivity)")),
        "reliability": (plots.make_reliability, (reliability,), {},
                        2, ("", "predicted probability")),
        "scatter": (plots.make_regression_scatter, (predicted_age, target_age),
                    {"unit": "years", "name": "age"},
                    1, ("true age (years)",)),
        "bland_altman": (plots.make_bland_altman, (predicted_age, target_age),
                         {"unit": "years", "name": "age"},
                         1, ("mean of predicted and true age (years)",)),
        "kaplan_meier": (plots.make_kaplan_meier, (curves,),
                         {"time_unit": "weeks"}, 1, ("time (weeks)",)),
        "hazard_ratios": (plots.make_hazard_ratios, (hazard_ratios,),
                          {}, 1, ("hazard ratio (log scale)",)),
    }


@pytest.mark.parametrize("name", list(figure_cases()))
def test_figures_have_labelled_axes_and_save_real_pngs(name, tmp_path):
    make, args, kwargs, n_axes, xlabels = figure_cases()[name]
    figure = make(*args, **kwargs)
    assert len(figure.axes) == n_axes
    assert tuple(axes.get_xlabel() for axes in figure.axes) == xlabels
    assert figure.axes[0].get_title() and all(axes.get_ylabel() for axes in figure.axes)
    path = plots.save(figure, tmp_path / "nested" / f"{name}.png")
    assert path == tmp_path / "nested" / f"{name}.png"
    assert_real_png(path)


def test_plot_details():
    rng = np.random.default_rng(3)
    target = rng.uniform(20, 90, 100)
    figure = plots.make_regression_scatter(target + 2.0, target, "years", "age")
    assert "MAE 2 years" in figure.axes[0].get_title()
    figure = plots.make_hazard_ratios(pd.DataFrame({"hazard_ratio": [2.0], "lower": [1.5],
                                                    "upper": [2.5]}, index=["exposed"]))
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["1", "2"]
    assert [tick.get_text() for tick in axes.get_yticklabels()] == ["exposed"]
    with pytest.raises(ValueError, match="both classes"):
        plots.make_roc_pr([0.1, 0.2], [1, 1], "AF")


def test_kaplan_meier_counts_at_risk_and_censorings():
    """The curve's at_risk and censored columns against counts made here at each time."""
    from ecgexp.evaluation.survival import kaplan_meier

    table = pd.DataFrame({"t": [1.0, 2, 2, 3, 3, 5, 6], "e": [1, 0, 1, 0, 0, 1, 0],
                          "g": ["a"] * 7})
    curve = kaplan_meier(table, "t", "e", "g")[0]["a"]
    for _, row in curve.iterrows():
        assert row.at_risk == (table.t >= row.time).sum()
        assert row.censored == ((table.t == row.time) & (table.e == 0)).sum()
