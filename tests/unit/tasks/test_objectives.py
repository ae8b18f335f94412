"""Losses, training-split weights, predictions and the contract members of the task
objectives, against hand computations on tiny tensors (docs/studies.md §2.2 age weights, §2.4
AF class weights, §2.5 electrolyte variants).

Every expected number is written out here (or computed with plain arithmetic in the test);
``ln`` of small integers keeps the hand cross-entropies exact.
"""

import json
import math
from math import log as ln

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ecgexp.errors import PACKAGE_DIR, UserError
from ecgexp.evaluation.analyses import ANALYSES
from ecgexp.models.heads import HEADS
from ecgexp.tasks.loss_weights import inverse_frequency_weights
from ecgexp.tasks.multiclass import MultiClass
from ecgexp.tasks.objectives import Binary, MultiLabel, Objective
from ecgexp.tasks.regression import (
    BucketClassification,
    Buckets,
    GaussianRegression,
    Ordinal,
    Regression,
)

E = math.e
AGES = [20, 20, 30, 40, 40, 40]  # counts 2, 1, 3


def column(*values) -> torch.Tensor:
    """A ``(batch, 1)`` float64 target/output column."""
    return torch.tensor(values, dtype=torch.float64)[:, None]


def rows(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def fitted(objective, *targets):
    objective.fit(np.array(targets, dtype=float)[:, None])
    return objective


# --- inverse_frequency_weights (docs/studies.md §2.2 compute_weights) ----------------------------

def test_inverse_frequency_weights_are_one_over_count_rescaled_to_mean_one():
    # 1/count per exam: 1/2, 1/2, 1, 1/3, 1/3, 1/3 (sum 3); times 6/3 = 2 -> mean 1.
    distinct, weights = inverse_frequency_weights(np.array(AGES))
    np.testing.assert_array_equal(distinct, [20, 30, 40])
    np.testing.assert_allclose(weights, [1.0, 2.0, 2 / 3])
    per_exam = np.array([1.0, 1.0, 2.0, 2 / 3, 2 / 3, 2 / 3])
    assert per_exam.mean() == pytest.approx(1.0)


def test_inverse_frequency_weights_clip_at_max_weight_then_rescale():
    # Clip 2 -> 1.5: per exam 1, 1, 1.5, 2/3 x3 (sum 5.5); times 6/5.5 = 12/11.
    _, weights = inverse_frequency_weights(np.array(AGES), max_weight=1.5)
    np.testing.assert_allclose(weights, [12 / 11, 18 / 11, 8 / 11])


def test_inverse_frequency_weights_reject_max_weight_below_one():
    with pytest.raises(ValueError, match="max_weight"):
        inverse_frequency_weights(np.array(AGES), max_weight=0.5)


# --- Regression --------------------------------------------------------------------------------

def test_regression_exact_value_loss_is_weighted_mean_squared_error():
    objective = fitted(Regression("age", weighting="exact_value"), *AGES)
    # weights 20 -> 1, 30 -> 2, 40 -> 2/3; errors^2 4, 9, 0.25 -> (4 + 18 + 1/6) / 3.
    loss = objective.loss(column(22.0, 27.0, 40.5), column(20.0, 30.0, 40.0))
    assert loss.item() == pytest.approx((4 + 18 + 1 / 6) / 3)


def test_regression_exact_value_unseen_value_takes_closest_training_weight():
    objective = fitted(Regression("age", weighting="exact_value"), *AGES)
    weights = objective.sample_weights(rows(33.0, 37.0, 10.0, 95.0, 20.4))
    np.testing.assert_allclose(weights.numpy(), [2.0, 2 / 3, 1.0, 2 / 3, 1.0])


def test_regression_exact_value_state_holds_the_lookup_table():
    state = fitted(Regression("age", weighting="exact_value"), *AGES).state
    assert state["sample_weights"]["values"] == [20.0, 30.0, 40.0]
    np.testing.assert_allclose(state["sample_weights"]["weights"], [1.0, 2.0, 2 / 3])


def test_regression_standardise_uses_training_mean_and_population_std():
    objective = fitted(Regression("age", standardise=True), 30.0, 40.0)
    # mean 35, std (ddof=0) 5: targets 30, 45 -> z = -1, 2; errors^2 2.25, 1.
    assert objective.state["mean"] == pytest.approx(35.0)
    assert objective.state["std"] == pytest.approx(5.0)
    loss = objective.loss(column(0.5, 1.0), column(30.0, 45.0))
    assert loss.item() == pytest.approx((2.25 + 1.0) / 2)


def test_regression_standardise_std_is_numpy_ddof_zero():
    # 20, 30, 40, 50: mean 35, population variance (225 + 25 + 25 + 225) / 4 = 125.
    state = fitted(Regression("age", standardise=True), 20.0, 30.0, 40.0, 50.0).state
    assert state["std"] == pytest.approx(math.sqrt(125.0))


def test_regression_standardise_predict_maps_outputs_back_to_years():
    objective = fitted(Regression("age", standardise=True), 30.0, 40.0)
    predicted = objective.predict(column(0.0, 1.0, -2.0))
    np.testing.assert_allclose(predicted.numpy(), [[35.0], [40.0], [25.0]])


def test_regression_log_transform_loss_is_on_the_log_scale():
    objective = fitted(Regression("k", log_transform=True), 1.0, 2.0)
    # log e = 1, log e^3 = 3; outputs 1, 1 -> errors^2 0, 4.
    loss = objective.loss(column(1.0, 1.0), column(E, E**3))
    assert loss.item() == pytest.approx(2.0)


def test_regression_log_transform_with_standardise_round_trip():
    objective = fitted(Regression("k", log_transform=True, standardise=True), 1.0, E**2)
    # logs 0, 2 -> mean 1, std 1; e^3 -> z = (3 - 1) / 1 = 2.
    assert objective.transform(rows(E**3)).item() == pytest.approx(2.0)
    assert objective.predict(column(2.0)).item() == pytest.approx(E**3)
    targets = rows(1.5, 4.0, 7.25)
    back = objective.predict(objective.transform(targets)[:, None])[:, 0]
    np.testing.assert_allclose(back.numpy(), targets.numpy())


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_regression_log_transform_rejects_non_positive_training_values(bad):
    with pytest.raises(ValueError, match="log_transform"):
        fitted(Regression("k", log_transform=True), 4.0, bad)


def test_regression_gap_column_is_predicted_minus_target():
    objective = Regression("age", gap_column="age_gap")
    table = pd.DataFrame({"predicted_age": [50.0, 40.0], "target_age": [45.0, 48.0]})
    table = objective.add_derived_columns(table)
    assert table["age_gap"].tolist() == [5.0, -8.0]


def test_regression_without_gap_column_adds_nothing():
    table = pd.DataFrame({"predicted_age": [50.0], "target_age": [45.0]})
    assert list(Regression("age").add_derived_columns(table).columns) == [
        "predicted_age", "target_age"]


def test_regression_bucket_weights_are_inverse_bucket_frequency_right_false():
    # Edges 3.5, 5.5: 3.0 -> bucket 0; 3.5, 4.0, 5.0 -> bucket 1 (3.5 on the edge goes up);
    # bucket 2 is absent. Per exam 1, 1/3 x3 (sum 2) times 4/2 -> bucket 0: 2, bucket 1: 2/3.
    objective = fitted(Regression("k", weighting="buckets", buckets=[3.5, 5.5]),
                       3.0, 3.5, 4.0, 5.0)
    np.testing.assert_allclose(objective.state["bucket_weights"], [2.0, 2 / 3, 1.0])


def test_regression_bucket_weighted_loss_by_hand():
    objective = fitted(Regression("k", weighting="buckets", buckets=[3.5, 5.5]),
                       3.0, 3.5, 4.0, 5.0)
    # weights 2 (3.0), 1 (5.5, unseen bucket 2), 2/3 (4.0); errors^2 0.25, 0.25, 0.
    loss = objective.loss(column(3.5, 5.0, 4.0), column(3.0, 5.5, 4.0))
    assert loss.item() == pytest.approx((2 * 0.25 + 1 * 0.25 + 0.0) / 3)


@pytest.mark.parametrize("options", [{"standardise": True}, {"weighting": "exact_value"},
                                     {"weighting": "buckets", "buckets": [1.0]}])
def test_regression_loss_before_fit_raises(options):
    with pytest.raises(RuntimeError, match="fit"):
        Regression("age", **options).loss(column(0.0), column(40.0))


def test_regression_rejects_unknown_weighting():
    with pytest.raises(ValueError, match="weighting"):
        Regression("age", weighting="inverse")


# --- GaussianRegression ------------------------------------------------------------------------

def test_gaussian_loss_by_hand_without_standardise():
    objective = GaussianRegression("k", standardise=False)
    outputs = rows([1.0, 0.0], [1.0, ln(2)], [0.5, -1.0])
    # exp(-logvar) (z - mu)^2 + logvar: 1*1 + 0; 4/2 + ln 2; e * 0.25 - 1.
    expected = (1.0 + (2.0 + ln(2)) + (E * 0.25 - 1.0)) / 3
    loss = objective.loss(outputs, column(2.0, 3.0, 0.0))
    assert loss.item() == pytest.approx(expected)


def test_gaussian_loss_by_hand_with_standardise():
    objective = fitted(GaussianRegression("k"), 30.0, 40.0)  # mean 35, std 5
    # 45 -> z 2, mu 1, logvar 0: 1; 30 -> z -1, mu 0, logvar ln 4: 1/4 + ln 4.
    loss = objective.loss(rows([1.0, 0.0], [0.0, ln(4)]), column(45.0, 30.0))
    assert loss.item() == pytest.approx((1.0 + 0.25 + ln(4)) / 2)


def test_gaussian_loss_is_not_clamped_small_losses_keep_their_gradient():
    # docs/studies.md §6.11: the published clamp(loss, 10000) set a minimum and stopped learning.
    objective = GaussianRegression("k", standardise=False)
    outputs = rows([2.0, -2.0], [3.0, -2.0]).requires_grad_()
    loss = objective.loss(outputs, column(2.0, 3.0))
    assert loss.item() == pytest.approx(-2.0)
    loss.backward()
    # d/dlogvar of (exp(-lv) * 0 + lv) / 2 is 1/2; the mean head's gradient is 0 at the target.
    np.testing.assert_allclose(outputs.grad.numpy(), [[0.0, 0.5], [0.0, 0.5]])


def test_gaussian_predict_columns_are_value_mean_std_in_target_units():
    objective = fitted(GaussianRegression("k"), 30.0, 40.0)  # mean 35, std 5
    assert objective.prediction_columns == ["predicted_k", "mean_k", "std_k"]
    # mean 1 * 5 + 35 = 40; std exp(ln 4 / 2) * 5 = 10.
    predicted = objective.predict(rows([1.0, ln(4)], [-1.0, 0.0]))
    np.testing.assert_allclose(predicted.numpy(), [[40.0, 40.0, 10.0], [30.0, 30.0, 5.0]])


def test_gaussian_log_transform_value_is_exp_of_mean():
    objective = fitted(GaussianRegression("k", log_transform=True), 1.0, E**2)
    # log scale: mean 1, std 1; output mean 1 -> 2 on the log scale, value e^2; std 2 * 1.
    predicted = objective.predict(rows([1.0, ln(4)]))
    np.testing.assert_allclose(predicted.numpy(), [[E**2, 2.0, 2.0]])


# --- Buckets -----------------------------------------------------------------------------------

def test_buckets_classes_follow_digitize_right_false_on_the_edges():
    buckets = Buckets([3.5, 5.5])
    values = [3.49, 3.5, 4.5, 5.49, 5.5, 7.0]
    classes = buckets.classes(torch.tensor(values))
    assert classes.tolist() == [0, 1, 1, 1, 2, 2]
    assert classes.tolist() == np.digitize(values, [3.5, 5.5], right=False).tolist()


def test_buckets_values_are_outer_edges_and_inner_midpoints():
    assert Buckets([3.5, 5.5]).values == [3.5, 4.5, 5.5]
    assert Buckets([1.0, 2.0, 4.0]).values == [1.0, 1.5, 3.0, 4.0]
    assert Buckets([5.0]).values == [5.0, 5.0]
    assert Buckets([3.5, 5.5]).value_of(torch.tensor([0, 2, 1])).tolist() == [3.5, 5.5, 4.5]


@pytest.mark.parametrize("edges", [[5.5, 3.5], [3.5, 3.5], [], None])
def test_buckets_reject_missing_or_non_increasing_edges(edges):
    with pytest.raises(ValueError, match="buckets"):
        Buckets(edges)


# --- BucketClassification ----------------------------------------------------------------------

@pytest.mark.parametrize(("edges", "outputs"), [([3.5], 1), ([3.5, 5.5], 3),
                                                ([1.0, 2.0, 3.0], 4)])
def test_bucket_classification_n_outputs(edges, outputs):
    assert BucketClassification("k", edges).n_outputs == outputs


def test_bucket_classification_prediction_columns():
    assert BucketClassification("k", [3.5, 5.5]).prediction_columns == [
        "predicted_k", "prob_bucket0", "prob_bucket1", "prob_bucket2"]


def test_bucket_classification_single_edge_is_binary_cross_entropy():
    objective = BucketClassification("k", [5.0])
    # 4.0 -> 0, 6.0 -> 1, 5.0 -> 1; -log(1 - s(0)) = ln 2, -log s(2), -log s(-1).
    expected = (ln(2) + ln(1 + math.exp(-2)) + ln(1 + E)) / 3
    loss = objective.loss(column(0.0, 2.0, -1.0), column(4.0, 6.0, 5.0))
    assert loss.item() == pytest.approx(expected)


def test_bucket_classification_binary_class_weights_scale_the_positives():
    objective = fitted(BucketClassification("k", [5.0], class_weights=[1.0, 3.0]), 4.0, 6.0)
    expected = (ln(2) + 3 * ln(1 + math.exp(-2)) + 3 * ln(1 + E)) / 3
    loss = objective.loss(column(0.0, 2.0, -1.0), column(4.0, 6.0, 5.0))
    assert loss.item() == pytest.approx(expected)


def test_bucket_classification_cross_entropy_by_hand():
    objective = BucketClassification("k", [3.5, 5.5])
    logits = rows([0.0, 0.0, 0.0], [ln(2), 0.0, 0.0], [0.0, ln(3), 0.0])
    # classes 0, 0, 2: -log(1/3), -log(2/4), -log(1/5).
    loss = objective.loss(logits, column(3.0, 2.0, 6.0))
    assert loss.item() == pytest.approx((ln(3) + ln(2) + ln(5)) / 3)


def test_bucket_classification_auto_class_weights_are_n_max_over_n_c():
    # classes 0, 1, 1, 1, 2, 1 (3.5 on the edge -> 1): counts 1, 4, 1 -> 4, 1, 4.
    objective = fitted(BucketClassification("k", [3.5, 5.5], class_weights="auto"),
                       3.0, 4.0, 4.5, 5.0, 6.0, 3.5)
    assert objective.state["class_weights"] == [4.0, 1.0, 4.0]


def test_bucket_classification_weighted_cross_entropy_by_hand():
    objective = fitted(BucketClassification("k", [3.5, 5.5], class_weights="auto"),
                       3.0, 4.0, 4.5, 5.0, 6.0, 3.5)
    logits = rows([0.0, 0.0, 0.0], [ln(2), 0.0, 0.0], [0.0, ln(3), 0.0])
    # classes 0, 1, 2 (weights 4, 1, 4): nll ln 3, ln 4, ln 5; sum w * nll / sum w.
    expected = (4 * ln(3) + 1 * ln(4) + 4 * ln(5)) / (4 + 1 + 4)
    loss = objective.loss(logits, column(3.0, 4.0, 6.0))
    assert loss.item() == pytest.approx(expected)


def test_bucket_classification_auto_class_weights_need_every_class():
    objective = BucketClassification("k", [3.5, 5.5], class_weights="auto")
    with pytest.raises(ValueError, match="class index 2"):
        fitted(objective, 3.0, 4.0)


def test_bucket_classification_predict_is_argmax_value_then_probabilities():
    objective = BucketClassification("k", [3.5, 5.5])
    predicted = objective.predict(rows([0.0, ln(3), 0.0], [ln(8), 0.0, ln(2)]))
    # softmax: [1, 3, 1] / 5 -> class 1 (4.5); [8, 1, 2] / 11 -> class 0 (3.5).
    np.testing.assert_allclose(predicted.numpy(), [[4.5, 0.2, 0.6, 0.2],
                                                   [3.5, 8 / 11, 1 / 11, 2 / 11]])


def test_bucket_classification_binary_predict():
    predicted = BucketClassification("k", [5.0]).predict(column(ln(3)))
    np.testing.assert_allclose(predicted.numpy(), [[5.0, 0.25, 0.75]])


# --- Ordinal (CORAL) ---------------------------------------------------------------------------

def test_ordinal_levels_encoding_for_four_classes():
    objective = Ordinal("k", [1.0, 2.0, 3.0])
    assert objective.n_outputs == 3
    levels = objective.levels(rows(0.5, 1.0, 2.5, 3.0, 9.0))
    assert levels.tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]]


