"""ResNet1d against the published PyTorch model (docs/studies.md §1.1) and the Keras padding
rule."""

import math

import pytest
import torch

from ecgexp.models.resnet1d import ResNet1d

# docs/studies.md §1.1: filters per block and the input channels of each block's conv1.
PUBLISHED_BLOCKS = [(64, 64), (128, 64), (196, 128), (256, 196), (320, 256)]


def published_state_dict_shapes(in_leads=12, n_outputs=1, filters=(64, 128, 196, 256, 320)):
    """Key -> shape of the published model, written out from the table in docs/studies.md."""
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
    """Stride 1, kernel 16: 7 zeros before and 8 after (docs/studies.md §1.2). A kernel that picks
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


# docs/studies.md §1.2: Keras kernel shapes (k, in, out) of the k16 convs, unit by unit (conv1,
# conv2), and of the 1x1 skips.
KERAS_K16 = [(16, 64, 128), (16, 128, 128), (16, 128, 196), (16, 196, 196), (16, 196, 256),
             (16, 256, 256), (16, 256, 320), (16, 320, 320)]
KERAS_SKIPS = [(1, 64, 128), (1, 128, 196), (1, 196, 256), (1, 256, 320)]
KERAS_OPTIONS = dict(stem=[64, 4096], blocks=[[128, 1024], [196, 256], [256, 64], [320, 16]],
                     kernel_size=16, stem_relu=True, bn_eps=1e-3, n_outputs=6, dropout=0.2)


def test_keras_structure_has_the_published_kernels_and_parameter_count():
    model = ResNet1d(**KERAS_OPTIONS)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()
              if k.endswith("weight") and v.dim() == 3}
    expected = {"conv1.weight": (64, 12, 16)}
    for i in range(4):
        for conv, (k, n_in, n_out) in zip(("conv1", "conv2"), KERAS_K16[2 * i:2 * i + 2]):
            expected[f"resblock1d_{i}.{conv}.weight"] = (n_out, n_in, k)
        k, n_in, n_out = KERAS_SKIPS[i]
        expected[f"resblock1d_{i}.skip_connection.1.weight"] = (n_out, n_in, k)
    assert shapes == expected
    assert tuple(model.lin.weight.shape) == (6, 5120)
    trainable = sum(p.numel() for p in model.parameters())
    statistics = sum(b.numel() for name, b in model.named_buffers()
                     if name.endswith(("running_mean", "running_var")))
    assert (trainable, statistics) == (6_421_910, 3_728)  # 6,425,638 in all
    assert model.eval()(torch.randn(1, 12, 4096)).shape == (1, 6)


def test_bn_eps_reaches_every_batch_norm():
    model = ResNet1d(**KERAS_OPTIONS)
    eps = [m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert eps == [1e-3] * 9
    assert {m.eps for m in ResNet1d().modules() if isinstance(m, torch.nn.BatchNorm1d)} == {1e-5}


def test_stem_option_adds_no_block_and_is_checked():
    """With a stem, block 0 goes from the stem's shape to blocks[0]; a strided stem works."""
    model = ResNet1d(n_samples=64, stem=[8, 32], blocks=[[16, 8]], kernel_size=3)
    assert model.n_blocks == 1 and model.conv1.stride == (2,)
    assert tuple(model.resblock1d_0.skip_connection[1].weight.shape) == (16, 8, 1)
    assert model.eval()(torch.randn(2, 12, 64)).shape == (2, 1)
    with pytest.raises(ValueError, match="model.stem"):
        ResNet1d(stem=[64])


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



# Electrolyte-study heads. F = 5120 features for the default trunk; the published parameter
# count of the default linear model minus its lin layer (5120 weights + 1 bias) is the trunk's.
TRUNK_PARAMS = 6_924_705 - (5120 + 1)
SMALL = dict(n_samples=256, blocks=[[8, 256], [16, 64]], kernel_size=3)
SMALL_F = 16 * 64


def trunk_shapes():
    return {k: s for k, s in published_state_dict_shapes().items() if not k.startswith("lin.")}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def n_params_of(shapes):
    return sum(math.prod(s) for s in shapes.values())


def test_gaussian_head_keys_and_parameter_count_match_published_prob_resnet():
    head = {"lin.weight": (1, 5120), "lin.bias": (1,),
            "lin_log_var_1.weight": (5120, 5120), "lin_log_var_1.bias": (5120,),
            "lin_log_var_2.weight": (1, 5120), "lin_log_var_2.bias": (1,)}
    state = ResNet1d(head="gaussian").state_dict()
    assert len(state) == 76
    assert {k: tuple(v.shape) for k, v in state.items()} == {**trunk_shapes(), **head}
    expected = TRUNK_PARAMS + n_params_of(head)
    assert expected == TRUNK_PARAMS + 5121 + 5120 * 5120 + 5120 + 5121
    assert n_params(ResNet1d(head="gaussian")) == expected
    assert round(expected / 1e6, 1) == 33.1


