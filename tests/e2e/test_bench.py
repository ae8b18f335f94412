"""The benchmark suite (``ecgexp-bench``) and the data-path optimisations it measures: whole
batches read by ``ExamDataset.__getitems__`` and the DataModule's loader options.

The suite runs once with tiny sizes (a small network, a few steps); timings are never asserted,
only the structure of the results and the checks the benchmarks make themselves: that their two
sides compute the same thing, and that a failed check or a benchmark that raises is recorded
while the suite goes on and writes its file.
"""

from __future__ import annotations

import json
import math
import os
import sys
from functools import partial

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers.commands import run_in_process
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from ecgexp.bench import bootstrap, checks, gpu, heatmap, preprocess, training
from ecgexp.bench.common import CONF_DIR, Context, datamodule, initial_weights, raw_tracings
from ecgexp.bench.flops import forward_flops, training_flops
from ecgexp.bench.report import Figure, Result
from ecgexp.bench.runner import BENCHMARKS, check_names, run_benchmark, run_suite
from ecgexp.bench.training import check_same_step
from ecgexp.data.datamodule import ExamDataModule
from ecgexp.data.dataset import ExamDataset, collate_exams
from ecgexp.data.source import HDF5Source
from ecgexp.data.splits import first_n_split
from ecgexp.models.resnet1d import ResNet1d
from ecgexp.signal.leads import lead_indices
from ecgexp.startup import bare_arguments_to_override

TINY = ["exams=240", "training.warmup=1", "training.steps=2", "training.rounds=1",
        "dropout.batch_size=4", "dropout.warmup=1", "dropout.steps=1", "dropout.rounds=1",
        "dropout.check_elements=100000",
        "data.batches=5", "data.warmup_batches=1", "data.repeats=1", "data.read_batches=3",
        "inference.exams=32", "inference.eval_batch_sizes=[16]", "inference.repeats=1",
        "inference.compile=false",
        "predict.exams=16", "predict.batch_size=8", "predict.repeats=1",
        "predict.wfdb.records=8", "predict.wfdb.num_workers=0", "predict.memory.sizes=[20,40]",
        "preprocess.records=12", "preprocess.step_records=4", "preprocess.repeats=1",
        "bootstrap.resamples=50", "bootstrap.repeats=1", "heatmap.exams=4",
        "heatmap.loop_exams=2", "heatmap.batch_sizes=[2,4]", "scaling.sizes=[60]",
        "reports.sizes=[300,600]", "reports.largest=null",
        "reports.labels=1", "isolate=false", "backbones.models=[resnet1d_small]",
        "backbones.linear_probe=[resnet1d_small]", "backbones.max_batch_size=2",
        "backbones.seconds=0", "backbones.steps=1", "backbones.rounds=1",
        "probe.model=resnet1d_small",
        "probe.exams=96", "probe.batch_size=16", "probe.warmup=1"]
SMALL_TRAINING = ["model=resnet1d_small", "loader.batch_size=8", "loader.num_workers=0"]


def test_dropout_masks_drop_the_same_share_and_the_bench_sees_a_mask_off(monkeypatch):
    """Both dropouts pass the share checks; a dropout that keeps everything fails them."""
    from ecgexp.bench import dropout

    assert all(check.passed for check in dropout.share_checks(0.2, 100_000))
    monkeypatch.setattr(dropout.Dropout, "forward", lambda self, x: x)
    failed = [c.name for c in dropout.share_checks(0.2, 100_000) if not c.passed]
    assert failed == ["ecgexp Dropout: kept fraction vs 1 - p (p=0.2, 100000 elements)",
                      "ecgexp Dropout: kept values vs 1 / (1 - p)"]


def test_ecgexp_dropout_keeps_one_minus_p_and_scales_like_torch():
    from ecgexp.models.resnet1d import Dropout

    torch.manual_seed(0)
    x = torch.randn(200, 1000, requires_grad=True)
    out = Dropout(0.8).train()(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.2) < 5 * (0.2 * 0.8 / x.numel()) ** 0.5
    torch.testing.assert_close(out[kept], x[kept] * 5)
    out.sum().backward()  # the gradient is the mask, scaled
    torch.testing.assert_close(x.grad, kept.float() * 5)
    assert torch.equal(Dropout(0.8).eval()(x), x)


def bench_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("bench", overrides=[*TINY, *overrides])
    cfg.train_overrides += SMALL_TRAINING
    return cfg


# --------------------------------------------------------------------------------------------
# the suite


