"""ResNet1d against the published PyTorch model (studies.md §1.1) and the Keras padding rule."""

import math

import pytest
import torch

from ecgexp.models.resnet1d import ResNet1d

# studies.md §1.1: filters per block and the input channels of each block's conv1.
PUBLISHED_BLOCKS = [(64, 64), (128, 64), (196, 128), (256, 196), (320, 256)]


def published_state_dict_shapes(in_leads=12, n_outputs=1, filters=(64, 128, 196, 256, 320)):
    """Key -> shape of the published model, written out from the table in studies.md."""
    shapes = {"conv1.weight": (64, in_leads, 17)}
    bn = lambda prefix, c: {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,),  # noqa: E731
                            f"{prefix}.running_mean": (c,), f"{prefix}.running_var": (c,),
                            f"{prefix}.num_batches_tracked": ()}
    shapes.update(bn("bn1", 64))
    n_in = 64
    for i, n_out in enumerate(filters):
        p = f"resblock1d_{i}"
        shapes[f"{p}.conv1.weight"] = (n_out, n_in, 17)
        shapes.update(bn(f"{p}.bn1", n_out))
        shapes[f"{p}.conv2.weight"] = (n_out, n_out, 17)
        shapes.update(bn(f"{p}.bn2", n_out))
        if i >= 1:
            shapes[f"{p}.skip_connection.1.weight"] = (n_out, n_in, 1)
        n_in = n_out
    shapes["lin.weight"] = (n_outputs, 5120)
    shapes["lin.bias"] = (n_outputs,)
    return shapes


def test_state_dict_keys_order_and_shapes_match_published_model():
    state = ResNet1d().state_dict()
    expected = published_state_dict_shapes()
    assert len(state) == 72
    assert list(state) == list(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_parameter_counts_match_published_models():
    assert sum(p.numel() for p in ResNet1d().parameters()) == 6_924_705
    af = ResNet1d(n_outputs=3, blocks=[[64, 4096], [128, 1024], [192, 256], [256, 64], [320, 16]],
                  dropout=0.5)
    assert sum(p.numel() for p in af.parameters()) == 6_880_899
    electrolyte = ResNet1d(in_leads=8, dropout=0.5, stem_relu=True)
    assert sum(p.numel() for p in electrolyte.parameters()) == 6_920_353


def test_published_state_dict_loads_strictly():
    """A state_dict with the published keys (built independently) loads with strict=True."""
    published = {k: torch.randn(s) if s else torch.tensor(0)
                 for k, s in published_state_dict_shapes().items()}
    model = ResNet1d()
    model.load_state_dict(published, strict=True)
    assert torch.equal(model.resblock1d_3.conv2.weight, published["resblock1d_3.conv2.weight"])


@pytest.mark.parametrize("length, stride", [(4096, 1), (4096, 4), (1024, 4), (100, 3), (17, 4)])
def test_even_kernel_same_padding_gives_ceil_length(length, stride):
    from ecgexp.models.resnet1d import conv1d

    conv = conv1d(3, 5, kernel_size=16, stride=stride)
    assert conv(torch.randn(2, 3, length)).shape[-1] == math.ceil(length / stride)


def test_even_kernel_padding_is_tensorflow_asymmetric():
    """Stride 1, kernel 16: 7 zeros before and 8 after (studies.md §1.2). A kernel that picks
    the first tap sees x[t-7]; one that picks the last tap sees x[t+8]."""
    from ecgexp.models.resnet1d import conv1d

    x = torch.arange(1.0, 33.0).reshape(1, 1, 32)
    conv = conv1d(1, 1, kernel_size=16)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0] = 1.0
        first_tap = conv(x)[0, 0]
        conv.weight.zero_()
        conv.weight[0, 0, -1] = 1.0
        last_tap = conv(x)[0, 0]
    assert first_tap[:7].eq(0).all() and first_tap[7] == 1.0
    assert last_tap[0] == 9.0 and last_tap[-8:].eq(0).all()


def test_keras_like_kernel16_network_runs_at_published_lengths():
    model = ResNet1d(kernel_size=16, n_outputs=6, stem_relu=True, dropout=0.2).eval()
    assert model(torch.randn(2, 12, 4096)).shape == (2, 6)


def test_stem_relu_option_changes_output():
    torch.manual_seed(0)
    options = dict(blocks=[[8, 64], [8, 16]], n_samples=64, kernel_size=3)
    without = ResNet1d(**options).eval()
    with_relu = ResNet1d(**options, stem_relu=True).eval()
    with_relu.load_state_dict(without.state_dict())
    x = torch.randn(4, 12, 64)
    assert not torch.allclose(without(x), with_relu(x))


def test_wrong_input_shape_names_expected_shape():
    with pytest.raises(ValueError, match=r"expects \(batch, 12, 4096\).*got \(2, 4096, 12\)"):
        ResNet1d()(torch.randn(2, 4096, 12))


def test_bad_block_lengths_and_dropout_are_rejected():
    with pytest.raises(ValueError, match="model.blocks"):
        ResNet1d(blocks=[[64, 4096], [128, 1000]])
    with pytest.raises(ValueError, match="model.dropout"):
        ResNet1d(dropout=1.0)

