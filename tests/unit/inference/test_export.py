"""Exporting a network (``ecgexp/inference/export.py``): every ``model=`` of the config tree at
a tiny size (``helpers.models.NARROW``), written as ONNX and as TorchScript, then read back by
onnxruntime and ``torch.jit.load`` here and run on tracings of another batch size than the
export's, equals the PyTorch network within 1e-5; each head and the metadata fusion too. A
trace that does not generalise is not kept; an exporter's failure is one line."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
import yaml
from helpers.configs import CONF_DIR, compose_config
from helpers.models import NARROW
from omegaconf import OmegaConf, open_dict
from torch import nn

from ecgexp.errors import UserError
from ecgexp.inference.export import FORMATS, export_model, export_network
from ecgexp.inference.model import TrainedModel
from ecgexp.models.ptbxl import FCNWang
from ecgexp.models.weights import build_model
from ecgexp.tasks.build import build_objective

MODELS = sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml"))
N_SAMPLES = 64  # the ResNet1d NARROW lengths fit it; the encoders set their own
TOLERANCE = 1e-5
# (model, format) pairs the format cannot hold, and how the export says so (in one line,
# leaving no file): none of ecgexp's models (test_a_network_the_format_cannot_express_is_named_with_
# the_other_format shows a refusal).
REFUSED: dict[tuple[str, str], str] = {}


def model_config(name: str):
    """``conf/model/<name>.yaml`` over the model files its defaults list names, as Hydra
    composes ``model=<name>`` (``_self_`` last), without a compose per model."""
    own = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    bases = [model_config(entry) for entry in own.pop("defaults", []) if entry != "_self_"]
    return OmegaConf.merge(*bases, own)


@pytest.fixture(scope="module")
def abnormality():
    """The abnormality task's config (six labels, linear head; its model group replaced by
    each test) and its objective."""
    cfg = compose_config("train", "task=abnormality", f"dataset.n_samples={N_SAMPLES}")
    return cfg, build_objective(cfg.task)


def tiny_network(abnormality, model: str) -> tuple[nn.Module, int, int]:
    """``model`` narrowed by NARROW, with the abnormality head: ``(net, leads, samples)``."""
    assert model in NARROW, f"add the tiny sizes of {model} to tests/helpers/models.py NARROW"
    cfg, objective = abnormality
    with open_dict(cfg):
        cfg.model = model_config(model)
        for override in NARROW[model]:
            key, _, value = override.partition("=")
            OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
    torch.manual_seed(0)
    return build_model(cfg.model, objective).eval(), cfg.model.in_leads, cfg.model.n_samples


def run_exported(path, fmt: str, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    """The written file run by its own runtime, as a user of it would."""
    if fmt == "onnx":
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
        names = [item.name for item in session.get_inputs()]
        return session.run(None, dict(zip(names, (x.numpy() for x in inputs))))[0]
    with torch.no_grad():
        return torch.jit.load(str(path))(*inputs).numpy()


def pytorch_outputs(net: nn.Module, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    with torch.no_grad():
        return net(*inputs).numpy()


@pytest.mark.parametrize("model", MODELS)
def test_every_model_exports_and_runs_as_in_pytorch(abnormality, tmp_path, model):
    net, leads, samples = tiny_network(abnormality, model)
    inputs = (torch.randn(5, leads, samples, generator=torch.Generator().manual_seed(7)),)
    expected = pytorch_outputs(net, inputs)
    for fmt, (name, _) in FORMATS.items():
        path = tmp_path / fmt / name
        path.parent.mkdir()
        if (model, fmt) in REFUSED:
            with pytest.raises(UserError, match=rf"^format={fmt}: the \w+ file of \w+ "
                                                rf"{REFUSED[model, fmt]} .* so it was not "
                                                rf"kept; try format=torchscript$"):
                export_network(net, path, fmt, leads, samples)
            assert list(path.parent.iterdir()) == []
            continue
        check = export_network(net, path, fmt, leads, samples)
        np.testing.assert_allclose(run_exported(path, fmt, inputs), expected, rtol=0,
                                   atol=TOLERANCE, err_msg=fmt)
        assert check["max_abs_difference"] <= TOLERANCE and check["batch"] != 5
        assert [p.name for p in path.parent.iterdir()] == [name]  # no partial file left


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("head, n_metadata", [("linear", 2), ("gaussian", 2), ("coral", 0)])
def test_each_head_and_the_metadata_fusion_export(tmp_path, fmt, head, n_metadata):
    torch.manual_seed(0)
    net = FCNWang(in_leads=3, n_samples=32, n_outputs=4, head=head, n_metadata=n_metadata,
                  filters=[4, 4, 4], lin_ftrs_head=[8]).eval()
    path = tmp_path / FORMATS[fmt][0]
    export_network(net, path, fmt, 3, 32, n_metadata=n_metadata)
    generator = torch.Generator().manual_seed(3)
    inputs = (torch.randn(4, 3, 32, generator=generator),
              *([torch.randn(4, n_metadata, generator=generator)] if n_metadata else []))
    outputs = run_exported(path, fmt, inputs)
    assert outputs.shape == (4, 8 if head == "gaussian" else 4)  # gaussian: means, log-variances
    np.testing.assert_allclose(outputs, pytorch_outputs(net, inputs), rtol=0, atol=TOLERANCE)
    if n_metadata:  # the metadata input is used, not traced as a constant
        other = (inputs[0], inputs[1] + 1)
        assert not np.allclose(run_exported(path, fmt, other), outputs, atol=1e-3)


def test_the_contract_holds_the_inputs_metadata_standardisation_and_thresholds(abnormality,
                                                                              tmp_path):
    cfg, objective = abnormality
    torch.manual_seed(0)
    net = FCNWang(in_leads=2, n_samples=32, n_outputs=6, n_metadata=2, filters=[4, 4, 4],
                  lin_ftrs_head=[8])
    card = {"config": {"task": {"name": "abnormality", "metadata_columns": ["age", "is_male"],
                                "objective": OmegaConf.to_container(cfg.task.objective)}},
            "input_contract": {"leads": ["DI", "DII"], "n_samples": 32, "units": "mV",
                               "sampling_rate_hz": 400.0, "signal_steps": {"scale": 0.001}},
            "metadata_statistics": {"age": {"mean": 50.0, "std": 10.0}},
            "thresholds": {"AF": 0.25, "ST": float("nan")}}
    model = TrainedModel(net, objective, card, tmp_path / "best.ckpt")
    onnx_file, contract_file, _ = export_model(model, tmp_path / "export", "onnx")
    contract = json.loads(contract_file.read_text())  # plain JSON: NaN written as null
    assert contract["inputs"]["tracings"]["shape"] == ["batch", 2, 32]
    assert contract["inputs"]["tracings"]["leads"] == ["DI", "DII"]
    assert contract["inputs"]["tracings"]["signal_steps"] == {"scale": 0.001}
    assert contract["inputs"]["metadata"]["columns"] == ["age", "is_male"]
    assert contract["inputs"]["metadata"]["standardisation"] == {"age": {"mean": 50.0,
                                                                          "std": 10.0}}
    assert contract["outputs"]["outputs"]["columns"] == objective.output_names
    assert contract["task"]["thresholds"] == {"AF": 0.25, "ST": None}
    inputs = (torch.randn(3, 2, 32), torch.randn(3, 2))
    np.testing.assert_allclose(run_exported(onnx_file, "onnx", inputs),
                               pytorch_outputs(net, inputs), rtol=0, atol=TOLERANCE)
    with pytest.raises(UserError, match=r"^output_dir: '.*model.onnx' exists; nothing is "):
        export_model(model, tmp_path / "export", "onnx")
    old = TrainedModel(net, objective, {**card, "input_contract": {}}, tmp_path / "old.ckpt")
    with pytest.raises(UserError, match=r"^run: '.*old.ckpt' carries no input contract"):
        export_model(old, tmp_path / "old", "torchscript")
    assert not (tmp_path / "old").exists()


class BatchDependent(nn.Module):
    """A network whose trace does not generalise: a branch on the batch size, which the
    export's example batch fixes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1.0 if x.shape[0] == 2 else 2.0
        return x.mean(dim=2) * scale


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_that_differs_from_pytorch_is_not_kept(tmp_path, fmt):
    path = tmp_path / FORMATS[fmt][0]
    with pytest.raises(UserError, match=rf"^format={fmt}: the \w+ file of BatchDependent gives "
                                        r"outputs [\d.e+-]+ away from the PyTorch network's .* "
                                        r"so it was not kept; try format="):
        export_network(BatchDependent(), path, fmt, 2, 8)
    assert list(tmp_path.iterdir()) == []