@pytest.mark.slow
def test_suite_writes_results_with_ratios(tmp_path):
    results = run_suite(bench_config(f"output_dir={tmp_path}"))
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and files[0].name.count("-") >= 3  # <date>-<host>.json
    written = json.loads(files[0].read_text())
    assert written["benchmarks"].keys() == set(BENCHMARKS)
    assert list(written["benchmarks"]) == list(results["benchmarks"])
    machine = written["machine"]
    for key in ("cpu_count", "cpu_capability", "torch_threads", "torch", "device"):
        assert machine[key] is not None
    assert written["suite"]["wall_s"] > 0 and written["suite"]["config"]["exams"] == 240
    assert written["suite"]["completed"] and written["suite"]["errors"] == {}
    assert written["suite"]["checks"]["failed"] == []
    for name, entry in written["benchmarks"].items():
        if entry["status"] == "skipped":
            assert name == "gpu" and not torch.cuda.is_available()
            assert "CUDA" in entry["reason"] and entry["figures"] == []
            continue
        assert entry["status"] == "ok" and entry["figures"], name
        assert bool(entry["checks"]) is (name not in ("gpu", "scaling")), name
        for check in entry["checks"]:
            assert check["passed"] and check["observed"] <= check["tolerance"], check
        for figure in entry["figures"]:
            assert figure["ratio"] == pytest.approx(figure["figure"] / figure["baseline"],
                                                    rel=1e-12)
            assert {"name", "unit", "baseline_name", "target", "met"} <= figure.keys()
            if figure["target"] is None:
                assert figure["met"] is None
            else:
                op, value = figure["target"]["op"], figure["target"]["value"]
                expected = figure["ratio"] >= value if op == ">=" else figure["ratio"] <= value
                assert figure["met"] is expected
    training = written["benchmarks"]["training"]["details"]
    assert 0 < training["forward_gflop_per_exam"] < training["training_gflop_per_exam"]
    backbone_figures_are_counted(written["benchmarks"]["backbones"])
    assert written["benchmarks"]["bootstrap"]["details"]["data"].startswith("CODE-test")
    scaling = written["benchmarks"]["scaling"]["details"]["per_size"]
    assert all(size["main_peak_rss_kib"] > 0 for size in scaling.values())


def test_figure_ratio_and_target_directions():
    faster = Figure("rate", 9.0, 10.0, "exams/s", "plain", target=0.95)
    assert faster.ratio == 0.9 and faster.met is False
    smaller = Figure("memory", 11.0, 10.0, "MiB", "1k", target=1.25, direction="at_most")
    assert smaller.met is True and smaller.as_dict()["target"] == {"op": "<=", "value": 1.25}
    assert Figure("info", 1.0, 2.0, "", "x").met is None


def test_unknown_benchmark_lists_valid_names(tmp_path):
    assert check_names(["scaling", "training"]) == ["training", "scaling"]
    with pytest.raises(ValueError,
                       match="'trainig'.*valid names: training, backbones, probe, dropout, data"):
        check_names(["trainig"])
    finished = run_in_process("ecgexp-bench", tmp_path, "trainig")
    assert finished.returncode != 0
    assert "valid names: training, backbones, probe, dropout, data" in finished.stderr


@pytest.mark.parametrize("argv, key, many, expected", [
    (["ecgexp-bench"], "benchmarks", True, ["ecgexp-bench"]),
    (["ecgexp-bench", "training"], "benchmarks", True,
     ["ecgexp-bench", "benchmarks=['training']"]),
    (["ecgexp-bench", "training", "data", "exams=512"], "benchmarks", True,
     ["ecgexp-bench", "benchmarks=['training','data']", "exams=512"]),
    (["ecgexp-bench", "exams=512", "training"], "benchmarks", True,
     ["ecgexp-bench", "exams=512", "training"]),
    (["ecgexp-bench", "--cfg", "job"], "benchmarks", True, ["ecgexp-bench", "--cfg", "job"]),
    (["ecgexp-convert-keras", "it's.hdf5", "other"], "input", False,
     ["ecgexp-convert-keras", "input='it\\'s.hdf5'", "other"]),
])
def test_bare_arguments_to_override(monkeypatch, argv, key, many, expected):
    monkeypatch.setattr(sys, "argv", list(argv))
    bare_arguments_to_override(key, many=many)
    assert sys.argv == expected


