"""``ecgexp.inference.loop.inferred``, the one inference loop, on stand-in models whose
predictions are written by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgexp.inference.loop import inferred


class Scores:
    """Two labels, one score each: the sigmoid of each output."""

    prediction_columns = ["score_AF", "score_RBBB"]
    output_names = ["AF", "RBBB"]

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(outputs)


class Member:
    """A stand-in trained model: a linear network over the mean of each lead, plus the
    first metadata value when there is one; its raw metadata are standardised by halving."""

    def __init__(self, weight: float):
        self.objective = Scores()
        self.net = torch.nn.Module()
        self.net.forward = lambda x, m=None: (weight * x.mean(dim=-1)[:, :2]
                                              + (0 if m is None else m[:, :1]))
        self.net.to = lambda device: self.net
        self.net.eval = lambda: self.net

    def metadata_inputs(self, raw, batch):
        assert raw.shape == (batch, 1)
        return torch.as_tensor(raw / 2, dtype=torch.float32)


def test_the_loop_feeds_each_member_and_leaves_the_exams_not_fed_empty():
    tracings = torch.tensor([[[1.0, 3.0], [0.0, 2.0]], [[-2.0, 0.0], [4.0, 4.0]]])
    batches = [{"tracing": tracings, "raw_metadata": np.array([[2.0], [-4.0]]),
                "fed": np.array([True, False])}, None,
               {"tracing": tracings[:1], "metadata": torch.tensor([[3.0]])}]
    done = list(inferred([Member(1.0), Member(2.0)], batches, "cpu"))
    assert len(done) == 2  # the None batch (every exam left out) is passed over
    first, second = done
    # member 1: lead means (2, 1) + 2/2 -> sigmoid(3), sigmoid(2); member 2: (4, 2) + 1
    expected = 1 / (1 + np.exp(-np.array([[3.0, 2.0], [5.0, 3.0]])))
    np.testing.assert_allclose(first.predictions[:, 0], expected, rtol=1e-6)
    assert np.isnan(first.predictions[:, 1]).all() and first.predictions.shape == (2, 2, 2)
    np.testing.assert_allclose(first.outputs[1][0].numpy(), [5.0, 3.0])
    # the standardised metadata input is fed as it is: 3, not 3/2
    np.testing.assert_allclose(second.outputs[0].numpy(), [[5.0, 4.0]])
    assert second.batch is batches[2]


def test_an_unknown_device_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^device: 'gpu7' is not a device"):
        next(inferred([Member(1.0)], [], "gpu7"))
