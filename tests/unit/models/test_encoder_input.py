"""``ecgexp.models.encoder_input``: a pretrained encoder's input contract applied in the
network. Resampling against ``scipy.signal.resample_poly``, leads picked by name, windows
against slices taken here, each normalisation against NumPy, and the one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import signal as sps

from ecgexp.errors import UserError
from ecgexp.models.encoder_input import EncoderInput
from ecgexp.signal.leads import CANONICAL_LEADS

LEADS = list(CANONICAL_LEADS)


def contract(rate, n_samples, encoder_rate=500, window_s=1.0, **options):
    return EncoderInput("enc", LEADS, rate, n_samples, LEADS, encoder_rate, window_s, **options)


@pytest.mark.parametrize("rate,n_samples,encoder_rate", [(400, 4096, 500), (100, 1000, 500),
                                                         (360, 1000, 500), (400, 4096, 100)])
def test_resampling_is_scipys_resample_poly(rate, n_samples, encoder_rate):
    x = np.random.default_rng(0).normal(size=(2, 12, n_samples))
    front = contract(rate, n_samples, encoder_rate, normalisation="none")
    expected = sps.resample_poly(x, front.up, front.down, axis=-1)
    got = front.resample(torch.tensor(x, dtype=torch.float32)).numpy()
    assert got.shape == expected.shape == (2, 12, int(np.ceil(n_samples * encoder_rate / rate)))
    np.testing.assert_allclose(got, expected, atol=1e-5)  # float32 filter and products


def test_leads_are_picked_by_name_and_windows_are_consecutive_slices():
    """MERL's order puts AVF before AVL; 12.5 s at 500 Hz in 5 s windows every 2.5 s: four
    windows (starting at 0, 2.5, 5 and 7.5 s), each the slice of the input at its start."""
    order = ["DI", "DII", "DIII", "AVR", "AVF", "AVL", "V1", "V2", "V3", "V4", "V5", "V6"]
    x = torch.arange(12, dtype=torch.float32)[None, :, None] * 1000 + torch.arange(6250)
    front = EncoderInput("enc", LEADS, 500, 6250, order, 500, 5.0, stride_s=2.5,
                         normalisation="none")
    windows = front(x)
    assert front.n_windows == 4 and windows.shape == (4, 12, 2500)
    lead = torch.tensor([LEADS.index(name) for name in order])[None, :, None] * 1000.0
    start = torch.arange(4)[:, None, None] * 1250
    assert torch.equal(windows, lead + start + torch.arange(2500.0))


def test_each_normalisation_against_numpy():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(2, 12, 500))
    tensor = torch.tensor(x, dtype=torch.float32)
    by_lead = (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-8)
    whole = (x - x.mean((1, 2), keepdims=True)) / (x.std((1, 2), keepdims=True) + 1e-8)
    low, high = x.min((1, 2), keepdims=True), x.max((1, 2), keepdims=True)
    lead_low, lead_high = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
    expected = {"zscore_lead": by_lead, "zscore": whole, "minmax": (x - low) / (high - low + 1e-8),
                "minmax_lead": 2 * (x - lead_low) / (lead_high - lead_low + 1e-8) - 1, "none": x}
    for name, values in expected.items():
        got = contract(500, 500, normalisation=name)(tensor).numpy()
        np.testing.assert_allclose(got, values, atol=1e-5, err_msg=name)


def test_what_cannot_be_brought_to_the_contract_is_named():
    with pytest.raises(UserError, match=r"^preprocessing.leads: model=enc takes the leads DI, "
                                        r".*; the data has no DIII, AVR, AVL, AVF, V1, V2 "
                                        r"\(preprocessing.leads is DI, DII, V3, V4, V5, V6\)$"):
        EncoderInput("enc", ["DI", "DII", "V3", "V4", "V5", "V6"], 500, 5000, LEADS, 500, 5.0)
    with pytest.raises(UserError, match=r"^dataset.n_samples: model=enc takes windows of 10 s "
                                        r"at 500 Hz; the exams last 2.5 s \(250 samples at 100 "
                                        r"Hz\): feed exams of at least 10 s$"):
        contract(100, 250, window_s=10.0)