def test_gpu_benchmark_records_skip_without_cuda(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = bench_config()
    entry = run_benchmark("gpu", cfg, Context(cfg, tmp_path))
    assert entry["status"] == "skipped" and entry["figures"] == []
    assert entry["reason"] == "no CUDA device (torch.cuda.is_available() is false)"
    assert gpu.__doc__  # the module documents what it would measure


# --------------------------------------------------------------------------------------------
# backbones: benchmark 1 per model config


def backbone_figures_are_counted(entry: dict) -> None:
    """The suite's tiny run (TINY: resnet1d_small trained whole and as a linear probe, one
    timed step each): each has its figure and its four checks, and FLOPs per exam that agree
    with flops.py's independent count (passes on one exam: an eval-mode forward, a training
    step on a copy) of the config's network (6 labels)."""
    measured = entry["details"]["backbones"]
    assert list(measured) == ["resnet1d_small", "resnet1d_small (linear_probe)"]
    assert [figure["target"]["value"] for figure in entry["figures"]] == [0.95, 0.95]
    for label in measured:
        own = [check for check in entry["checks"] if check["name"].startswith(f"{label}: ")]
        assert len(own) == 4, own  # batch, loss, gradients, weights
        assert [len(measured[label]["step_s"][side][0]) for side in ("plain", "ecgexp")] == [1, 1]
        assert (measured[label]["batch_size"], measured[label]["timed_steps"]) == (2, 1)
        assert measured[label]["sizing_step_s"] > 0
    small = ResNet1d(n_samples=4096, n_outputs=6, kernel_size=9, dropout=0.2,
                     blocks=[[16, 1024], [32, 256], [48, 64], [64, 16]])
    full, probe = measured["resnet1d_small"], measured["resnet1d_small (linear_probe)"]
    assert full["forward_gflop_per_exam"] * 1e9 == pytest.approx(forward_flops(small, 12, 4096),
                                                                 rel=1e-12)
    assert full["training_gflop_per_exam"] * 1e9 == pytest.approx(
        training_flops(small, 12, 4096), rel=1e-12)
    assert full["first_step"]["trained_parameters"] == sum(p.numel() for p in small.parameters())
    assert probe["forward_gflop_per_exam"] == full["forward_gflop_per_exam"]
    # The probe trains the head alone, Linear(64 filters x 16 samples -> 6 labels): its
    # backward pass is that layer's weight gradient.
    assert probe["first_step"]["trained_parameters"] == 64 * 16 * 6 + 6
    assert (probe["training_gflop_per_exam"] - probe["forward_gflop_per_exam"]) * 1e9 \
        == pytest.approx(2 * 64 * 16 * 6)


def test_interleaved_steps_are_timed_apart(monkeypatch):
    """``InterleavedClock`` steps the plain loop at the start of each ecgexp step, on the next
    batch of its exams, and takes that step's time out of ecgexp's interval (a clock here
    that the plain step moves by 0.3 s, and ecgexp's own work by 0.5 s)."""
    from ecgexp.bench import common

    now = [0.0]
    monkeypatch.setattr(common.time, "perf_counter", lambda: now[0])
    batches = []

    class Plain:
        def step(self, tracings, targets):
            batches.append(tracings.tolist())
            now[0] += 0.3

    clock = common.InterleavedClock(Plain(), torch.arange(8.0), torch.zeros(8), batch_size=2)
    for step in range(4):
        clock.on_train_batch_start(None, None, None, step)
        now[0] += 0.5
        clock.on_train_batch_end(None, None, None, None, step)
    assert batches == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]
    assert clock.intervals(warmup=1) == pytest.approx([0.5, 0.5, 0.5])
    assert clock.plain_intervals(warmup=1) == pytest.approx([0.3, 0.3, 0.3])
    assert clock.intervals(warmup=2) == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("per_exam_s, batch_size, steps", [
    (0.01, 16, 7),  # 0.02 s at 2 exams: doubled to the cap, 0.16 s a step; 1.0 s in 7 steps
    (0.04, 8, 4),  # 0.32 s at 8 exams, over min_step_s: 4 steps fill 1.0 s
    (0.3, 2, 2),  # 0.6 s at 2 exams: no doubling; 2 steps
    (2.0, 2, 1),  # 4 s at 2 exams: at least `steps` (1), though it overfills `seconds`
])
def test_a_backbone_is_sized_by_its_plain_step(monkeypatch, per_exam_s, batch_size, steps):
    """The batch doubles from ``batch_size`` until a plain step takes ``min_step_s`` (at most
    ``max_batch_size``), and the timed steps fill ``seconds``, within ``steps`` ..
    ``max_steps``; here a step takes ``per_exam_s`` per exam of its batch."""
    from omegaconf import OmegaConf

    from ecgexp.bench import backbones

    monkeypatch.setattr(backbones, "plain_step_seconds",
                        lambda cfg, device: per_exam_s * cfg.loader.batch_size)
    settings = OmegaConf.create({"batch_size": 2, "max_batch_size": 16, "min_step_s": 0.25,
                                 "steps": 1, "max_steps": 12, "seconds": 1.0})
    asked = []

    def config(batch, n_steps):
        asked.append(batch)
        return OmegaConf.create({"loader": {"batch_size": batch}})

    sized = backbones.sizing(config, settings, "cpu")
    assert (sized.batch_size, sized.steps) == (batch_size, steps)
    assert sized.step_s == pytest.approx(per_exam_s * batch_size)
    assert asked == [2 * 2 ** k for k in range(asked.index(batch_size) + 1)]
    many = backbones.sizing(config, OmegaConf.merge(settings, {"seconds": 100.0}), "cpu")
    assert many.steps == 12  # max_steps