def test_ordinal_loss_sums_bce_over_levels_and_averages_over_batch():
    objective = Ordinal("k", [1.0, 2.0, 3.0])
    logits = rows([0.0, 0.0, 0.0], [ln(3), -ln(3), 0.0])
    # 2.5 -> [1, 1, 0]: 3 ln 2. 0.5 -> [0, 0, 0]: -log(1 - s(x)) = ln(1 + e^x) per level.
    first = 3 * ln(2)
    second = ln(1 + 3) + ln(1 + 1 / 3) + ln(2)
    loss = objective.loss(logits, column(2.5, 0.5))
    assert loss.item() == pytest.approx((first + second) / 2)


def test_ordinal_predicted_class_counts_sigmoids_above_one_half():
    objective = Ordinal("k", [1.0, 2.0, 3.0])
    logits = rows([2.0, 1.0, -1.0], [-1.0, -2.0, -3.0], [3.0, 2.0, 1.0], [1.0, 0.0, 0.0])
    # s(0) = 0.5 is not above 0.5.
    assert objective.predicted_classes(logits).tolist() == [2, 0, 3, 1]


def test_ordinal_predict_maps_class_to_bucket_value_then_sigmoids():
    objective = Ordinal("k", [1.0, 2.0, 3.0])
    assert objective.prediction_columns == ["predicted_k", "prob_above0", "prob_above1",
                                            "prob_above2"]
    predicted = objective.predict(rows([ln(3), 0.0, -ln(3)], [ln(3), ln(3), ln(3)]))
    # values 1, 1.5, 2.5, 3 per class 0..3: class 1 -> 1.5, class 3 -> 3.
    np.testing.assert_allclose(predicted.numpy(), [[1.5, 0.75, 0.5, 0.25],
                                                   [3.0, 0.75, 0.75, 0.75]])


