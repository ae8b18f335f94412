"""``ecgexp-convert-keras``: a Keras 2 save of the abnormality model, written here with h5py in
the layout and layer names of docs/studies.md §1.2, becomes a ``model.weights`` file whose ResNet1d
matches a NumPy re-implementation of the Keras forward pass."""

import math

import h5py
import numpy as np
import pytest
import torch
from helpers.commands import run_in_process

from ecgexp.models.keras import convert
from ecgexp.models.resnet1d import ResNet1d
from ecgexp.models.weights import load_weights
from ecgexp.tasks.build import build_network

# docs/studies.md §1.2: stem 64 filters at 4096 samples; units (samples, filters); kernel 16.
PUBLISHED = dict(leads=12, n_samples=4096, stem=64, units=[(1024, 128), (256, 196), (64, 256),
                                                            (16, 320)], kernel=16, outputs=6)
# A scaled-down variant; its last unit keeps the filters, so it has no skip convolution.
SMALL = dict(leads=12, n_samples=256, stem=8, units=[(64, 16), (16, 24), (4, 24)], kernel=16,
             outputs=3)


def keras_name(kind: str, index: int) -> str:
    """Keras names the first layer of a kind `kind`, later ones `kind_1`, `kind_2`, ..."""
    return kind if index == 0 else f"{kind}_{index}"


def keras_model(spec: dict, seed: int = 0) -> tuple[list[str], dict[str, dict[str, np.ndarray]]]:
    """(``model.layers`` names in order, weights per layer) of the Keras model, with random
    he_normal-like kernels and non-trivial BatchNorm parameters and statistics."""
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    order, weights = ["signal"], {}

    def new(kind: str) -> str:  # Keras numbers layers of a kind in creation order
        counts[kind] = counts.get(kind, -1) + 1
        return keras_name(kind, counts[kind])

    def conv(k, n_in, n_out):
        return {"kernel": rng.normal(0, math.sqrt(2 / (k * n_in)), (k, n_in, n_out))}

    def bn(n):
        return {"gamma": rng.uniform(0.5, 1.5, n), "beta": rng.normal(0, 0.1, n),
                "moving_mean": rng.normal(0, 0.3, n), "moving_variance": rng.uniform(0.5, 2, n)}

    k = spec["kernel"]
    stem_conv, stem_bn = new("conv1d"), new("batch_normalization")
    weights[stem_conv], weights[stem_bn] = conv(k, spec["leads"], spec["stem"]), bn(spec["stem"])
    order += [stem_conv, stem_bn, new("activation")]
    n_in = spec["stem"]
    for _, filters in spec["units"]:
        # created in this order by ResidualUnit.__call__: skip conv, main conv, strided conv
        pool = new("max_pooling1d")
        skip = new("conv1d") if n_in != filters else None
        conv1, bn1, act1, drop1 = (new("conv1d"), new("batch_normalization"),
                                   new("activation"), new("dropout"))
        conv2, add = new("conv1d"), new("add")
        bn2, act2, drop2 = new("batch_normalization"), new("activation"), new("dropout")
        weights.update({conv1: conv(k, n_in, filters), bn1: bn(filters),
                        conv2: conv(k, filters, filters), bn2: bn(filters)})
        if skip:
            weights[skip] = conv(1, n_in, filters)
        # model.layers order (docs/studies.md §1.2)
        order += [conv1, bn1, act1, drop1, pool, conv2, *([skip] if skip else []), add, bn2,
                  act2, drop2]
        n_in = filters
    features = spec["units"][-1][0] * n_in
    weights["dense"] = {"kernel": rng.normal(0, 0.15 / math.sqrt(features), (features,
                                                                         spec["outputs"])),
                        "bias": rng.normal(0, 0.1, spec["outputs"])}
    order += [new("flatten"), "dense"]
    return order, weights


def write_keras_h5(path, order, weights) -> None:
    """The Keras 2 ``model.save`` layout: model_weights/<layer>/<layer>/<weight>:0."""
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = b"2.3.1"
        group = handle.create_group("model_weights")
        group.attrs["layer_names"] = np.array([n.encode() for n in order])
        for name in order:
            layer = group.create_group(name)
            names = [f"{name}/{w}:0" for w in weights.get(name, {})]
            layer.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for weight_name, value in zip(names, weights.get(name, {}).values()):
                layer.create_dataset(weight_name, data=value.astype(np.float32))