def test_a_backbone_that_raises_is_a_failed_check_and_the_others_still_run(monkeypatch,
                                                                           tmp_path):
    from omegaconf import OmegaConf

    from ecgexp.bench import backbones

    def measure(context, settings, device, model, finetune):
        if model == "broken":
            raise RuntimeError("not enough memory\n(more)")
        return (Figure(f"{model}: samples/s", 2.0, 2.0, "samples/s", "plain", 0.95),
                [checks.exact(f"{model}: batch", 1.0, 1.0, "the same")], {"model": model})

    monkeypatch.setattr(backbones, "measure", measure)
    cfg = OmegaConf.create({"device": "cpu", "backbones": {
        "models": ["broken", "fine"], "linear_probe": ["broken"], "batch_size": 2,
        "max_batch_size": 2, "min_step_s": 0.25, "warmup": 1, "steps": 1, "max_steps": 1,
        "seconds": 0, "rounds": 1, "check_exams": 2, "overrides": []}})
    entry = run_benchmark("backbones", cfg, Context(cfg, tmp_path))
    assert entry["status"] == "failed" and len(entry["figures"]) == 1
    assert [(check["name"], check["passed"]) for check in entry["checks"]] == [
        ("broken: ran (RuntimeError: not enough memory (more))", False), ("fine: batch", True),
        ("broken (linear_probe): ran (RuntimeError: not enough memory (more))", False)]
    assert entry["details"]["backbones"]["broken (linear_probe)"].items() >= {
        "model": "broken", "finetune": "linear_probe",
        "error": "RuntimeError: not enough memory (more)"}.items()


def test_fused_lstm_flops_are_its_matrix_products():
    """FlopCounterMode sees nothing of torch's fused CPU LSTM; ``backbones.flop_counter``
    counts the products of the LSTM's equations, per step, layer and direction the 4 gates of
    ``W_ih x + W_hh h``, and twice as many backward (the weights' gradients and those of the
    inputs and states)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ecgexp.bench.backbones import flop_counter

    batch, steps, inputs, hidden = 2, 5, 3, 4
    lstm = torch.nn.LSTM(inputs, hidden, num_layers=2, batch_first=True, bidirectional=True)
    x = torch.randn(batch, steps, inputs)
    gates = 4 * hidden
    by_hand = 2 * batch * steps * 2 * (gates * (inputs + hidden)  # layer 1, both directions
                                       + gates * (2 * hidden + hidden))  # layer 2
    for counter, expected in ((FlopCounterMode(display=False), 0), (flop_counter(), by_hand)):
        with counter:
            out = lstm(x)[0]
        assert counter.get_total_flops() == expected
        with counter:  # entering again starts from zero
            out.sum().backward()
        assert counter.get_total_flops() == 2 * expected


def test_attention_and_grouped_convolution_flops_by_hand():
    """``backbones.flop_counter`` counts torch's fused CPU attention kernel (invisible to
    FlopCounterMode) as its two products, and a grouped convolution's weight gradient once per
    group (FlopCounterMode counts it ``groups`` times)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ecgexp.bench.backbones import flop_counter

    batch, heads, steps, width = 2, 3, 5, 4
    q, k, v = (torch.randn(batch, heads, steps, width, requires_grad=True) for _ in range(3))
    products = 2 * batch * heads * steps * steps * width  # Q K^T, and the weights times V
    for counter, expected in ((FlopCounterMode(display=False), 0), (flop_counter(), products)):
        with counter:
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        assert counter.get_total_flops() == 2 * expected
        with counter:
            out.sum().backward()  # the scores again, their gradient and V's, Q's and K's
        assert counter.get_total_flops() == 5 * expected

    channels, samples, kernel, groups = 8, 20, 3, 4
    conv = torch.nn.Conv1d(channels, 2 * channels, kernel, groups=groups)
    x = torch.randn(batch, channels, samples, requires_grad=True)
    forward = 2 * batch * (samples - kernel + 1) * 2 * channels * channels // groups * kernel
    for counter, weight_gradient in ((FlopCounterMode(display=False), groups * forward),
                                     (flop_counter(), forward)):
        with counter:
            out = conv(x)
        assert counter.get_total_flops() == forward
        with counter:
            out.sum().backward()
        assert counter.get_total_flops() == forward + weight_gradient  # input, weight gradients