# --- MultiLabel / Binary -----------------------------------------------------------------------

def test_multilabel_auto_pos_weight_is_negatives_over_positives_per_label():
    objective = MultiLabel(["a", "b"], pos_weight="auto")
    objective.fit(np.array([[1, 1], [0, 1], [0, 0], [0, 0]]))
    assert objective.state == {"pos_weight": {"a": 3.0, "b": 1.0}}


def test_multilabel_number_pos_weight_broadcasts():
    objective = MultiLabel(["a", "b"], pos_weight=2.5)
    objective.fit(np.array([[1, 0], [0, 1]]))
    assert objective.state == {"pos_weight": {"a": 2.5, "b": 2.5}}


def test_multilabel_list_pos_weight_is_per_label():
    objective = MultiLabel(["a", "b"], pos_weight=[1.0, 4.0])
    objective.fit(np.array([[1, 0], [0, 1]]))
    assert objective.state == {"pos_weight": {"a": 1.0, "b": 4.0}}


def test_multilabel_weighted_bce_by_hand():
    objective = MultiLabel(["a", "b"], pos_weight="auto")
    objective.fit(np.array([[1, 1], [0, 1], [0, 0], [0, 0]]))  # pos_weight 3, 1
    logits = rows([0.0, ln(3)], [-ln(3), 0.0])
    targets = rows([1.0, 0.0], [0.0, 1.0])
    # -3 log s(0) = 3 ln 2; -log(1 - s(ln 3)) = ln 4; -log(1 - s(-ln 3)) = ln 4/3; ln 2.
    expected = (3 * ln(2) + ln(4) + ln(4 / 3) + ln(2)) / 4
    assert objective.loss(logits, targets).item() == pytest.approx(expected)


