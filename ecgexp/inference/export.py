"""A trained model's network for use outside ecgexp (``ecgexp-export``): an ONNX file (run with
onnxruntime) or a TorchScript file (run with ``torch.jit.load``), with its input contract
beside it as JSON.

The network, in eval mode and float32 on the CPU, is traced on an example batch of random
tracings (and metadata, when it takes some); the batch axis stays free:

- ``onnx``: ``torch.onnx.export(..., dynamo=False)``, torch's TorchScript-based exporter, with
  ``dynamic_axes`` on the batch: under a second for the small networks, seconds at full size,
  ``nn.LSTM`` as one ONNX ``LSTM`` node. torch 2.13 defaults to its ``torch.export``-based
  exporter (``dynamo=True``), which also gets ``Tensor.unfold`` along a negative dimension
  right (the pretrained encoders' windows, which this one mis-shapes: the check refuses
  them) but takes seconds for the smallest network and, for an LSTM, time that grows with the
  input length (a 4-unit LSTM: 18 s at 64 samples, 83 s at 256, so some 20 minutes at the
  4096 samples of CODE).
  ``opset``: torch's default (20) unless given.
- ``torchscript``: ``torch.jit.trace`` and ``torch.jit.save``.

A trace follows the code path the example batch takes: a branch on the values of the input is
fixed at the example's. So each written file is checked before it takes its final name: run
by onnxruntime (``CPUExecutionProvider``) or ``torch.jit.load`` on other random tracings, in a
batch of another size, its outputs must equal the PyTorch network's within ``tolerance``
(1e-5 by default, the largest absolute difference); a file that fails is removed and the
export refused with one line. A network the format cannot express is refused with one line
that names it and the other format.

Written into ``output_dir`` (default ``<run>/export``), never over an existing file:
``model.onnx`` or ``model.pt``, and ``<that file>.json``: the inputs (names, shapes, leads,
sampling rate, units, the signal steps the training data went through, the metadata columns
and their standardisation), the outputs (names, head, no activation applied) and what the
task makes of them (its objective, training statistics, labels and validation thresholds), and
the check (runtime, batch, measured difference).
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import ecgexp
from ecgexp.errors import UserError
from ecgexp.files import atomic_path, make_folder, write_text_atomic
from ecgexp.inference.model import TrainedModel, load_model
from ecgexp.run_folder import RunFolder, check_links_inside

# format -> (the file written, what the format is called in messages)
FORMATS = {"onnx": ("model.onnx", "ONNX"), "torchscript": ("model.pt", "TorchScript")}
# The names of the exported network's inputs (the metadata one only when it takes metadata)
# and of its output.
TRACINGS, METADATA, OUTPUTS = "tracings", "metadata", "outputs"
TOLERANCE = 1e-5
# The batch the network is traced on, and the other one the written file is checked on.
EXAMPLE_BATCH, CHECK_BATCH = 2, 3


def check_format(fmt: str) -> str:
    """``fmt`` if it is a format of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise UserError(f"format: '{fmt}' is not one of {', '.join(FORMATS)}; set "
                        f"{' or '.join(f'format={f}' for f in FORMATS)}")
    return fmt


def exported_files(output_dir: str | Path, fmt: str) -> tuple[Path, Path]:
    """``(network file, its contract JSON)`` of format ``fmt`` in ``output_dir``."""
    network = Path(output_dir) / FORMATS[check_format(fmt)][0]
    return network, network.with_name(network.name + ".json")


def new_files(output_dir: str | Path, fmt: str) -> tuple[Path, Path]:
    """:func:`exported_files`, refused if either exists (nothing is overwritten)."""
    files = exported_files(output_dir, fmt)
    for path in files:
        if path.exists():
            raise UserError(f"output_dir: '{path}' exists; nothing is overwritten (choose "
                            f"another output_dir or move the file)")
    return files