# --------------------------------------------------------------------------------------------
# FLOPs


def test_flops_are_two_per_multiply_accumulate():
    """FlopCounterMode's count against a hand count: a convolution (padding 0, stride 2) and
    a linear layer, 2 FLOPs per multiply-accumulate."""
    c_in, c_out, kernel, samples, outputs = 3, 4, 5, 33, 2
    l_out = (samples - kernel) // 2 + 1
    net = torch.nn.Sequential(torch.nn.Conv1d(c_in, c_out, kernel, stride=2), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(c_out * l_out, outputs))
    conv = 2 * c_out * c_in * kernel * l_out
    linear = 2 * c_out * l_out * outputs
    assert forward_flops(net, c_in, samples) == conv + linear
    # Backward: the weights' gradients of both layers, the linear layer's input gradient (the
    # convolution's input, the tracings, needs none).
    assert training_flops(net, c_in, samples) == 2 * conv + 3 * linear
    assert net.training and all(p.grad is None for p in net.parameters())  # left as it was


def test_resnet_training_step_is_about_three_forward_passes():
    net = ResNet1d(in_leads=8, n_samples=1024, blocks=[[16, 256], [32, 64]], kernel_size=9,
                   head="gaussian", n_metadata=2)
    forward = forward_flops(net, 8, 1024, n_metadata=2)
    assert forward > 2 * 16 * 8 * 9 * 256  # at least the stem convolution (to 16 x 256)
    assert 2.5 * forward < training_flops(net, 8, 1024, n_metadata=2) < 3 * forward


# --------------------------------------------------------------------------------------------
# the training benchmark's guard


@pytest.fixture
def small_run(tmp_path):
    cfg = bench_config()
    context = Context(cfg, tmp_path)
    train_cfg = context.train_config()
    return train_cfg, datamodule(train_cfg)


def verdicts(found: list) -> dict[str, bool]:
    """``{first word of the check's name: passed}``."""
    return {check.name.split()[0].rstrip(":"): check.passed for check in found}


def test_plain_and_ecgexp_steps_match(small_run, monkeypatch):
    train_cfg, dm = small_run
    state = initial_weights(train_cfg)
    positions = np.arange(2)
    batch = dm.datasets["train"].__getitems__(positions)
    raw = raw_tracings(dm, "train", positions)
    found, step = check_same_step(train_cfg, state, dm.training_targets(), batch, raw)
    assert verdicts(found) == {"batch": True, "loss": True, "gradients": True, "weights": True}
    # the stem's weight gradient: a term per position of its output (1024) of every exam
    assert np.isfinite(step["ecgexp_loss"]) and step["longest_reduction"] == 2 * 1024

    found, _ = check_same_step(train_cfg, state, dm.training_targets(), batch, raw + 1)
    assert verdicts(found) == {"batch": False, "loss": True, "gradients": True, "weights": True}
    assert found[0].observed == pytest.approx(1, rel=1e-4) and found[0].tolerance == 0
    shifted = {name: value + 0.01 if value.is_floating_point() else value
               for name, value in state.items()}

    class PlainFromOtherWeights(training.PlainLoop):
        def __init__(self, cfg, net_state, *args, **kwargs):
            super().__init__(cfg, shifted, *args, **kwargs)

    monkeypatch.setattr(training, "PlainLoop", PlainFromOtherWeights)
    found, step = check_same_step(train_cfg, state, dm.training_targets(), batch, raw)
    assert verdicts(found) == {"batch": True, "loss": False, "gradients": False,
                               "weights": False}
    loss = found[1]
    assert loss.observed == pytest.approx(abs(step["ecgexp_loss"] - step["plain_loss"])
                                          / abs(step["plain_loss"]), rel=1e-5)
    assert loss.observed > loss.tolerance == checks.rounding_tolerance(step["longest_reduction"])


# --------------------------------------------------------------------------------------------
# checks: tolerances against hand computations; what a failed check or an error leaves


def test_rounding_tolerance_against_hand_computation():
    assert checks.EPS32 == 2.0 ** -23
    assert checks.rounding_tolerance(16384) == 5 * 128 * 2.0 ** -23  # 5 sqrt(n) eps
    reference = np.array([3.0, 4.0], np.float32)  # norm 5
    near = checks.close("near", np.array([3.0, 4.0 + 2.0 ** -18], np.float32), reference, 16384)
    assert near.observed == 2.0 ** -18 / 5 and near.max_abs_difference == 2.0 ** -18
    assert near.passed and near.margin == pytest.approx(100)  # 5 * 128 * 2^-23 / (2^-18 / 5)
    far = checks.close("far", np.array([3.0, 4.0 + 2.0 ** -10], np.float32), reference, 16384)
    assert far.observed == 2.0 ** -10 / 5 > far.tolerance and not far.passed
    assert far.as_dict()["basis"] == "float32 rounding, 5 sqrt(16384) eps"
    assert heatmap.switch_allowance(1024) == 5 / 32


