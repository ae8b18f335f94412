"""Attribution maps (ecgexp.interpret.attribution): Grad-CAM by hand, batched = per exam, the
model-randomisation and localisation sanity checks, hook hygiene, the published intensity."""

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from ecgexp.interpret.attribution import (
    METHODS,
    attribute,
    grad_cam,
    gradient_intensity,
    guided_backprop,
    integrated_gradients,
    saliency,
    visible_intensity,
)
from ecgexp.models.resnet1d import ResNet1d

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # captum's hook notices

T = 6
CONV_WEIGHTS = np.array([[1.0, 0.5], [-0.5, 1.0]])   # Conv1d(2, 2, k=1): A = K @ x, (2, T)
LINEAR_WEIGHTS = np.array([[0.5, -1.0, 0.25, 2.0, -0.5, 1.0],      # channel 0, t = 0..5
                           [-2.0, 0.5, 1.5, -1.0, 0.75, -0.25]])   # channel 1
EXAMS = np.array([[[1.0, -2.0, 3.0, 0.5, -1.0, 2.0], [0.5, 1.0, -1.0, 2.0, -0.5, 1.5]],
                  [[-1.0, 2.0, -0.5, 1.0, 3.0, -2.0], [1.5, -1.0, 0.5, -2.0, 1.0, 0.25]]],
                 dtype=np.float32)


class Tiny(nn.Module):
    """y = Linear(ReLU(conv(x)).flatten()) on 2 leads; Grad-CAM layer ``conv``, A (batch, 2, T)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.lin = nn.Linear(2 * T, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(CONV_WEIGHTS, dtype=torch.float32)[:, :, None])
            self.lin.weight.copy_(torch.tensor(LINEAR_WEIGHTS.reshape(1, -1), dtype=torch.float32))

    def forward(self, x):
        return self.lin(self.relu(self.conv(x)).flatten(1))


def min_max(row):
    spread = row.max() - row.min()
    return (row - row.min()) / spread if spread > 0 else np.zeros_like(row)


def hand_grad_cam(x):
    """Grad-CAM of Tiny for one exam x (2, T), written out: channel weights and map (T,)."""
    activations = CONV_WEIGHTS @ x                                 # (2, T)
    # y = sum_{c,t} W[c,t] relu(A[c,t]), so dy/dA[c,t] = W[c,t] * [A[c,t] > 0].
    gradients = LINEAR_WEIGHTS * (activations > 0)
    weights = gradients.mean(axis=1)                               # w_c, per exam
    return weights, min_max(np.maximum((weights[:, None] * activations).sum(axis=0), 0))


def test_grad_cam_equals_hand_computation_with_per_exam_weights():
    maps = grad_cam(Tiny(), EXAMS, 0, "conv")
    assert maps.shape == (2, 2, T) and maps.dtype == np.float32
    expected = [hand_grad_cam(exam.astype(np.float64)) for exam in EXAMS]
    for got, (_, want) in zip(maps, expected):
        assert np.abs(got - want).max() < 1e-6                    # same map in both leads
    # The two exams have different channel weights (0.625, -0.125 and -0.25, -0.125), hence
    # different maps ...
    (w_a, map_a), (w_b, map_b) = expected
    assert np.allclose(w_a, [0.625, -0.125]) and np.allclose(w_b, [-0.25, -0.125])
    assert np.abs(map_a - map_b).max() > 0.5
    # ... and one scalar per exam (the published adaptive_avg_pool2d, §6.27), which only
    # rescales ReLU(sum_c A_c), gives other maps.
    for exam, got in zip(EXAMS.astype(np.float64), maps[:, 0]):
        activations = CONV_WEIGHTS @ exam
        scalar = (LINEAR_WEIGHTS * (activations > 0)).mean()
        published = min_max(np.maximum(scalar * activations.sum(axis=0), 0))
        assert np.abs(got - published).max() > 0.5


def small_resnet(n_metadata=0):
    blocks = [[16, 1024], [32, 256]] if not n_metadata else [[8, 1024], [16, 64]]
    return ResNet1d(in_leads=2, n_samples=1024, blocks=blocks, dropout=0.5,
                    n_metadata=n_metadata)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_metadata", [0, 2])
def test_batched_maps_equal_per_exam_maps(n_metadata, dtype):
    # float64 too, free of rounding: in float32 a ReLU pre-activation within rounding error of
    # zero can flip between batch sizes and move a map by ~1e-4 (none does for these exams).
    torch.manual_seed(0)
    model = small_resnet(n_metadata).to(dtype).train()  # the methods switch to eval mode
    rng = np.random.default_rng(0)
    tracings = rng.normal(size=(8, 2, 1024)).astype(np.float32)
    metadata = rng.normal(size=(8, 2)).astype(np.float32) if n_metadata else None
    for method in METHODS:
        options = {"steps": 8} if method == "integrated_gradients" else {}
        batched = attribute(method, model, tracings, 0, layer="resblock1d_1.conv1",
                            metadata=metadata, batch_size=8, **options)
        single = attribute(method, model, tracings, 0, layer="resblock1d_1.conv1",
                           metadata=metadata, batch_size=1, **options)
        uneven = attribute(method, model, tracings, 0, layer="resblock1d_1.conv1",
                           metadata=metadata, batch_size=3, **options)
        assert batched.shape == (8, 2, 1024) and batched.dtype == np.float32, method
        assert np.abs(batched).max() > 0, method
        assert np.abs(batched - single).max() < 1e-5, method
        assert np.abs(batched - uneven).max() < 1e-5, method
    assert model.training and model.resblock1d_0.dropout1.training
    assert all(p.grad is None for p in model.parameters())


W = 20  # bump width (samples)


def bumps(n, seed):
    """Noise in 2 leads; odd exams (positives) get a Gaussian bump in one lead."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 1024)).astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.float32)
    centres, leads = rng.integers(100, 1024 - 100, n), rng.integers(0, 2, n)
    t = np.arange(1024)
    for i in np.flatnonzero(labels):
        x[i, leads[i]] += 3 * np.exp(-0.5 * ((t - centres[i]) / (W / 2)) ** 2)
    return x, labels, centres, leads


