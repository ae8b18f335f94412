"""``ecgexp.metrics.weights``: the exam weights every weighted metric accepts, and the shape
its result is given back in."""

import numpy as np
import pytest

from ecgexp.metrics.weights import as_weights, result


def test_no_weights_is_one_row_of_ones_and_a_single_value():
    weights, single = as_weights(None, 4)
    assert weights.shape == (1, 4) and (weights == 1).all() and single
    assert result(np.array([0.75]), single) == 0.75 and isinstance(result(np.array([0.75]), True),
                                                                   float)


def test_one_row_of_weights_gives_a_single_value_and_resamples_an_array():
    weights, single = as_weights([2, 0, 1], 3)
    assert weights.tolist() == [[2.0, 0.0, 1.0]] and weights.dtype == np.float64 and single
    resamples = np.array([[1, 1, 1], [3, 0, 0]])
    weights, single = as_weights(resamples, 3)
    assert weights.shape == (2, 3) and not single
    values = np.array([0.5, 0.25])
    assert result(values, single) is values


@pytest.mark.parametrize("weights, shape", [(np.ones(4), r"\(1, 4\)"),
                                            (np.ones((2, 2)), r"\(2, 2\)"),
                                            (np.ones((2, 2, 3)), r"\(2, 2, 3\)")])
def test_weights_that_do_not_match_the_exams_are_named(weights, shape):
    with pytest.raises(ValueError, match=rf"^weights {shape} do not match 3 exams$"):
        as_weights(weights, 3)
