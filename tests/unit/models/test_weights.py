"""``model.weights=<path>``: published ``model.pth`` files, bare state dicts and ecgexp
checkpoints load into the configured network; mismatches and unsafe files fail clearly."""

import argparse
import functools
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers.commands import run_in_process
from hydra.utils import instantiate

from ecgexp.models.resnet1d import ResNet1d
from ecgexp.tasks.build import build_network
from ecgexp.tasks.module import ECGModule

# model=resnet1d_small with the six abnormality outputs, written out from its YAML file.
SMALL = dict(blocks=[[16, 1024], [32, 256], [48, 64], [64, 16]], kernel_size=9, dropout=0.2,
             n_outputs=6)


def trained_looking_model(seed: int = 7) -> ResNet1d:
    """A small model with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = ResNet1d(**SMALL)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0.0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture
def tracings():
    return torch.randn(3, 12, 4096, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("layout", ["published", "bare", "checkpoint"])
def test_weights_load_into_the_configured_model(compose_train, tmp_path, tracings, layout):
    source = trained_looking_model()
    state = source.state_dict()
    path = tmp_path / "weights.pth"
    if layout == "published":  # docs/studies.md §2.2: (epoch, model, valid_loss, optimizer)
        optimizer = torch.optim.Adam(source.parameters())
        torch.save({"epoch": 12, "model": state, "valid_loss": 0.25,
                    "optimizer": optimizer.state_dict()}, path)
    elif layout == "bare":
        torch.save(state, path)
    else:  # an ecgexp checkpoint: the LightningModule holds the network as `net`
        cfg = compose_train("experiment=demo")
        module = ECGModule(source, instantiate(cfg.task.objective),
                           functools.partial(torch.optim.Adam))
        torch.save({"epoch": 3, "state_dict": module.state_dict()}, path)
    cfg = compose_train("experiment=demo", f"model.weights={path}")
    loaded = build_network(cfg)
    torch.testing.assert_close(outputs(loaded, tracings), outputs(source, tracings),
                               rtol=0, atol=0)
    fresh = build_network(compose_train("experiment=demo"))
    assert not torch.allclose(outputs(fresh, tracings), outputs(source, tracings))


def test_a_mismatching_config_lists_every_problem(compose_train, tmp_path):
    state = trained_looking_model().state_dict()  # 6 outputs from 64 x 16 = 1024 features
    state["extra.weight"] = torch.zeros(2)
    del state["resblock1d_0.bn1.running_var"]
    path = tmp_path / "weights.pth"
    torch.save({"model": state}, path)
    cfg = compose_train("experiment=demo", "task=age", f"model.weights={path}")  # 1 output
    with pytest.raises(ValueError) as error:
        build_network(cfg)
    message = str(error.value)
    assert "model.weights" in message and str(path) in message
    assert "lin.weight: file (6, 1024) vs model (1, 1024)" in message
    assert "lin.bias: file (6,) vs model (1,)" in message
    assert re.search(r"missing in the file \(1\): resblock1d_0\.bn1\.running_var", message)
    assert re.search(r"unexpected in the file \(1\): extra\.weight", message)
    assert "the task's objective (outputs, head)" in message and "model.blocks" in message


@pytest.mark.parametrize("extra", [argparse.Namespace(lr=1e-3), np.float64(0.25)])
def test_pickled_objects_are_refused_unless_trusted(compose_train, tmp_path, tracings, extra):
    """torch >= 2.6 refuses the published files (NumPy valid_loss) with weights_only=True."""
    source = trained_looking_model()
    path = tmp_path / "model.pth"
    torch.save({"epoch": 1, "model": source.state_dict(), "valid_loss": extra}, path)
    with pytest.raises(ValueError) as error:
        build_network(compose_train("experiment=demo", f"model.weights={path}"))
    message = str(error.value)
    assert f"model.weights: '{path}'" in message and "weights_only" in message
    assert "model.weights_trusted=true" in message
    trusted = build_network(compose_train("experiment=demo", f"model.weights={path}",
                                          "model.weights_trusted=true"))
    torch.testing.assert_close(outputs(trusted, tracings), outputs(source, tracings))


def test_missing_file_names_the_key(compose_train, tmp_path):
    path = tmp_path / "nowhere.pth"
    with pytest.raises(ValueError, match=rf"model.weights: no .*{re.escape(str(path))}"):
        build_network(compose_train("experiment=demo", f"model.weights={path}"))


def test_cli_run_predicts_with_the_given_weights(tmp_path):
    """With no training epoch the run's test predictions are the weights' own: recomputed here
    from the stored tracings (HDF5 rows, (samples, leads)) and the saved state dict."""
    state = trained_looking_model(seed=11).state_dict()
    torch.save({"epoch": 5, "model": state, "valid_loss": 0.5}, tmp_path / "model.pth")
    result = run_in_process("ecgexp", tmp_path, "experiment=demo", "dataset.n_exams=120",
                            "trainer.max_epochs=0", "loader.num_workers=0", "loader.batch_size=16",
                            "callbacks.progress_bar=null", "logger=none",
                            "dataset.split.val_fraction=0.3", "dataset.split.test_fraction=0.3",
                            f"model.weights={tmp_path / 'model.pth'}")
    assert result.returncode == 0, result.stderr[-3000:]
    (predictions_csv,) = (tmp_path / "outputs").rglob("predictions_test.csv")
    predictions = pd.read_csv(predictions_csv)

    exams = {}
    for part in sorted((tmp_path / "data" / "synthetic_n120_seed0").glob("exams_part*.hdf5")):
        with h5py.File(part) as handle:
            exams.update(zip(handle["exam_id"][:], handle["tracings"][:]))
    x = torch.from_numpy(np.stack([exams[e] for e in predictions.exam_id])).transpose(1, 2)
    model = ResNet1d(**SMALL)
    model.load_state_dict(state)
    expected = torch.sigmoid(outputs(model, x.float())).numpy()
    scores = predictions.filter(like="score_").to_numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-5)