def random_inputs(n_leads: int, n_samples: int, n_metadata: int, batch: int,
                  seed: int) -> tuple[torch.Tensor, ...]:
    """``(tracings,)`` ``(batch, n_leads, n_samples)`` standard normal float32 (mV scale), and
    ``metadata`` ``(batch, n_metadata)`` (standardised scale) when ``n_metadata > 0``."""
    generator = torch.Generator().manual_seed(seed)
    tracings = torch.randn(batch, n_leads, n_samples, generator=generator)
    if not n_metadata:
        return (tracings,)
    return tracings, torch.randn(batch, n_metadata, generator=generator)


@contextlib.contextmanager
def _tracing():
    """Tracing with gradients enabled, so that what is recorded is the network's general code
    path, not one of torch's fused inference paths (``nn.TransformerEncoderLayer``'s fast path
    under ``torch.no_grad``, which the ONNX exporter cannot express). Left out: the warnings
    that the check of the written file answers (the shape checks of ``ECGNetwork`` traced as
    constants, the legacy exporter's deprecation notice, its note that an LSTM traced at one
    batch size may fail at another: the check runs another)."""
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript",
                                DeprecationWarning)
        warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size",
                                UserWarning)
        yield


def _write_onnx(net: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path,
                opset: int | None) -> None:
    names = [TRACINGS, METADATA][:len(example)]
    torch.onnx.export(net, example, str(path), dynamo=False, input_names=names,
                      output_names=[OUTPUTS], opset_version=opset,
                      dynamic_axes={name: {0: "batch"} for name in [*names, OUTPUTS]})


def _write_torchscript(net: torch.nn.Module, example: tuple[torch.Tensor, ...],
                       path: Path) -> None:
    torch.jit.save(torch.jit.trace(net, example, check_trace=False), str(path))


def _onnx_packages():
    """``(onnx, onnxruntime)``: the packages that read and run the ONNX file."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise UserError(f"format=onnx: needs the packages onnx and onnxruntime ({error.name} "
                        f"is missing: pip install 'ecgexp[export]'); or export with "
                        f"format=torchscript") from None
    return onnx, onnxruntime


def _run_onnx(path: Path, inputs: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, dict]:
    """Outputs of the ONNX file at ``path`` in onnxruntime on the CPU, and what ran it."""
    onnx, onnxruntime = _onnx_packages()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failure to run is reported below
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # a check, once
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    feed = {name: value.numpy() for name, value in zip([TRACINGS, METADATA], inputs)}
    [outputs] = session.run([OUTPUTS], feed)
    opset = next(entry.version for entry in onnx.load(str(path), load_external_data=False)
                 .opset_import if entry.domain in ("", "ai.onnx"))
    return outputs, {"runtime": f"onnxruntime {onnxruntime.__version__} "
                                f"(CPUExecutionProvider)", "opset": int(opset)}


def _run_torchscript(path: Path, inputs: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, dict]:
    """Outputs of the TorchScript file at ``path`` (``torch.jit.load``), and what ran it."""
    with torch.no_grad():
        outputs = torch.jit.load(str(path), map_location="cpu")(*inputs)
    return outputs.numpy(), {"runtime": f"torch.jit.load (torch {torch.__version__})"}


def _check_opset(fmt: str, opset: int | None) -> None:
    """``opset``: null, or an ONNX opset version with ``format=onnx``."""
    check_format(fmt)
    if opset is None:
        return
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 7:
        raise UserError(f"opset: {opset!r} is not an ONNX opset version (a whole number >= 7, "
                        f"or null for torch's default); set opset=<value>")
    if fmt != "onnx":
        raise UserError(f"opset: {opset} applies to format=onnx only; leave it out (null) for "
                        f"format={fmt}")


def _reason(error: Exception, limit: int = 200) -> str:
    """``Type: first line of the message`` of an exporter's or a runtime's error, at most
    ``limit`` characters of the message."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else repr(error)
    return f"{type(error).__name__}: {line[:limit]}{'...' if len(line) > limit else ''}"