def randomised(model, seed):
    """Copy of ``model`` with every module's parameters re-initialised (Adebayo et al.)."""
    torch.manual_seed(seed)
    copied = copy.deepcopy(model)
    for module in copied.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return copied


@pytest.mark.slow
def test_trained_maps_localise_the_feature_and_randomised_model_maps_differ():
    torch.manual_seed(0)
    x, labels = (torch.tensor(a) for a in bumps(400, seed=0)[:2])
    model = ResNet1d(in_leads=2, n_samples=1024, blocks=[[8, 1024], [16, 256], [16, 64]],
                     dropout=0.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    # 60 steps of 32 exams: over torch seeds 0-2 and the default and AVX2 CPU kernels, held-out
    # accuracy >= 0.995 (bar 0.9), localisation >= 0.98 (bar 0.8), median rho <= 0.1 (bar 0.5)
    for _ in range(60):
        batch = torch.randint(0, len(x), (32,))
        loss = nn.functional.binary_cross_entropy_with_logits(model(x[batch])[:, 0],
                                                              labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    held_out, held_labels, centres, leads = bumps(200, seed=1)
    model.eval()
    with torch.no_grad():
        assert ((model(torch.tensor(held_out))[:, 0] > 0).numpy() == held_labels).mean() > 0.9
    positives = np.flatnonzero(held_labels)
    exams, centres, leads = held_out[positives], centres[positives], leads[positives]
    random_model = randomised(model, seed=1)
    layer = "resblock1d_2.conv1"
    for trained, scrambled in [(saliency(model, exams, 0), saliency(random_model, exams, 0)),
                               (grad_cam(model, exams, 0, layer),
                                grad_cam(random_model, exams, 0, layer))]:
        rho = [spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(trained, scrambled)]
        assert np.median(rho) < 0.5
    # Localisation: the saliency maximum (over leads and time) is in the bumped lead within
    # 2 widths of the bump centre, and so is the Grad-CAM maximum in time.
    sal = saliency(model, exams, 0)
    lead, time = np.unravel_index(sal.reshape(len(exams), -1).argmax(axis=1), sal.shape[1:])
    assert np.mean((lead == leads) & (np.abs(time - centres) <= 2 * W)) >= 0.8
    cam = grad_cam(model, exams, 0, layer)[:, 0]
    assert np.mean(np.abs(cam.argmax(axis=1) - centres) <= 2 * W) >= 0.8


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               and not m._backward_pre_hooks for m in model.modules())


def test_hooks_removed_after_calls_and_errors_mode_restored():
    torch.manual_seed(0)
    model = small_resnet().train()
    tracings = np.random.default_rng(0).normal(size=(2, 2, 1024)).astype(np.float32)
    first = grad_cam(model, tracings, 0, "resblock1d_0.conv1")
    second = grad_cam(model, tracings, 0, "resblock1d_0.conv1")
    assert np.array_equal(first, second) and no_hooks(model)
    # A residual block's output is a pair; Grad-CAM uses its main path, relu2's output.
    block = grad_cam(model, tracings, 0, "resblock1d_1")
    assert np.abs(block - grad_cam(model, tracings, 0, "resblock1d_1.relu2")).max() < 1e-6
    for method in (lambda m, x, t: grad_cam(m, x, t, "resblock1d_0.conv1"), saliency,
                   guided_backprop, integrated_gradients):
        with pytest.raises(IndexError):
            method(model, tracings, 5)  # the model has one output
        assert no_hooks(model) and model.training and model.resblock1d_1.bn2.training
    assert all(p.grad is None for p in model.parameters())


def test_unknown_layer_method_and_shared_module_errors():
    model = small_resnet()
    tracings = np.zeros((1, 2, 1024), dtype=np.float32)
    with pytest.raises(ValueError, match=r"^layer:.*'resblock1d_9'.*resblock1d_0\.conv1"):
        grad_cam(model, tracings, 0, "resblock1d_9")
    with pytest.raises(ValueError, match=r"^layer:.*None"):
        attribute("gradcam", model, tracings, 0)
    with pytest.raises(ValueError, match=r"^layer:.*\(batch, channels, time\).*\(1, 1\)"):
        grad_cam(model, tracings, 0, "lin")
    with pytest.raises(ValueError, match=r"^method:.*gradcam, saliency, guided_backprop, "
                                         r"integrated_gradients.*'lime'"):
        attribute("lime", model, tracings, 0)
    # One ReLU module used twice (the published blocks, §6.30) cannot be paired with gradients.
    shared = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.ReLU())
    shared.append(shared[1]).append(nn.Flatten()).append(nn.Linear(8, 1))
    with pytest.raises(ValueError, match="ran 2 times"):
        grad_cam(shared, np.ones((1, 1, 4), dtype=np.float32), 0, "1")
    assert no_hooks(model) and no_hooks(shared)