def test_multilabel_weighted_bce_matches_the_formula():
    objective = MultiLabel(["a", "b", "c"], pos_weight=[0.5, 2.0, 7.0])
    objective.fit(np.zeros((1, 3)))
    logits = rows([1.2, -0.3, 2.5], [-2.0, 0.7, -0.1])
    targets = rows([1.0, 0.0, 1.0], [0.0, 1.0, 1.0])
    pw = rows(0.5, 2.0, 7.0)
    s = torch.sigmoid(logits)
    expected = -(pw * targets * torch.log(s) + (1 - targets) * torch.log(1 - s)).mean()
    assert objective.loss(logits, targets).item() == pytest.approx(expected.item())


def test_multilabel_without_pos_weight_needs_no_fit():
    objective = MultiLabel(["a"])
    assert objective.loss(column(0.0), column(1.0)).item() == pytest.approx(ln(2))


def test_multilabel_rejects_unknown_pos_weight_string():
    with pytest.raises(ValueError, match="pos_weight"):
        MultiLabel(["a"], pos_weight="bad")


def test_multilabel_auto_pos_weight_without_positive_raises():
    objective = MultiLabel(["a", "b"], pos_weight="auto")
    with pytest.raises(ValueError, match="no positive"):
        objective.fit(np.array([[1, 0], [0, 0]]))