def same_padding(length: int, window: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same': ceil(length / stride) outputs, the extra zero at the end."""
    total = max((math.ceil(length / stride) - 1) * stride + window - length, 0)
    return total // 2, total - total // 2


def keras_conv(x, kernel, stride=1):
    """Conv1D(padding='same', use_bias=False) on time-major (N, L, C_in)."""
    k = kernel.shape[0]
    x = np.pad(x, ((0, 0), same_padding(x.shape[1], k, stride), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, k, axis=1)[:, ::stride]  # N,L,C,k
    return np.tensordot(windows, kernel, axes=([2, 3], [1, 0]))


def keras_maxpool(x, size):
    """MaxPooling1D(size, strides=size, padding='same')."""
    x = np.pad(x, ((0, 0), same_padding(x.shape[1], size, size), (0, 0)),
               constant_values=-np.inf)
    return x.reshape(x.shape[0], -1, size, x.shape[2]).max(axis=2)


def keras_bn(x, w):
    return (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + 1e-3) * w["gamma"] + w["beta"]


def keras_forward(spec, weights, signal):
    """The automatic-ecg-diagnosis model in inference mode on (N, samples, leads) signals;
    the layers are found by their Keras names (conv1d_{3i-1} main, conv1d_{3i} strided,
    conv1d_{3i-2} skip; batch_normalization_{2i-1} and _{2i}), as in docs/studies.md §1.2."""
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    x = relu(keras_bn(keras_conv(signal, weights["conv1d"]["kernel"]),
                      weights["batch_normalization"]))
    y, conv_index, n_in = x, 0, spec["stem"]
    for i, (samples, filters) in enumerate(spec["units"], start=1):
        downsample = y.shape[1] // samples
        y = keras_maxpool(y, downsample) if downsample > 1 else y
        if n_in != filters:
            conv_index += 1
            y = keras_conv(y, weights[keras_name("conv1d", conv_index)]["kernel"])
        x = keras_conv(x, weights[keras_name("conv1d", conv_index + 1)]["kernel"])
        x = relu(keras_bn(x, weights[keras_name("batch_normalization", 2 * i - 1)]))
        x = keras_conv(x, weights[keras_name("conv1d", conv_index + 2)]["kernel"], downsample)
        y = x = x + y
        x = relu(keras_bn(x, weights[keras_name("batch_normalization", 2 * i)]))
        conv_index, n_in = conv_index + 2, filters
    logits = x.reshape(len(x), -1) @ weights["dense"]["kernel"] + weights["dense"]["bias"]
    return 1 / (1 + np.exp(-logits))


def resnet1d_of(spec) -> ResNet1d:
    """The ResNet1d options that express the Keras model (written out, not read back)."""
    return ResNet1d(in_leads=spec["leads"], n_samples=spec["n_samples"],
                    n_outputs=spec["outputs"], stem=[spec["stem"], spec["n_samples"]],
                    blocks=[[f, s] for s, f in spec["units"]], kernel_size=spec["kernel"],
                    stem_relu=True, bn_eps=1e-3).eval()


@pytest.mark.parametrize("spec", [PUBLISHED, SMALL], ids=["published", "small"])
def test_converted_model_matches_the_keras_forward_pass(tmp_path, spec):
    order, weights = keras_model(spec)
    write_keras_h5(tmp_path / "model.hdf5", order, weights)
    output, config = convert(tmp_path / "model.hdf5", n_samples=spec["n_samples"])
    assert output == tmp_path / "model.pth"
    model = resnet1d_of(spec)
    load_weights(model, output)
    assert ResNet1d(**config).state_dict().keys() == model.state_dict().keys()

    signal = np.random.default_rng(1).normal(0, 1, (2, spec["n_samples"], spec["leads"]))
    expected = keras_forward(spec, weights, signal)
    assert expected.std() > 0.05 and ((expected > 0.02) & (expected < 0.98)).mean() > 0.5
    with torch.no_grad():
        scores = torch.sigmoid(model(torch.from_numpy(signal.transpose(0, 2, 1)).float()))
    np.testing.assert_allclose(scores.numpy(), expected, atol=1e-4)


def test_published_model_sizes_and_experiment(compose_train, tmp_path):
    """docs/studies.md §1.2: 6,425,638 parameters, 3,728 of them non-trainable BN statistics; the
    converted file loads into experiment=abnormality_ribeiro2020."""
    order, weights = keras_model(PUBLISHED)
    write_keras_h5(tmp_path / "model.hdf5", order, weights)
    output, config = convert(tmp_path / "model.hdf5")
    assert config["stem"] == [64, 4096] and config["bn_eps"] == 1e-3
    assert config["blocks"] == [[128, 1024], [196, 256], [256, 64], [320, 16]]
    assert (config["kernel_size"], config["n_outputs"], config["stem_relu"]) == (16, 6, True)
    state = torch.load(output, weights_only=True)["model"]
    statistics = sum(v.numel() for k, v in state.items() if k.endswith(("running_mean",
                                                                         "running_var")))
    trainable = sum(p.numel() for p in resnet1d_of(PUBLISHED).parameters())
    assert (trainable, statistics) == (6_421_910, 3_728)
    assert sum(v.numel() for k, v in state.items()
               if not k.endswith("num_batches_tracked")) == 6_425_638
    cfg = compose_train("experiment=abnormality_ribeiro2020", f"model.weights={output}")
    experiment_model = build_network(cfg).eval()
    reference = resnet1d_of(PUBLISHED)
    reference.load_state_dict(state)
    x = torch.randn(1, 12, 4096)
    with torch.no_grad():
        torch.testing.assert_close(experiment_model(x), reference(x), rtol=0, atol=0)


def test_cli_converts_a_positional_path_and_never_overwrites(tmp_path):
    order, weights = keras_model(SMALL)
    write_keras_h5(tmp_path / "keras model.hdf5", order, weights)
    result = run_in_process("ecgexp-convert-keras", tmp_path, "keras model.hdf5", "n_samples=256")
    assert result.returncode == 0, result.stderr[-3000:]
    written = tmp_path / "keras model.pth"
    assert "model.stem=[8,256]" in result.stdout and str(written) in result.stdout
    before = written.read_bytes()
    again = run_in_process("ecgexp-convert-keras", tmp_path, "keras model.hdf5", "n_samples=256")
    assert again.returncode != 0 and "exists" in again.stderr
    assert written.read_bytes() == before
    other = run_in_process("ecgexp-convert-keras", tmp_path, "input=keras model.hdf5",
                           f"output={tmp_path / 'out' / 'converted.pth'}", "n_samples=256")
    assert other.returncode == 0, other.stderr[-3000:]
    model = resnet1d_of(SMALL)
    load_weights(model, tmp_path / "out" / "converted.pth")


def test_missing_and_non_keras_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="input: no file at .*absent.hdf5"):
        convert(tmp_path / "absent.hdf5")
    with h5py.File(tmp_path / "weights_only.h5", "w") as handle:
        handle.create_dataset("tracings", data=np.zeros(3))
    with pytest.raises(ValueError, match="not a Keras 2 model save .*model_weights"):
        convert(tmp_path / "weights_only.h5")
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        convert(tmp_path / "text.hdf5")


def test_wrong_shapes_and_layer_counts_name_the_layer(tmp_path):
    order, weights = keras_model(SMALL)
    bad = {**weights, "conv1d_3": {"kernel": weights["conv1d_3"]["kernel"][:, :5]}}  # strided
    write_keras_h5(tmp_path / "shape.hdf5", order, bad)
    with pytest.raises(ValueError,
                       match=r"Keras layer 'conv1d_3'.*\(16, 5, 16\).*resblock1d_0\.conv2\."):
        convert(tmp_path / "shape.hdf5", n_samples=256)
    missing_bn = [name for name in order if name != "batch_normalization_4"]
    write_keras_h5(tmp_path / "count.hdf5", missing_bn, weights)
    with pytest.raises(ValueError, match="residual unit"):
        convert(tmp_path / "count.hdf5", n_samples=256)
    write_keras_h5(tmp_path / "length.hdf5", order, weights)
    with pytest.raises(ValueError, match="Keras layer 'dense'.*n_samples=4096"):
        convert(tmp_path / "length.hdf5")  # the small model is not 4096 samples long
