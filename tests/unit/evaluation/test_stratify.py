"""``ecgexp.evaluation.stratify``: half-open age bands (every age of a published bound in
exactly one band, docs/studies.md §6 item 21), sex groups, and a report per group."""

import numpy as np
import pandas as pd
import pytest

from ecgexp.evaluation.stratify import age_bands, sex_groups, stratified


def test_every_age_falls_in_one_half_open_band():
    ages = [0, 39.9, 40, 49.99, 50, 60, 69.5, 70, 104, np.nan]
    bands = age_bands(ages)
    assert list(bands.categories) == ["[0, 40)", "[40, 50)", "[50, 60)", "[60, 70)", "≥70"]
    assert bands.ordered
    assert list(bands.astype(object)[:9]) == ["[0, 40)", "[0, 40)", "[40, 50)", "[40, 50)",
                                              "[50, 60)", "[60, 70)", "[60, 70)", "≥70", "≥70"]
    assert pd.isna(bands[9])  # a missing age stays missing


def test_closed_top_bands_and_ages_outside_them():
    bands = age_bands([18, 30, 64.9], edges=(18, 30, 65))
    assert list(bands.categories) == ["[18, 30)", "[30, 65)"]
    assert list(bands.astype(object)) == ["[18, 30)", "[30, 65)", "[30, 65)"]
    with pytest.raises(ValueError, match=r"^evaluation.stratify.age_edges: ages in \[17.0, "
                                         r"65.0\] fall outside the bands"):
        age_bands([17, 65], edges=(18, 30, 65))


@pytest.mark.parametrize("edges", [(40, 30, None), (40, 40, None), (None,), (40,)])
def test_age_edges_must_increase(edges):
    with pytest.raises(ValueError, match=r"^evaluation.stratify.age_edges: age edges must be "
                                         r"strictly increasing"):
        age_bands([50], edges=edges)


def test_sex_groups_from_is_male():
    groups = sex_groups([1, 0, True, False, None, 1.0])
    assert list(groups.categories) == ["female", "male"]
    assert list(groups.astype(object)[[0, 1, 2, 3, 5]]) == ["male", "female", "male", "female",
                                                            "male"]
    assert pd.isna(groups[4])
    with pytest.raises(ValueError, match=r"^evaluation.stratify.sex_column: is_male must be 0/1 "
                                         r"or False/True, got \['0', '2', 'M'\]"):
        sex_groups([0, 2, "M"])


def test_a_report_per_group_in_category_order_small_and_empty_groups_counted():
    predictions = pd.DataFrame({"score": [0.1, 0.9, 0.4, 0.8, 0.3, 0.2]},
                               index=[10, 11, 12, 13, 14, 15])
    groups = pd.Categorical(["b", "a", "b", None, "c", "b"], categories=["c", "b", "a", "d"])
    result = stratified(predictions, groups, lambda rows: {"n": len(rows),
                                                           "mean": rows.score.mean()})
    assert list(result) == ["c", "b", "a", "d"]
    assert result["b"] == {"n": 3, "mean": pytest.approx((0.1 + 0.4 + 0.2) / 3)}
    assert result["a"] == {"n": 1} and result["c"] == {"n": 1} and result["d"] == {"n": 0}


def test_groups_as_a_series_must_share_the_index():
    predictions = pd.DataFrame({"score": [0.1, 0.9, 0.4]}, index=[5, 6, 7])
    by_index = pd.Series(["x", "y", "x"], index=[5, 6, 7])
    result = stratified(predictions, by_index, lambda rows: {"ids": list(rows.index)})
    assert result == {"x": {"ids": [5, 7]}, "y": {"n": 1}}
    with pytest.raises(ValueError, match=r"the groups Series is not indexed like the predictions"):
        stratified(predictions, pd.Series(["x", "y", "x"]), len)
    with pytest.raises(ValueError, match=r"^evaluation.stratify: 2 group values for 3 prediction "
                                         r"rows$"):
        stratified(predictions, ["x", "y"], len)