def export_network(net: torch.nn.Module, path: str | Path, fmt: str, n_leads: int,
                   n_samples: int, n_metadata: int = 0, opset: int | None = None,
                   tolerance: float = TOLERANCE, name: str | None = None) -> dict:
    """Writes ``net`` (put in eval mode, on the CPU) to ``path`` in format ``fmt``, for inputs
    ``(batch, n_leads, n_samples)`` (and ``(batch, n_metadata)``), checked as the module says.
    ``name``: the network in messages (default: its class). Returns the check: ``runtime``,
    ``batch``, ``max_abs_difference``, ``tolerance`` (and the ONNX ``opset``)."""
    _check_opset(fmt, opset)
    if fmt == "onnx":
        _onnx_packages()  # before the export's time is spent
    name = name or type(net).__name__
    label = FORMATS[fmt][1]
    other = next(f for f in FORMATS if f != fmt)
    net = net.eval().to("cpu", torch.float32)
    example = random_inputs(n_leads, n_samples, n_metadata, EXAMPLE_BATCH, seed=0)
    inputs = random_inputs(n_leads, n_samples, n_metadata, CHECK_BATCH, seed=1)
    with torch.no_grad():
        expected = net(*inputs).numpy()
    with atomic_path(path, "output_dir") as partial:
        try:
            with _tracing():
                if fmt == "onnx":
                    _write_onnx(net, example, partial, opset)
                else:
                    _write_torchscript(net, example, partial)
        except Exception as error:  # noqa: BLE001  (any exporter failure is one line)
            why = _reason(error)
            instead = f"format={other}" + (" or opset=null (torch's default)"
                                           if opset is not None else "")
            raise UserError(f"format={fmt}: the network {name} cannot be exported to {label} "
                            f"({why}); try {instead}") from error
        try:
            outputs, ran = (_run_onnx if fmt == "onnx" else _run_torchscript)(partial, inputs)
        except Exception as error:  # noqa: BLE001  (the runtime's failure is the check's)
            why = _reason(error)
            raise UserError(f"format={fmt}: the {label} file of {name} fails to run on "
                            f"{CHECK_BATCH} random tracings ({why}), "
                            f"so it was not kept; try format={other}") from error
        if outputs.shape != expected.shape:
            raise UserError(f"format={fmt}: the {label} file of {name} gives outputs of shape "
                            f"{outputs.shape} for {CHECK_BATCH} random tracings, the PyTorch "
                            f"network {expected.shape}, so it was not kept; try "
                            f"format={other}")
        difference = float(np.abs(outputs - expected).max()) if expected.size else 0.0
        if not difference <= tolerance:  # NaN too
            raise UserError(f"format={fmt}: the {label} file of {name} gives outputs "
                            f"{difference:.3g} away from the PyTorch network's on "
                            f"{CHECK_BATCH} random tracings (tolerance {tolerance:g}), so it "
                            f"was not kept; try format={other}, or a larger tolerance if the "
                            f"difference is rounding")
    return {**ran, "batch": CHECK_BATCH, "max_abs_difference": difference,
            "tolerance": tolerance}