def test_binary_auto_pos_weight_and_loss():
    objective = Binary("chagas", pos_weight="auto")
    objective.fit(np.array([[1], [0], [0], [0], [0]]))
    assert objective.state == {"pos_weight": {"chagas": 4.0}}
    # -4 log s(0) = 4 ln 2; -log(1 - s(0)) = ln 2.
    loss = objective.loss(column(0.0, 0.0), column(1.0, 0.0))
    assert loss.item() == pytest.approx((4 * ln(2) + ln(2)) / 2)
    assert objective.prediction_columns == ["score_chagas"]


def test_binary_auto_pos_weight_loss_before_fit_raises():
    with pytest.raises(RuntimeError, match="fit"):
        Binary("chagas", pos_weight="auto").loss(column(0.0), column(1.0))


# --- AF risk: the MultiClass configuration of ecgexp/conf/task/af_risk.yaml ------------------

AF_CONTRAST = {"class3_vs_1": {"positive": 3, "negative": 1}}


def af_risk(**options) -> MultiClass:
    """AF risk as its task config sets it up: classes 1, 2, 3 and the contrast 3 vs 1."""
    return MultiClass("exam_class", classes=[1, 2, 3], contrasts=AF_CONTRAST, **options)


def test_af_risk_config_instantiates_the_multiclass_objective():
    config = OmegaConf.load(PACKAGE_DIR / "conf" / "task" / "af_risk.yaml")
    objective = instantiate(config.objective)
    assert isinstance(objective, MultiClass)
    assert objective.target_columns == ["exam_class"]
    assert objective.classes == [1.0, 2.0, 3.0]
    assert objective.class_weights is None
    contrast = objective.contrasts["class3_vs_1"]
    assert (contrast.positive, contrast.negative) == (2, 0)  # indices of classes 3 and 1
    assert (contrast.event_time, contrast.censor_time, contrast.time_unit) == (
        "weeks_to_first_af", "weeks_to_last_exam", "weeks")
    assert objective.analyses == ("classes", "strata", "contrast_survival")


