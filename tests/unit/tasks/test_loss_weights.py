"""``ecgexp.tasks.loss_weights``: the loss weights of the training split, by hand on a few
exams, and the settings' errors by their text."""

import numpy as np
import pytest

from ecgexp.tasks.loss_weights import (
    check_weight_option,
    class_weights,
    class_weights_option,
    inverse_frequency_weights,
    positive_weight,
)


def test_inverse_frequency_weights_by_hand():
    # Ages 40 (x3), 50 (x1): per exam 1/3, 1/3, 1/3, 1; sum 2; times 4 exams / 2 -> 2/3 and 2.
    distinct, weights = inverse_frequency_weights([40, 50, 40, 40])
    assert distinct.tolist() == [40.0, 50.0]
    assert weights == pytest.approx([2 / 3, 2])
    # Clipped at 1.5: 2/3 x3 and 1.5, sum 3.5, rescaled by 4 / 3.5.
    _, clipped = inverse_frequency_weights([40, 50, 40, 40], max_weight=1.5)
    assert clipped == pytest.approx([2 / 3 * 4 / 3.5, 1.5 * 4 / 3.5])
    with pytest.raises(ValueError, match=r"^task.objective.max_weight: must be at least 1 \(the "
                                         r"mean weight\), got 0.5$"):
        inverse_frequency_weights([1, 2], max_weight=0.5)


def test_class_weights_are_the_largest_count_over_each_count():
    assert class_weights([0, 0, 0, 0, 1, 1, 2], 3).tolist() == [1.0, 2.0, 4.0]
    with pytest.raises(ValueError, match=r"^task.objective.class_weights=auto: class index 1 has "
                                         r"no training exam$"):
        class_weights([0, 2, 2], 3)


def test_positive_weight_is_negatives_over_positives():
    assert positive_weight(np.array([0, 0, 0, 1, 0, 1, np.nan])) == 2.0
    with pytest.raises(ValueError, match=r"^task.objective.pos_weight=auto: the training split "
                                         r"has no positive exam$"):
        positive_weight([0, 0])


def test_weight_options():
    for option in (None, "auto", 2.5, [1, 2]):
        check_weight_option(option, "pos_weight")
    with pytest.raises(ValueError, match=r"^task.objective.pos_weight: 'balanced' is not 'auto', "
                                         r"a number, a list or null$"):
        check_weight_option("balanced", "pos_weight")
    assert class_weights_option("auto", np.array([0, 1, 1]), 2) == [2.0, 1.0]
    assert class_weights_option([1, 3, 0.5], np.array([0]), 3) == [1.0, 3.0, 0.5]
    with pytest.raises(ValueError, match=r"^task.objective.class_weights: 3 weights are needed, "
                                         r"got \[1.0, 2.0\]$"):
        class_weights_option([1, 2], np.array([0]), 3)