def test_exact_checks_and_differences():
    nan = np.array([np.inf, np.nan])
    assert checks.exact("same", nan, nan.copy(), "copies").passed  # NaN, Inf where both are
    assert checks.max_abs_difference(np.array([np.inf]), np.array([-np.inf])) == math.inf
    assert checks.max_abs_difference(nan, np.array([1.0, 2.0])) == math.inf
    assert checks.max_abs_difference(np.zeros(2), np.zeros(3)) == math.inf
    assert checks.max_abs_difference({"a": torch.ones(2)}, {"b": torch.ones(2)}) == math.inf
    assert checks.max_abs_difference({"a": torch.ones(2), "b": torch.zeros(1)},
                                     {"a": torch.ones(2), "b": torch.full((1,), 0.5)}) == 0.5
    assert checks.relative_difference(np.zeros(3), np.zeros(3)) == 0
    assert not checks.close("nan", np.array([1.0, np.nan]), np.ones(2), 10).passed
    assert checks.none_of("rejected", 2, "records rejected").as_dict()["passed"] is False


def test_longest_reduction_and_relu_units_by_hand():
    """Conv1d(3 -> 4, kernel 5, stride 2) on (8, 3, 65): 31 positions; BatchNorm over 8 * 31;
    Linear(124 -> 2)."""
    net = torch.nn.Sequential(torch.nn.Conv1d(3, 4, 5, stride=2), torch.nn.BatchNorm1d(4),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 31, 2))
    inputs = (torch.randn(8, 3, 65),)
    # forward 3 * 5, input gradient 4 * 5, linear 124 and 2
    assert checks.longest_reduction(net, inputs, weight_gradients=False) == 124
    # + the convolution's weight gradient and the batch statistics: 8 * 31 per channel
    assert checks.longest_reduction(net, inputs, weight_gradients=True) == 8 * 31
    assert net.training and net[1].num_batches_tracked == 0  # left as it was
    assert heatmap.fewest_relu_units(net, inputs[0][:1]) == 4 * 31


def test_failed_check_and_error_are_recorded_and_the_suite_goes_on(monkeypatch, tmp_path,
                                                                   capsys):
    def raises(cfg, context):
        raise RuntimeError("disk full")

    def disagrees(cfg, context):
        reference = np.ones(100, np.float32)
        return Result(figures=[Figure("exams/s, batched vs loop", 2.0, 1.0, "exams/s", "loop",
                                      target=0.9)],
                      checks=[checks.close("maps", reference * 1.001, reference, 4096)])

    monkeypatch.setattr(preprocess, "run", raises)
    monkeypatch.setattr(heatmap, "run", disagrees)
    monkeypatch.chdir(tmp_path)  # the fixtures are found from anywhere
    results = run_suite(bench_config(f"output_dir={tmp_path}",
                                     "benchmarks=[preprocess,bootstrap,heatmap]"))
    written = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert written["benchmarks"].keys() == results["benchmarks"].keys()
    entries = written["benchmarks"]
    assert entries["preprocess"]["status"] == "error"
    assert entries["preprocess"]["reason"] == "RuntimeError: disk full"
    assert entries["bootstrap"]["status"] == "ok"  # ran after the error
    assert entries["bootstrap"]["details"]["data"].startswith("CODE-test model_1")
    heat = entries["heatmap"]
    assert heat["status"] == "failed" and heat["figures"][0]["ratio"] == 2.0  # kept
    [check] = heat["checks"]
    assert check["passed"] is False and check["tolerance"] == checks.rounding_tolerance(4096)
    assert check["observed"] == pytest.approx(1e-3, rel=1e-4)
    assert check["max_abs_difference"] == pytest.approx(1e-3, rel=1e-4)
    suite = written["suite"]
    assert suite["completed"] and suite["errors"] == {"preprocess": "RuntimeError: disk full"}
    assert suite["checks"] == {"passed": 1, "failed": ["heatmap: maps"]}
    printed = capsys.readouterr()
    assert "ecgexp-bench: preprocess: error: RuntimeError: disk full" in printed.out
    assert "check failed: maps (relative difference)" in printed.out  # the table's row
    assert ("CHECK FAILED heatmap: maps: relative difference 0.001 > tolerance 3.81e-05"
            in printed.out)
    assert "ERROR preprocess: RuntimeError: disk full" in printed.out
    assert "Traceback" in printed.err and "disk full" in printed.err