def test_all_zero_map_stays_zero():
    model = Tiny()
    with torch.no_grad():
        model.lin.weight.fill_(-1.0)  # negative weights on positive activations: ReLU -> 0
    maps = grad_cam(model, np.abs(EXAMS), 0, "conv")
    assert np.array_equal(maps, np.zeros_like(maps))


def test_gradient_intensity_by_hand():
    maps = np.array([[[1.0, 2.0, 3.0, 4.0],           # g^2 = 1, 4, 9, 16; mean 7.5
                      [0.01, 0.0, 0.0, 0.02]]])       # g^2 mean 1.25e-4 < 1e-3: floor 1e-3
    expected = np.array([[[1 / 7.5, 4 / 7.5, 9 / 7.5, 16 / 7.5],
                          [0.1, 0.0, 0.0, 0.4]]])
    got = gradient_intensity(maps)
    assert got.dtype == np.float32 and got.shape == (1, 2, 4)
    assert np.allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_sparse_signed_maps_are_scaled_to_be_visible():
    """An integrated-gradients-like map: signed, mostly small, with a few large spikes. Scaled
    by its maximum almost everything would be invisible; by the 99th percentile of |map| the
    bulk of the map shows and the spikes saturate at 1."""
    rng = np.random.default_rng(0)
    signed = rng.normal(0, 0.01, (12, 4096))
    signed[3, [100, 2000]] = [5.0, -8.0]
    by_maximum = np.abs(signed) / np.abs(signed).max()
    visible = visible_intensity(signed, 99)
    assert np.median(by_maximum) < 0.001
    expected = np.clip(np.abs(signed) / np.percentile(np.abs(signed), 99), 0, 1)
    np.testing.assert_allclose(visible, expected)
    assert np.median(visible) > 0.2 and visible[3, 100] == visible[3, 2000] == 1.0
    assert visible.min() >= 0 and visible.max() <= 1
    np.testing.assert_allclose(visible_intensity(signed, 100), by_maximum)
    assert not visible_intensity(np.zeros((12, 10))).any()