def test_gaussian_head_outputs_means_then_log_variances():
    torch.manual_seed(0)
    model = ResNet1d(**SMALL, head="gaussian").eval()
    x = torch.randn(3, 12, 256)
    with torch.no_grad():
        out, feats = model(x), model.features(x)
        mean = feats @ model.lin.weight.T + model.lin.bias
        hidden = torch.relu(feats @ model.lin_log_var_1.weight.T + model.lin_log_var_1.bias)
        log_var = hidden @ model.lin_log_var_2.weight.T + model.lin_log_var_2.bias
    assert out.shape == (3, 2)
    torch.testing.assert_close(out[:, :1], mean)
    torch.testing.assert_close(out[:, 1:], log_var)


def test_gaussian_hidden_width_and_several_outputs():
    model = ResNet1d(**SMALL, n_outputs=3, head="gaussian", gaussian_hidden=7).eval()
    assert model.lin_log_var_1.weight.shape == (7, SMALL_F)
    assert model.lin_log_var_2.weight.shape == (3, 7)
    assert model(torch.randn(2, 12, 256)).shape == (2, 6)
    with pytest.raises(ValueError, match="model.gaussian_hidden"):
        ResNet1d(**SMALL, gaussian_hidden=7)


def test_coral_head_shares_weights_across_logits():
    torch.manual_seed(0)
    k = 5
    model = ResNet1d(**SMALL, n_outputs=k - 1, head="coral").eval()
    state = model.state_dict()
    assert state["lin.weight"].shape == (1, SMALL_F)
    assert "lin.bias" not in state
    assert state["lin_bias"].shape == (1, k - 1)
    # CORAL initialisation: decreasing biases 4/4, 3/4, 2/4, 1/4.
    torch.testing.assert_close(state["lin_bias"], torch.tensor([[1.0, 0.75, 0.5, 0.25]]))
    with torch.no_grad():
        model.lin_bias.copy_(torch.randn(1, k - 1))
        x = torch.randn(3, 12, 256)
        out = model(x)
        shared = model.features(x) @ model.lin.weight.T
    assert out.shape == (3, k - 1)
    centred = out - model.lin_bias
    torch.testing.assert_close(centred, centred[:, :1].expand(-1, k - 1))
    torch.testing.assert_close(centred[:, :1], shared)


def test_metadata_head_keys_and_parameter_count_match_published_resnet_metadata():
    head = {"meta_to_features.0.weight": (64, 2), "meta_to_features.0.bias": (64,),
            "meta_to_features.2.weight": (128, 64), "meta_to_features.2.bias": (128,),
            "meta_to_features.4.weight": (512, 128), "meta_to_features.4.bias": (512,),
            "combined_lin.0.weight": (2816, 5632), "combined_lin.0.bias": (2816,),
            "combined_lin.2.weight": (1, 2816), "combined_lin.2.bias": (1,)}
    model = ResNet1d(n_metadata=2)
    state = model.state_dict()
    assert len(state) == 80
    assert {k: tuple(v.shape) for k, v in state.items()} == {**trunk_shapes(), **head}
    assert isinstance(model.lin, torch.nn.Identity)
    expected = TRUNK_PARAMS + n_params_of(head)
    assert n_params(model) == expected
    assert round(expected / 1e6, 2) == 22.86


def test_metadata_changes_output_and_is_checked():
    torch.manual_seed(0)
    model = ResNet1d(**SMALL, n_outputs=3, n_metadata=2).eval()
    x, meta = torch.randn(4, 12, 256), torch.randn(4, 2)
    with torch.no_grad():
        out = model(x, meta)
        other = model(x, meta + 1.0)
    assert out.shape == (4, 3)
    assert not torch.allclose(out, other)
    with pytest.raises(ValueError, match=r"metadata of shape \(4, 2\).*got None"):
        model(x)
    with pytest.raises(ValueError, match=r"metadata of shape \(4, 2\).*got \(4, 3\)"):
        model(x, torch.randn(4, 3))
    with pytest.raises(ValueError, match="without metadata"):
        ResNet1d(**SMALL)(x, meta)


@pytest.mark.parametrize("head, n_outputs, width", [("coral", 4, 4), ("gaussian", 2, 4)])
def test_metadata_with_coral_and_gaussian_heads(head, n_outputs, width):
    model = ResNet1d(**SMALL, n_outputs=n_outputs, head=head, n_metadata=2).eval()
    hidden = (SMALL_F + 512) // 2
    state = model.state_dict()
    assert state["combined_lin.0.weight"].shape == (hidden, SMALL_F + 512)
    assert not any(k.startswith("combined_lin.2") for k in state)
    assert state["lin.weight"].shape[1] == hidden
    with torch.no_grad():
        assert model(torch.randn(3, 12, 256), torch.randn(3, 2)).shape == (3, width)


def test_unknown_head_is_rejected():
    with pytest.raises(ValueError, match=r"model.head.*linear, gaussian, coral.*'softmax'"):
        ResNet1d(head="softmax")
