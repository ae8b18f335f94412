"""Benchmark 3b, predict: exams/s of ``ecgexp-predict``'s path
(:func:`ecgexp.inference.table.dataset_predictions`, the whole call: indexing the source,
the worker processes reading and screening the exams, the network, the predictions table)
against the network alone, on two sources:

1. HDF5: ``predict.exams`` synthetic exams (CODE-15% layout, ``dataset=synthetic``) against a
   plain ``torch.inference_mode`` loop of the same network over the same tensors already in
   memory (read beforehand with plain h5py), at the same batch size (``predict.batch_size``).
2. WFDB folder: ``predict.wfdb.records`` of the synthetic exams resampled to 500 Hz, 5000
   samples, written as 16-bit WFDB records (gain 1000/mV) with ``wfdb.wrsamp``, so that every
   record is read and resampled to the model's 400 Hz as it is predicted. Baseline: the slower
   of the two stages the predictor overlaps, each measured alone: preprocessing (reading each
   record and the contract's signal steps, one process, as each of the predictor's workers
   does) and the network (the plain loop over the preprocessed tensors in memory).
   ``predict.wfdb.signal_steps``: ``raw_records`` feeds the records through the signal steps
   of a model trained on raw records (the ``preprocessing`` config: baseline removal,
   resampling, limb leads derived); ``as_stored`` through those of a model trained on HDF5
   tracings (resampling, scale, lead order and length only).

The model is the bench's network (``train_overrides``: ``model=resnet1d``, abnormality) with
its seeded initial weights, untrained (speed does not depend on the weights), wrapped as the
:class:`ecgexp.api.TrainedModel` a run's checkpoint gives: its model card holds the composed
training config and the input contract (``ecgexp.contract.input_contract``), with the
training amplitude the screening compares against taken from the exams themselves.

The predictor must predict every exam, with the plain loop's scores to float32 rounding
(normwise over all scores, ``checks.rounding_tolerance`` of the network's longest sum: its
batches and kernels need not add in the same order). Each way is run ``predict.repeats`` times,
alternating; the best pass counts. Every pass is timed whole, so the predictor's fixed costs
(worker start-up, the first batch it waits for, the table) count against it.

Workers and threads (measured on 2 CPU cores, torch's default of one thread per core, the
suite's ``threads``): the network runs with those threads in the main process and takes
both cores; loader workers (``predict.num_workers``, ``predict.wfdb.num_workers``; one torch
thread each) only pay off when reading costs a real share of the forward pass, since on 2
cores whatever a worker runs is taken from the network's threads.

- HDF5: ``num_workers=0``. Reading and screening a batch of 64 exams takes ~20 ms in
  process, ~1 % of its ~2.5 s forward pass; 2 workers cost more than they hide (forking, the
  first batch waited for, two more processes competing with torch's threads): ~0.95 of the
  plain loop against ~0.99 in process.
- WFDB: ``num_workers=2``. Reading a record (wfdb's header parsing dominates) and its
  signal steps take ~7 ms, ~0.45 s per batch, ~18 % of the forward pass; with 2 workers it
  overlaps with the network (~0.85-0.9 of the network alone) against ~0.8 in process (0) and
  ~0.84 with 1 worker. The exams' headers, read once in the main process before the loader
  starts (``header_table``), cannot overlap.

Both figures are noisy by some ±5 % on a shared 2-core machine (passes of the same loop differ
that much); ``repeats`` rounds, best pass of each way.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ecgexp.bench import predict_memory
from ecgexp.bench.checks import Check, close, longest_reduction, none_of
from ecgexp.bench.common import CONF_DIR, Context, initial_weights, trained_model
from ecgexp.bench.preprocess import record_signals, write_records
from ecgexp.bench.report import Figure, Result
from ecgexp.contract import input_contract
from ecgexp.data.hdf5 import resolve_tracing_files
from ecgexp.inference.inputs import contract_pipeline, dataset_for, prediction_exams
from ecgexp.inference.model import TrainedModel
from ecgexp.inference.screening import amplitude_mv
from ecgexp.inference.table import dataset_predictions
from ecgexp.signal.leads import lead_indices

SIGNAL_STEPS = ("raw_records", "as_stored")


def hdf5_tracings(source, table, contract: dict) -> np.ndarray:
    """``(exams, leads, samples)`` float32 of the exams of ``table`` (the predictor's order),
    read with plain h5py, in the contract's lead order, times the dataset's scale."""
    files = resolve_tracing_files(source.tracing_files)
    columns = lead_indices(source.leads, contract["leads"])
    out = np.empty((len(table), len(columns), int(source.n_samples)), np.float32)
    for file_index, rows in table.groupby("file_index").indices.items():
        with h5py.File(files[file_index], "r") as handle:
            stored = handle[source.tracings_dataset]
            for position in rows:
                out[position] = stored[int(table.row.iloc[position])][:, columns].T
    return out * np.float32(source.scale) if source.scale != 1 else out


def plain_predictor(model: TrainedModel, tracings: torch.Tensor, batch_size: int,
                    device: str):
    """The plain loop: ``net(batch)`` under ``inference_mode`` over tensors in memory; returns
    a function giving (exams/s, scores)."""
    net = model.net.to(device)

    def predict() -> tuple[float, np.ndarray]:
        started = time.perf_counter()
        with torch.inference_mode():
            scores = torch.cat([model.objective.predict(net(tracings[s:s + batch_size]))
                                for s in range(0, len(tracings), batch_size)])
        scores = scores.float().cpu().numpy()
        return len(tracings) / (time.perf_counter() - started), scores

    return predict


def ecgexp_predictor(model: TrainedModel, source, contract: dict, batch_size: int,
                     num_workers: int, device: str):
    """``dataset_predictions`` of every exam of ``source``, timed whole; a function giving
    (exams/s, scores, the problems of the exams not predicted)."""
    columns = model.objective.prediction_columns

    def predict() -> tuple[float, np.ndarray, list[str]]:
        started = time.perf_counter()
        table = dataset_predictions([model], {}, source, contract, batch_size, num_workers,
                                    device, progress=False)
        rate = len(table) / (time.perf_counter() - started)
        problems = table.problem[table.problem.astype(bool)].tolist()
        return rate, table[columns].to_numpy(np.float32), problems

    return predict


def preprocessing_rate(inputs, n_records: int) -> tuple[float, np.ndarray]:
    """Records/s of reading and preprocessing every record in this process, as a predictor
    worker does (``RecordInputs.read``); and the ``(records, leads, samples)`` tracings."""
    started = time.perf_counter()
    tracings = np.stack([inputs.read(i) for i in range(n_records)])
    rate = n_records / (time.perf_counter() - started)
    return rate, np.ascontiguousarray(tracings.transpose(0, 2, 1), dtype=np.float32)


def alternate(ways: dict, repeats: int) -> dict[str, list]:
    """Each way's passes ``(rate, scores, ...)``, ``repeats`` rounds alternating between
    them."""
    passes: dict[str, list] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            passes[name].append(way())
    return passes


def check_predictions(source: str, passes: dict, n: int) -> tuple[list[Check], list[str]]:
    """The first ecgexp pass of ``passes``: every exam predicted, and the plain loop's scores to
    rounding (the network's longest sum has ``n`` terms); and its problems."""
    _, scores, problems = passes["ecgexp_predict"][0]
    return [none_of(f"{source}: every exam predicted", len(problems), "exams not predicted"),
            close(f"{source}: scores vs the plain loop", scores, passes["plain"][0][1],
                  n)], problems


@contextmanager
def quiet_screening():
    """``ecgexp`` logs errors only: screening findings on synthetic exams are not news here."""
    logger = logging.getLogger("ecgexp")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run(cfg: DictConfig, context: Context) -> Result:
    settings = cfg.predict
    device = "cuda" if cfg.device == "cuda" else "cpu"
    if settings.wfdb.signal_steps not in SIGNAL_STEPS:
        raise ValueError(f"bench predict.wfdb.signal_steps: {settings.wfdb.signal_steps!r} is "
                         f"not one of {SIGNAL_STEPS}")
    batch = int(settings.batch_size)
    train_cfg = context.train_config(exams=settings.exams)
    net_state = initial_weights(train_cfg)
    details: dict = {"device": device, "batch_size": batch, "repeats": settings.repeats,
                     "torch_threads": torch.get_num_threads()}

    # 1. HDF5 ---------------------------------------------------------------------------
    source = instantiate(dataset_for(train_cfg.dataset, input_contract(train_cfg, None),
                                     train_cfg))  # writes the synthetic exams on first use
    contract = input_contract(train_cfg, source)
    table, _ = prediction_exams(source, contract)
    tracings = hdf5_tracings(source, table, contract)
    contract["amplitude_mv"] = float(np.median(amplitude_mv(tracings)))
    model = trained_model(train_cfg, net_state, contract)
    with quiet_screening():
        hdf5 = alternate({
            "ecgexp_predict": ecgexp_predictor(model, source, contract, batch,
                                               settings.num_workers, device),
            "plain": plain_predictor(model, torch.from_numpy(tracings).to(device), batch,
                                     device)}, settings.repeats)
    n = longest_reduction(model.net, (torch.from_numpy(tracings[:1]).to(device),),
                          weight_gradients=False)
    checks, problems = check_predictions("HDF5", hdf5, n)
    hdf5_rates = {name: [run[0] for run in runs] for name, runs in hdf5.items()}
    details["hdf5"] = {"exams": len(table), "num_workers": settings.num_workers,
                       "exams_per_s": hdf5_rates, "not_predicted": problems[:3]}

    # 2. WFDB folder --------------------------------------------------------------------
    wfdb = settings.wfdb
    records_contract = dict(contract)
    if wfdb.signal_steps == "raw_records":  # as a model trained on dataset=wfdb_folder
        records_contract.update(input_contract(train_cfg, SimpleNamespace(
            pipeline=True, name="wfdb_records")))
        records_contract["amplitude_mv"] = contract["amplitude_mv"]
    records_pipeline = contract_pipeline(records_contract)
    with tempfile.TemporaryDirectory(dir=context.scratch) as scratch:
        folder = Path(scratch) / "records"
        folder.mkdir()
        write_records(folder, record_signals(wfdb.records))
        dataset_cfg = OmegaConf.load(CONF_DIR / "dataset" / "wfdb_folder.yaml")
        dataset_cfg.path = str(folder)
        records = instantiate(dataset_for(dataset_cfg, records_contract, train_cfg))
        record_table, inputs = prediction_exams(records, records_contract)
        n_records = len(record_table)
        preprocess = {"preprocess": lambda: preprocessing_rate(inputs, n_records)}
        _, preprocessed = preprocess["preprocess"]()  # also warms the filter design caches
        records_model = trained_model(train_cfg, net_state, records_contract)
        with quiet_screening():
            folder_passes = alternate({
                "ecgexp_predict": ecgexp_predictor(records_model, records, records_contract,
                                                   batch, wfdb.num_workers, device),
                **preprocess,
                "plain": plain_predictor(records_model,
                                         torch.from_numpy(preprocessed).to(device), batch,
                                         device)}, settings.repeats)
    folder_checks, problems = check_predictions("WFDB", folder_passes, n)
    folder_rates = {name: [run[0] for run in runs] for name, runs in folder_passes.items()}
    best = {name: max(rates) for name, rates in folder_rates.items()}
    slower = min(("preprocess", "plain"), key=best.get)
    details["wfdb"] = {"records": n_records, "num_workers": wfdb.num_workers,
                       "signal_steps": wfdb.signal_steps,
                       "pipeline": records_pipeline.as_dict(),
                       "record_rate_hz": 500, "record_samples": 5000,
                       "exams_per_s": folder_rates, "slower_stage": slower,
                       "not_predicted": problems[:3]}
    stage = {"preprocess": "preprocessing alone, 1 process", "plain": "network alone"}[slower]
    figures = [
        Figure(f"exams/s, predict on HDF5 ({settings.num_workers} workers) vs plain "
               f"inference_mode (batch {batch})",
               max(hdf5_rates["ecgexp_predict"]), max(hdf5_rates["plain"]), "exams/s",
               "plain inference_mode loop", settings.target_hdf5),
        Figure(f"exams/s, predict on 500 Hz WFDB records ({wfdb.num_workers} workers) vs "
               f"the slower stage alone (batch {batch})",
               best["ecgexp_predict"], best[slower], "exams/s", stage, settings.wfdb.target)]
    notes = [f"whole dataset_predictions calls ({len(table)} HDF5 exams, {n_records} WFDB "
             f"records; {settings.num_workers} / {wfdb.num_workers} workers, "
             f"{torch.get_num_threads()} torch threads); WFDB stages alone: preprocessing "
             f"{best['preprocess']:.0f} records/s ({wfdb.signal_steps} steps), network "
             f"{best['plain']:.1f} exams/s"]
    details["longest_reduction"] = n

    # 3. Memory against the number of exams (ecgexp.bench.predict_memory) ------------------
    memory_figures, details["memory"] = predict_memory.measure(cfg, context)
    return Result(figures=[*figures, *memory_figures], details=details, notes=notes,
                  checks=[*checks, *folder_checks])