class Spectrum(nn.Module):
    """A network of an operation that the TorchScript-based ONNX exporter cannot express
    (the FFT)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x, dim=2).abs().mean(dim=2)


def test_a_network_the_format_cannot_express_is_named_with_the_other_format(tmp_path):
    with pytest.raises(UserError, match=r"^format=onnx: the network Spectrum cannot be exported "
                                        r"to ONNX \(.+\); try format=torchscript$"):
        export_network(Spectrum(), tmp_path / "model.onnx", "onnx", 2, 8)
    assert list(tmp_path.iterdir()) == []
    export_network(Spectrum(), tmp_path / "model.pt", "torchscript", 2, 8)  # the other works


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(UserError, match=r"^format: 'tflite' is not one of onnx, torchscript; "
                                        r"set format=onnx or format=torchscript$"):
        export_network(BatchDependent(), tmp_path / "m", "tflite", 2, 8)
    with pytest.raises(UserError, match=r"^opset: 17 applies to format=onnx only"):
        export_network(BatchDependent(), tmp_path / "m", "torchscript", 2, 8, opset=17)
    (tmp_path / "model.pt").write_text("mine")
    with pytest.raises(UserError, match=r"^output_dir: '.*model.pt' exists; nothing is "
                                        r"overwritten"):
        export_network(Spectrum(), tmp_path / "model.pt", "torchscript", 2, 8)
    assert (tmp_path / "model.pt").read_text() == "mine"
