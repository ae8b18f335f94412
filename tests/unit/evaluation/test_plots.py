"""``ecgexp.evaluation.plots``: the decision curve's lines and axes, the treat-all line by
hand (the net benefits themselves: tests/unit/metrics/test_decision_curve.py; the other
figures are drawn by the report tests:
tests/unit/evaluation/test_survival.py, tests/e2e/test_evaluate.py)."""

import numpy as np
import pytest

from ecgexp.evaluation.plots import make_decision_curve

TARGETS = np.array([0, 0, 1, 0, 0, 1, 1, 1])  # prevalence 4/8


def test_the_figure_has_a_line_per_model_and_the_two_references():
    thresholds = np.linspace(0.05, 0.6, 12)
    curve = np.linspace(0.45, 0.02, 12)  # any model's net benefits: the figure draws them
    figure = make_decision_curve({"model a": curve}, TARGETS, thresholds, "AF")
    (axes,) = figure.axes
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert set(lines) == {"model a", "treat all", "treat none"}
    np.testing.assert_allclose(lines["model a"].get_ydata(), curve)
    everyone = 0.5 - 0.5 * thresholds / (1 - thresholds)  # prevalence 4/8, every exam treated
    np.testing.assert_allclose(lines["treat all"].get_ydata(), everyone)
    top = max(curve.max(), everyone.max())
    assert axes.get_ylim() == pytest.approx((-0.1 * top, 1.1 * top))
    assert axes.get_xlim() == pytest.approx((0.05, 0.6))
    assert axes.get_title() == "Decision curve: AF"
