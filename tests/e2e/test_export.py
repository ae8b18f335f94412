"""``ecgexp-export`` on the session's short run: the ONNX file, run by onnxruntime on the run's
own test exams, gives the scores the run predicted for them; its contract JSON holds the run's
leads, thresholds and output columns; the TorchScript file beside it gives the same outputs;
nothing is overwritten."""

import json
import shutil

import numpy as np
import onnxruntime
import pandas as pd
import torch
import yaml
from helpers.commands import run_in_process
from helpers.records import synthetic_tracings


def test_export_writes_checked_networks_and_their_contract(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    exported = run_in_process("ecgexp-export", tmp_path, str(run))  # the run as first argument
    assert exported.returncode == 0, exported.stderr[-3000:]
    onnx_file = run / "export" / "model.onnx"

    config = yaml.safe_load((run / "config.yaml").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    table = pd.read_csv(run / "predictions_test.csv").head(8)
    scores = [column for column in table if column.startswith("score_")]
    contract = json.loads((run / "export" / "model.onnx.json").read_text())
    tracings = contract["inputs"]["tracings"]
    assert tracings["leads"] == config["preprocessing"]["leads"]
    assert tracings["shape"] == ["batch", len(tracings["leads"]), config["model"]["n_samples"]]
    assert tracings["units"] == "mV" and "metadata" not in contract["inputs"]
    assert contract["outputs"]["outputs"]["columns"] == scores
    assert contract["task"]["thresholds"] == {label: metrics["val"][label]["threshold"]
                                              for label in contract["task"]["labels"]}
    check = contract["check"]
    assert 0 <= check["max_abs_difference"] <= 1e-5
    assert exported.stdout.startswith(f"Exported ResNet1d (ONNX, opset {check['opset']}): "
                                      f"{onnx_file}\nIts input contract: {onnx_file}.json\n")
    assert f"largest difference from PyTorch {check['max_abs_difference']:.2g} " \
           f"(tolerance 1e-05)" in exported.stdout

    exams = synthetic_tracings(trained_run.parent / "data", table.exam_id.to_numpy())
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    [logits] = session.run(["outputs"], {"tracings": exams})
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), table[scores].to_numpy(), rtol=1e-4,
                               atol=1e-5)  # the run's own predictions of its test exams

    written = onnx_file.read_bytes()
    again = run_in_process("ecgexp-export", tmp_path, f"run={run}")
    assert again.returncode == 2
    assert again.stderr == f"error: output_dir: '{onnx_file}' exists; nothing is overwritten " \
                           f"(choose another output_dir or move the file)\n"
    assert onnx_file.read_bytes() == written

    scripted = run_in_process("ecgexp-export", tmp_path, f"run={run}", "format=torchscript")
    assert scripted.returncode == 0, scripted.stderr[-3000:]
    assert json.loads((run / "export" / "model.pt.json").read_text())["file"] == "model.pt"
    with torch.no_grad():
        outputs = torch.jit.load(run / "export" / "model.pt")(torch.from_numpy(exams)).numpy()
    np.testing.assert_allclose(outputs, logits, rtol=0, atol=1e-5)