def _plain(value):
    """``value`` as JSON data: NaN and infinities as null, arrays and tensors as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor | np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def contract_document(model: TrainedModel, fmt: str, check: dict) -> dict:
    """The JSON written beside an exported network: what it takes, what it gives, and the
    check of the written file (``check``, from :func:`export_network`)."""
    contract, objective = model.contract, model.objective
    columns = model.metadata_columns
    inputs = {TRACINGS: {
        "shape": ["batch", len(contract["leads"]), contract["n_samples"]], "dtype": "float32",
        **{key: contract.get(key) for key in ("leads", "sampling_rate_hz", "n_samples", "units",
                                              "amplitude_scale", "amplitude_mv",
                                              "signal_steps", "dataset")}}}
    if columns:
        inputs[METADATA] = {
            "shape": ["batch", len(columns)], "dtype": "float32", "columns": columns,
            "standardisation": model.metadata_statistics,
            "how": "each column named in standardisation as (raw value - mean) / std, the "
                   "others raw, in the order of columns"}
    task = model.config.task
    return _plain({
        "format": fmt, "file": FORMATS[fmt][0], "checkpoint": str(model.checkpoint),
        "network": type(model.net).__name__, "inputs": inputs,
        "outputs": {OUTPUTS: {
            "shape": ["batch", len(objective.output_names)], "dtype": "float32",
            "columns": objective.output_names, "head": objective.head,
            "activation": "none: raw network outputs (the logits of a classification task)"}},
        "task": {"name": task.get("name"), "labels": objective.target_columns,
                 "objective": OmegaConf.to_container(task.objective, resolve=True),
                 "objective_description": _first_paragraph(type(objective).__doc__),
                 "prediction_columns": objective.prediction_columns,
                 "units": objective.units, "training_statistics": objective.state,
                 "thresholds": model.thresholds},
        "check": check,
        "versions": {"ecgexp": ecgexp.__version__, "torch": torch.__version__}})


def export_model(model: TrainedModel, output_dir: str | Path, fmt: str, opset: int | None = None,
                 tolerance: float = TOLERANCE) -> tuple[Path, Path, dict]:
    """Exports ``model``'s network into ``output_dir`` with its contract JSON; returns
    ``(network file, contract file, contract)``."""
    network_file, contract_file = new_files(output_dir, fmt)
    if not model.contract.get("leads"):
        raise UserError(f"run: '{model.checkpoint}' carries no input contract in its model "
                        f"card (a checkpoint of an older ecgexp), so the leads, length and "
                        f"units the network takes are unknown; export a run trained since")
    make_folder(output_dir, "output_dir")
    check = export_network(model.net, network_file, fmt, len(model.contract["leads"]),
                           int(model.contract["n_samples"]), len(model.metadata_columns),
                           opset=opset, tolerance=tolerance, name=type(model.net).__name__)
    document = contract_document(model, fmt, check)
    try:
        write_text_atomic(contract_file, json.dumps(document, indent=2) + "\n", "output_dir")
    except BaseException:
        network_file.unlink(missing_ok=True)  # written above: not left without its contract
        raise
    return network_file, contract_file, document


def _settings(cfg: DictConfig) -> tuple[str, int | None, float]:
    """``format``, ``opset`` and ``tolerance`` of ``export.yaml``, checked."""
    fmt, opset, tolerance = str(cfg.format), cfg.get("opset"), cfg.get("tolerance", TOLERANCE)
    _check_opset(fmt, opset)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not (
            0 < tolerance < math.inf):
        raise UserError(f"tolerance: {tolerance!r} is not a positive number; set "
                        f"tolerance=<value>")
    return fmt, opset, float(tolerance)


def export(cfg: DictConfig) -> dict:
    """``ecgexp-export`` (``export.yaml``): the model of ``cfg.run`` exported; prints where
    and the check, returns the contract written."""
    fmt, opset, tolerance = _settings(cfg)
    output_dir = cfg.get("output_dir")
    if output_dir is None:  # into the run folder: it must not lead out of itself
        run_folder, _ = RunFolder.find_checkpoint(cfg.run, "run")
        check_links_inside(run_folder, "run")
        output_dir = RunFolder(run_folder).export
    new_files(output_dir, fmt)  # before the model is read
    model = load_model(cfg.run, trusted=bool(cfg.get("ckpt_trusted")), key="run",
                       trust_key="ckpt_trusted", allow_modules=cfg.get("allow_modules") or ())
    network_file, contract_file, document = export_model(model, output_dir, fmt, opset,
                                                         tolerance)
    check = document["check"]
    opset_note = f", opset {check['opset']}" if "opset" in check else ""
    print(f"Exported {document['network']} ({FORMATS[fmt][1]}{opset_note}): {network_file}\n"
          f"Its input contract: {contract_file}\n"
          f"Checked with {check['runtime']} on {check['batch']} random tracings: largest "
          f"difference from PyTorch {check['max_abs_difference']:.2g} (tolerance "
          f"{check['tolerance']:g})")
    return document