def test_af_risk_class_numbers_map_to_indices():
    assert af_risk().class_index(column(1.0, 2.0, 3.0, 2.0)).tolist() == [0, 1, 2, 1]


def test_af_risk_cross_entropy_by_hand():
    # class 1 with [0, 0, 0]: ln 3; class 3 with [0, 0, ln 3]: -log(3/5).
    loss = af_risk().loss(rows([0.0, 0.0, 0.0], [0.0, 0.0, ln(3)]), column(1.0, 3.0))
    assert loss.item() == pytest.approx((ln(3) + ln(5 / 3)) / 2)


def test_af_risk_auto_class_weights_are_n_max_over_n_c():
    objective = fitted(af_risk(class_weights="auto"), 1, 1, 1, 1, 2, 3, 3)  # counts 4, 1, 2
    assert objective.state == {"class_weights": [1.0, 4.0, 2.0]}


def test_af_risk_weighted_cross_entropy_by_hand():
    objective = fitted(af_risk(class_weights="auto"), 1, 1, 1, 1, 2, 3, 3)  # weights 1, 4, 2
    logits = rows([0.0, 0.0, 0.0], [0.0, ln(2), 0.0], [0.0, 0.0, ln(3)])
    # nll ln 3, -log(2/4) = ln 2, ln 5/3.
    expected = (1 * ln(3) + 4 * ln(2) + 2 * ln(5 / 3)) / (1 + 4 + 2)
    assert objective.loss(logits, column(1.0, 2.0, 3.0)).item() == pytest.approx(expected)


@pytest.mark.parametrize("bad", [0.0, 4.0])
def test_af_risk_rejects_targets_outside_classes_1_to_3(bad):
    with pytest.raises(UserError, match=r"task\.objective\.classes: 'exam_class' holds "
                                        rf"\[{bad}\]"):
        af_risk().loss(rows([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]), column(1.0, bad))


def test_af_risk_prediction_columns_and_softmax():
    objective = af_risk()
    assert objective.prediction_columns == ["prob_class1", "prob_class2", "prob_class3"]
    probabilities = objective.predict(rows([0.0, ln(2), ln(5)]))
    np.testing.assert_allclose(probabilities.numpy(), [[1 / 8, 2 / 8, 5 / 8]])


# --- the contract every objective keeps (ecgexp.tasks.objectives.Objective) ---------------------