def test_bootstrap_falls_back_to_random_data_and_says_so(tmp_path):
    *_, source = bootstrap.load_data(tmp_path)
    assert source == (f"random (seed 0): no dnn_predicts/other_seeds/model_1.npy and "
                      f"annotations/gold_standard.csv in {tmp_path}")


# --------------------------------------------------------------------------------------------
# whole-batch reads: the same tensors as per-exam reads


STORED_LEADS = ["V1", "V2", "V3", "V4", "V5", "V6", "DI", "DII", "DIII", "AVL", "AVF", "AVR"]
CANONICAL = ["DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
N_SAMPLES = 4096


@pytest.fixture
def two_files(tmp_path):
    """Two HDF5 files (8 + 7 exams, random float32 tracings in a permuted lead order); exams
    3 and 11 hold a NaN, exam 12 an Inf; labels y and two metadata columns."""
    rng = np.random.default_rng(0)
    ids = np.arange(1, 16)
    tracings = rng.standard_normal((15, N_SAMPLES, 12)).astype(np.float32)
    tracings[2, 100, 4] = np.nan
    tracings[10, 7, 0] = np.nan
    tracings[11, :, 3] = np.inf
    for name, rows in (("a.hdf5", slice(0, 8)), ("b.hdf5", slice(8, 15))):
        with h5py.File(tmp_path / name, "w") as handle:
            handle.create_dataset("tracings", data=tracings[rows])
            handle.create_dataset("exam_id", data=ids[rows])
    pd.DataFrame({"exam_id": ids, "y": ids * 0.5, "age": ids + 40.0,
                  "sex": ids % 2}).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path, dict(zip(ids.tolist(), tracings))


def expected_item(stored: np.ndarray, exam_id: int, scale: float, leads) -> dict | None:
    """Independent per-exam reference: lead selection, transposition, scale; None for NaN/Inf."""
    positions = [STORED_LEADS.index(lead) for lead in leads]
    tracing = stored[:, positions].T.astype(np.float32)
    if not np.isfinite(tracing).all():
        return None
    return {"tracing": tracing * np.float32(scale), "target": np.float32([exam_id * 0.5]),
            "exam_id": exam_id, "metadata": np.float32([exam_id + 40.0, exam_id % 2])}


def two_file_dataset(folder, nan_policy="skip", scale=2.0, leads=CANONICAL):
    source = HDF5Source(name="two", tracing_files=[str(folder / "a.hdf5"),
                                                   str(folder / "b.hdf5")],
                        labels_csv=str(folder / "labels.csv"), leads=STORED_LEADS,
                        scale=scale, nan_policy=nan_policy, drop_padding_rows=False,
                        split=partial(first_n_split, n_val=0))
    table, reader = source.load(["y"])
    return ExamDataset(table, reader, ["y"], lead_indices(STORED_LEADS, leads), scale,
                       nan_policy, metadata=table[["age", "sex"]].to_numpy())


@pytest.mark.parametrize("order", [
    list(range(15)),                       # sequential: runs of rows, across the file boundary
    [14, 2, 7, 8, 0, 11, 5, 5, 9, 3],      # shuffled, with a repeat and the bad exams
    [6, 7, 8, 9],                          # one run in each file
    [2, 10, 11],                           # nothing usable
])
@pytest.mark.parametrize("leads", [CANONICAL, ["V6", "DI", "AVR"]])
def test_batch_reads_equal_per_exam_reference(two_files, order, leads):
    folder, stored = two_files
    dataset = two_file_dataset(folder, leads=leads)
    batch = dataset.__getitems__(order)
    expected = [expected_item(stored[dataset.exam_ids[i]], dataset.exam_ids[i], 2.0, leads)
                for i in order]
    items = [dataset[i] for i in order]  # one exam at a time
    assert [item is None for item in items] == [e is None for e in expected]
    expected = [e for e in expected if e is not None]
    if not expected:
        assert batch is None and collate_exams(items) is None
        return
    assert batch["tracing"].dtype == torch.float32 and batch["tracing"].is_contiguous()
    assert batch["exam_id"].tolist() == [e["exam_id"] for e in expected]
    for key in ("tracing", "target", "metadata"):
        np.testing.assert_array_equal(batch[key].numpy(), np.stack([e[key] for e in expected]))
    per_exam = collate_exams(items)
    assert per_exam.keys() == batch.keys()
    for key in batch:
        assert torch.equal(per_exam[key], batch[key])


def test_batch_reads_raise_on_bad_exams(two_files):
    folder, _ = two_files
    dataset = two_file_dataset(folder, nan_policy="error")
    assert dataset.__getitems__([0, 1])["tracing"].shape == (2, 12, N_SAMPLES)
    with pytest.raises(ValueError, match=r"exam_id 3 \(row 2 of .*a\.hdf5\) has NaN/Inf.*"
                                         r"dataset\.nan_policy=skip"):
        dataset.__getitems__([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"exam_id 11 \(row 2 of .*b\.hdf5\)"):
        dataset.__getitems__([8, 9, 10])


def test_loader_workers_deliver_the_same_batches(two_files):
    folder, _ = two_files
    dataset = two_file_dataset(folder)
    order = [3, 14, 0, 6, 7, 8, 9, 1, 12, 13, 4, 5]
    batches = [order[i:i + 4] for i in range(0, len(order), 4)]
    in_process = [dataset.__getitems__(b) for b in batches]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=2,
                        collate_fn=collate_exams)
    for expected, delivered in zip(in_process, loader, strict=True):
        for key in expected:
            assert torch.equal(expected[key], delivered[key])


def test_datamodule_loader_options(two_files):
    folder, _ = two_files
    source = HDF5Source(name="two", tracing_files=str(folder / "*.hdf5"),
                        labels_csv=str(folder / "labels.csv"), leads=STORED_LEADS,
                        nan_policy="skip", drop_padding_rows=False,
                        split=partial(first_n_split, n_val=6))
    dm = ExamDataModule(source, ["y"], leads=CANONICAL, batch_size=4, eval_batch_size=5,
                        num_workers=2, prefetch_factor=3)
    dm.setup()
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert (train.batch_size, val.batch_size) == (4, 5)
    assert train.prefetch_factor == 3 and train.persistent_workers
    assert not train.pin_memory  # no trainer on a CUDA device
    assert [len(b["exam_id"]) for b in val] == [5]  # exam 3 (NaN) left out at set-up
    in_process = ExamDataModule(source, ["y"], leads=CANONICAL, batch_size=4)
    in_process.setup()
    assert in_process.val_dataloader().batch_size == 4  # eval_batch_size defaults to it
    assert in_process.train_dataloader().prefetch_factor is None  # no workers


def test_measurements_apart_run_in_their_own_process_unless_isolate_is_false(tmp_path,
                                                                             monkeypatch):
    """The peak-memory benchmarks' ``main(payload)`` runs as ``python -m <module>`` (another
    process id; its result through JSON, int keys becoming strings), or in this process with
    ``isolate=false``, giving the same result; a failing one names the benchmark and shows its
    error."""
    from omegaconf import OmegaConf

    from ecgexp.bench.apart import measured_apart

    (tmp_path / "probe_apart.py").write_text(
        "import os\nfrom ecgexp.bench.apart import main_of\n\n"
        "def main(payload):\n"
        "    if payload.get('fail'):\n        raise ValueError('the probe failed')\n"
        "    return {'pid': os.getpid(), 'sizes': {n: n * 2 for n in payload['sizes']}}\n\n"
        "if __name__ == '__main__':\n    main_of(main)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    payload = {"sizes": [10, 40]}
    apart = measured_apart(OmegaConf.create({"isolate": True}), "probe_apart", payload, 60, "x")
    here = measured_apart(OmegaConf.create({"isolate": False}), "probe_apart", payload, 60, "x")
    assert apart["pid"] != os.getpid() and here["pid"] == os.getpid()
    assert apart["sizes"] == here["sizes"] == {"10": 20, "40": 80}
    with pytest.raises(RuntimeError, match=r"(?s)bench probe: the measuring process failed:.*"
                                           r"ValueError: the probe failed"):
        measured_apart(OmegaConf.create({"isolate": True}), "probe_apart", {"fail": True}, 60,
                       "probe")


def test_a_second_run_of_the_day_keeps_the_first_runs_results(tmp_path):
    """Results files are named by date and host; a later run that day gets ``-2``, ``-3``
    and never replaces an earlier run's file, while a run replaces its own as it goes."""
    from ecgexp.bench.report import results_path, write_results

    first = results_path(tmp_path)
    assert write_results({"run": 1}, first) == first
    second = results_path(tmp_path)
    assert second.name == first.name.replace(".json", "-2.json")
    write_results({"run": 2}, second)
    write_results({"run": 2, "more": True}, second)  # its own file, after another benchmark
    assert json.loads(first.read_text()) == {"run": 1}
    assert json.loads(second.read_text()) == {"run": 2, "more": True}
    assert results_path(tmp_path).name.endswith("-3.json")
