"""The time-to-event objectives: the discrete-time likelihood and survival curves against hand
computations, its maximum-likelihood fit against the closed-form life table, the Cox
objective's wiring, the AF time-to-event targets from a hand-made timeline, and config
errors by their text."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ecgexp.errors import UserError
from ecgexp.tasks.cox import cox_partial_log_likelihood
from ecgexp.tasks.survival import CoxSurvival, DiscreteTimeSurvival
from ecgexp.tasks.target_builders import af_time_to_event

CUTS = [0, 1, 2, 4]  # intervals [0, 1), [1, 2), [2, 4)


def discrete(**kwargs):
    return DiscreteTimeSurvival("timey", "death", CUTS, **{"horizons": [1, 3], **kwargs})


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_discrete_time_likelihood_by_hand():
    objective = discrete()
    logits = torch.tensor([[0.2, -0.5, 1.0], [-1.0, 0.3, 0.0], [0.5, 0.5, -0.2],
                           [0.1, 0.1, 0.1]])
    # exam 0: event at 1.5 (interval 1); exam 1: censored at 1.2 (first half of interval 1:
    # survives interval 0 only); exam 2: censored at 3.5 (second half of [2, 4): survives all
    # three); exam 3: event at 5 (after the last cut: survives all three).
    targets = torch.tensor([[1.5, 1.0], [1.2, 0.0], [3.5, 0.0], [5.0, 1.0]])
    h = [[sigmoid(v) for v in row] for row in logits.tolist()]
    nll = [-(math.log(1 - h[0][0]) + math.log(h[0][1])),
           -math.log(1 - h[1][0]),
           -sum(math.log(1 - v) for v in h[2]),
           -sum(math.log(1 - v) for v in h[3])]
    assert objective.loss(logits, targets).item() == pytest.approx(np.mean(nll), rel=1e-6)


def test_discrete_time_survival_curve_by_hand():
    objective = discrete()
    logits = torch.tensor([[0.2, -0.5, 1.0]])
    h = [sigmoid(v) for v in (0.2, -0.5, 1.0)]
    s1 = 1 - h[0]
    s3 = s1 * (1 - h[1]) * (1 - h[2]) ** 0.5  # halfway through [2, 4): constant hazard rate
    predicted = objective.predict(logits)[0].tolist()
    assert objective.prediction_columns == ["risk_score", "survival_at_1", "survival_at_3"]
    assert predicted == pytest.approx([1 - s3, s1, s3], rel=1e-6)  # risk: 1 - S(last horizon)


def test_discrete_time_fit_is_the_life_table():
    """One set of logits shared by every exam, fitted by maximum likelihood, gives the
    life-table hazards d_k / (exams entering interval k - censored in its first half)."""
    rng = np.random.default_rng(0)
    n = 400
    event_time = rng.exponential(2.5, n)
    censoring = rng.uniform(0, 5, n)
    time = np.minimum(event_time, censoring)
    event = (event_time <= censoring).astype(float)
    expected = []
    for a, b in zip(CUTS, CUTS[1:]):
        entering = time >= a
        inside = entering & (time < b)
        early_censored = inside & (event == 0) & (time < (a + b) / 2)
        expected.append((inside & (event == 1)).sum() / (entering.sum() - early_censored.sum()))
    objective = discrete()
    logits = torch.zeros(1, 3, requires_grad=True)
    targets = torch.tensor(np.stack([time, event], 1), dtype=torch.float32)
    optimiser = torch.optim.LBFGS([logits], max_iter=60, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = objective.loss(logits.expand(n, 3), targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    assert torch.sigmoid(logits)[0].tolist() == pytest.approx(expected, abs=1e-4)
    # the training statistics: the same hazards, whose logits start the network's outputs
    objective.fit(np.stack([time, event], 1))
    assert objective.state["interval_hazards"] == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(objective.output_bias(), torch.logit(torch.tensor(
        expected, dtype=torch.float64)).numpy(), rtol=1e-12)


@pytest.mark.parametrize("metadata", [[], ["age"]])
def test_the_network_starts_from_the_training_hazards(compose_train, metadata):
    """build_network sets the output biases (``lin``, or ``combined_lin``'s last layer with
    metadata) to the fitted objective's; an unfitted one leaves PyTorch's initialisation."""
    from ecgexp.tasks.build import build_network, build_objective

    cfg = compose_train("task=survival_discrete", "model=resnet1d_small",
                        f"task.metadata_columns={metadata}")
    objective = build_objective(cfg.task)
    assert objective.output_bias() is None
    objective.fit(np.array([[0.5, 1], [3.0, 0], [7.5, 1], [12.0, 0]]))
    net = build_network(cfg, objective)
    layer = net.combined_lin[-1] if metadata else net.lin
    assert layer is net.output_layer
    np.testing.assert_allclose(layer.bias.detach().numpy(), objective.output_bias(), rtol=1e-6)


def test_cox_objective_predicts_the_log_hazard_and_its_loss_is_the_partial_likelihood():
    objective = CoxSurvival("timey", "death", ties="breslow")
    outputs = torch.tensor([[0.5], [-0.2], [1.0], [0.0]])
    targets = torch.tensor([[2.0, 1.0], [3.0, 0.0], [1.0, 1.0], [2.0, 1.0]])
    assert objective.prediction_columns == ["risk_score"]
    assert objective.target_columns == ["timey", "death"]
    assert objective.binary_columns == ["death"]
    assert torch.equal(objective.predict(outputs), outputs)
    # Breslow by hand: t=1: 1.0 - log(e^.5 + e^-.2 + e^1 + e^0); t=2 (two deaths):
    # 0.5 + 0 - 2 log(e^.5 + e^-.2 + e^0)
    by_hand = (1.0 - math.log(math.exp(.5) + math.exp(-.2) + math.exp(1) + 1)
               + 0.5 - 2 * math.log(math.exp(.5) + math.exp(-.2) + 1))
    assert objective.loss(outputs, targets).item() == pytest.approx(-by_hand / 3, rel=1e-6)
    assert cox_partial_log_likelihood(outputs[:, 0], targets[:, 0], targets[:, 1],
                                      "breslow").item() == pytest.approx(by_hand)


@pytest.mark.parametrize("kwargs, message", [
    (dict(cuts=[1, 2, 3]), r"^task\.objective\.cuts: give increasing interval boundaries "
                           r"starting at 0"),
    (dict(cuts=[0, 2, 2]), r"^task\.objective\.cuts: "),
    (dict(horizons=[1, 5]), r"^task\.objective\.horizons: 5 is after the last interval "
                            r"boundary 4 \(task\.objective\.cuts\)"),
    (dict(horizons=[2, 1]), r"^task\.objective\.horizons: give increasing positive times"),
])
def test_discrete_time_config_errors(kwargs, message):
    arguments = {"cuts": CUTS, "horizons": [1, 3], **kwargs}
    with pytest.raises(UserError, match=message):
        DiscreteTimeSurvival("timey", "death", **arguments)


def test_cox_ties_option_is_checked():
    with pytest.raises(UserError, match=r"^task\.objective\.ties: 'exact' is not one of "
                                        r"breslow, efron"):
        CoxSurvival("timey", "death", ties="exact")


def test_af_time_to_event_from_a_timeline():
    """Patient 1 never has AF (3 exams: censored at the last one); patient 2 has AF first on
    its third exam (events before it, the AF exams left out); patient 3 has AF on its first
    exam (left out)."""
    table = pd.DataFrame({
        "patient_id": [1, 1, 1, 2, 2, 2, 2, 3, 3],
        "exam_date": ["2010-01-01", "2010-03-12", "2011-01-01", "2012-01-01", "2012-01-15",
                      "2013-01-01", "2013-06-01", "2014-01-01", "2014-02-01"],
        "AF": [0, 0, 0, 0, 0, 1, 1, 1, 0]})
    out = af_time_to_event(table, test_fraction=0.0, val_fraction=0.0)
    weeks = lambda a, b: (pd.Timestamp(b) - pd.Timestamp(a)).days // 7  # noqa: E731
    expected_time = [weeks("2010-01-01", "2011-01-01"), weeks("2010-03-12", "2011-01-01"),
                     np.nan, weeks("2012-01-01", "2013-01-01"),
                     weeks("2012-01-15", "2013-01-01"), np.nan, np.nan, np.nan, np.nan]
    np.testing.assert_array_equal(out.af_time.to_numpy(), np.array(expected_time, float))
    np.testing.assert_array_equal(out.af_event.to_numpy(),
                                  [0, 0, np.nan, 1, 1, np.nan, np.nan, np.nan, np.nan])
    assert out.af_split[out.af_event.notna()].notna().all()  # the AF-risk patient split