CONTRACT = {
    "multilabel": (lambda: MultiLabel(["a", "b"]), "linear", ["score_a", "score_b"],
                   ["score_a", "score_b"], ("binary", "strata"), ""),
    "binary": (lambda: Binary("chagas"), "linear", ["score_chagas"], ["score_chagas"],
               ("binary", "strata"), ""),
    "regression": (lambda: Regression("age", units="years"), "linear", ["predicted_age"],
                   ["predicted_age"], ("regression", "strata"), "years"),
    "regression_gap": (lambda: Regression("age", gap_column="age_gap", units="years"),
                       "linear", ["predicted_age"], ["predicted_age"],
                       ("regression", "strata", "mortality"), "years"),
    "gaussian": (lambda: GaussianRegression("k", units="mmol/L"), "gaussian",
                 ["mean_k", "log_variance_k"], ["predicted_k", "std_k"],
                 ("regression", "strata"), "mmol/L"),
    "classification": (lambda: BucketClassification("k", [3.5, 5.5], units="mmol/L"),
                       "linear", ["prob_bucket0", "prob_bucket1", "prob_bucket2"],
                       ["prob_bucket0", "prob_bucket1", "prob_bucket2"],
                       ("regression", "strata"), "mmol/L"),
    "classification_binary": (lambda: BucketClassification("k", [5.0]), "linear",
                              ["prob_bucket1"], ["prob_bucket1"], ("regression", "strata"), ""),
    "ordinal": (lambda: Ordinal("k", [1.0, 2.0, 3.0], units="mmol/L"), "coral",
                ["prob_above0", "prob_above1", "prob_above2"],
                ["prob_above0", "prob_above1", "prob_above2"], ("regression", "strata"),
                "mmol/L"),
    "multiclass": (lambda: MultiClass("grade", [0, 5, 10, 20]), "linear",
                   ["prob_class0", "prob_class5", "prob_class10", "prob_class20"],
                   ["prob_class0", "prob_class5", "prob_class10", "prob_class20"],
                   ("classes", "strata"), ""),
    "af_risk": (af_risk, "linear", ["prob_class1", "prob_class2", "prob_class3"],
                ["prob_class1", "prob_class2", "prob_class3"], ("classes", "strata"), ""),
    "af_risk_survival": (
        lambda: MultiClass("exam_class", [1, 2, 3], contrasts={"class3_vs_1": {
            "positive": 3, "negative": 1, "event_time": "weeks_to_first_af",
            "censor_time": "weeks_to_last_exam", "time_unit": "weeks"}}),
        "linear", ["prob_class1", "prob_class2", "prob_class3"],
        ["prob_class1", "prob_class2", "prob_class3"],
        ("classes", "strata", "contrast_survival"), ""),
}


@pytest.mark.parametrize("name", list(CONTRACT))
def test_contract_members(name):
    make, head, output_names, output_columns, analyses, units = CONTRACT[name]
    objective = make()
    assert isinstance(objective, Objective)
    assert objective.head == head
    assert objective.head in HEADS
    assert objective.output_names == output_names
    assert objective.output_columns == output_columns
    assert objective.analyses == analyses
    assert set(objective.analyses) <= set(ANALYSES)
    assert objective.units == units


@pytest.mark.parametrize("name", list(CONTRACT))
def test_contract_shapes_agree_with_the_network_width(name):
    objective = CONTRACT[name][0]()
    # The network's width: n_outputs per head branch; the gaussian head has two branches.
    width = objective.n_outputs * (2 if objective.head == "gaussian" else 1)
    assert len(objective.output_names) == len(objective.output_columns) == width
    assert set(objective.output_columns) <= set(objective.prediction_columns)
    if getattr(objective, "standardise", False):  # GaussianRegression's default
        objective.fit(np.array([[3.0], [5.0]]))
    predicted = objective.predict(torch.zeros(3, width, dtype=torch.float64))
    assert predicted.shape == (3, len(objective.prediction_columns))


def test_gaussian_output_names_follow_the_target_column_with_standardise():
    objective = fitted(GaussianRegression("potassium", log_transform=True), 3.0, 5.0)
    assert objective.output_names == ["mean_potassium", "log_variance_potassium"]
    assert objective.predict(rows([0.0, 0.0])).shape == (1, len(objective.prediction_columns))


def test_units_default_to_empty_for_continuous_objectives():
    for objective in (Regression("age"), GaussianRegression("k"), Ordinal("k", [1.0]),
                      BucketClassification("k", [1.0])):
        assert objective.units == ""


def test_analyses_added_per_instance_leave_the_class_default_alone():
    Regression("age", gap_column="age_gap")
    CONTRACT["af_risk_survival"][0]()
    assert Regression("age").analyses == ("regression", "strata")
    assert MultiClass.analyses == ("classes", "strata")
    assert af_risk().analyses == ("classes", "strata")


def test_objective_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Objective(["a"])


def test_objective_subclass_missing_a_verb_is_abstract():
    class NoEvaluate(Objective):
        n_outputs = 1
        prediction_columns = ["score_a"]

        def loss(self, outputs, targets):
            return outputs.sum()

        def predict(self, outputs):
            return outputs

        def metrics(self):
            return None

    with pytest.raises(TypeError, match="evaluate"):
        NoEvaluate(["a"])


def test_objective_needs_a_target_column():
    with pytest.raises(UserError, match="at least one target column"):
        MultiLabel([])


def test_default_thresholds_are_empty():
    assert Regression("age").thresholds({"val": {"age": {"mae": 1.0}}}) == {}


def test_multilabel_thresholds_are_each_labels_report_threshold():
    report = {"val": {"a": {"auroc": 0.8, "threshold": 0.3},
                      "b": {"auroc": 0.7, "threshold": 0.6},
                      "macro": {"auroc": 0.75}},
              "test": {"a": {"threshold": 0.3}, "b": {"threshold": 0.6}}}
    assert MultiLabel(["a", "b"]).thresholds(report) == {"a": 0.3, "b": 0.6}


def test_multilabel_thresholds_from_a_real_report():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    targets = np.array([1, 0, 1, 1, 0, 0, 1, 0])  # max F1 (3/4) at 0.6
    table = pd.DataFrame({"score_a": scores, "target_a": targets,
                          "score_b": 1 - scores, "target_b": 1 - targets})
    objective = MultiLabel(["a", "b"])
    report = objective.evaluate({"val": table, "test": table})
    thresholds = objective.thresholds(report)
    assert set(thresholds) == {"a", "b"}
    assert thresholds["a"] == pytest.approx(0.6)
    assert thresholds == {label: report["val"][label]["threshold"] for label in ("a", "b")}


def test_binary_thresholds_follow_the_first_threshold_rule():
    report = {"val": {"chagas": {"auroc": 0.9}, "max_f1": {"threshold": 0.4},
                      "youden": {"threshold": 0.2}, "specificity_90": {"threshold": 0.7}}}
    assert Binary("chagas").thresholds(report) == {"chagas": 0.4}
    assert Binary("chagas", threshold_rules=["youden", "max_f1"]).thresholds(report) == {
        "chagas": 0.2}
    assert Binary("chagas", threshold_rules=[]).thresholds(report) == {}


def test_binary_thresholds_from_a_real_report():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    targets = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    table = pd.DataFrame({"score_chagas": scores, "target_chagas": targets})
    objective = Binary("chagas", threshold_rules=["specificity_75", "max_f1"])
    report = objective.evaluate({"val": table})
    # specificity 0.75: the first ROC point with fpr 0.25 is at 0.8 (tests of the rules).
    assert objective.thresholds(report) == {"chagas": pytest.approx(0.8)}


# --- state round trip (checkpoints) ------------------------------------------------------------

ROUND_TRIPS = {
    "regression": (lambda: Regression("age", standardise=True, weighting="exact_value"),
                   [[20.0], [20.0], [30.0], [40.0]], column(0.3, -1.0), column(25.0, 40.0)),
    "regression_buckets": (lambda: Regression("k", weighting="buckets", buckets=[3.5, 5.5]),
                           [[3.0], [4.0], [4.5]], column(3.2, 4.1), column(3.0, 4.4)),
    "gaussian": (lambda: GaussianRegression("k", log_transform=True),
                 [[3.0], [4.0], [6.0]], rows([0.1, 0.2], [-0.5, 1.0]), column(4.2, 3.3)),
    "classification": (lambda: BucketClassification("k", [3.5, 5.5], class_weights="auto"),
                       [[3.0], [4.0], [4.5], [6.0]], rows([0.1, 0.5, -0.2], [1.0, 0.0, 2.0]),
                       column(3.0, 6.0)),
    "multilabel": (lambda: MultiLabel(["a", "b"], pos_weight="auto"),
                   [[1, 0], [0, 1], [0, 0]], rows([0.3, -0.1], [2.0, 0.4]),
                   rows([1.0, 0.0], [0.0, 1.0])),
    "af_risk": (lambda: af_risk(class_weights="auto"), [[1], [2], [3], [1]],
                rows([0.1, 0.5, -0.2], [1.0, 0.0, 2.0]), column(2.0, 3.0)),
    "multiclass": (lambda: MultiClass("grade", [0, 5, 10, 20], class_weights="auto"),
                   [[0], [5], [10], [20], [20], [0], [20]],
                   rows([0.1, 0.5, -0.2, 0.3], [1.0, 0.0, 2.0, -1.0]), column(10.0, 20.0)),
}


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_fitted_state_loaded_into_a_fresh_objective_gives_the_same_loss(name):
    make, training, outputs, targets = ROUND_TRIPS[name]
    trained = make()
    state = trained.fit(np.array(training, dtype=float))
    assert state  # every case above has fitted statistics
    restored = make()
    restored.load_state(json.loads(json.dumps(state)))  # plain numbers only
    assert restored.loss(outputs, targets).item() == trained.loss(outputs, targets).item()
    torch.testing.assert_close(restored.predict(outputs), trained.predict(outputs))
