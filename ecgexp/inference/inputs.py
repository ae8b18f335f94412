"""What a trained model is fed from a dataset it has not seen: every exam of the source (no
labels or split needed), read as the model's input contract says.

- Raw records (WFDB, MUSE XML, TNMG JSON) go through the signal steps the model was trained
  with: the run's own ``preprocessing`` for a model trained on raw records; for a model trained
  on HDF5 tracings (read as stored) only what makes a record look like those tracings:
  resampling, the amplitude scale, the lead order (limb leads derived only when missing) and
  the centred length, with no baseline removal or notch, so that one ECG stored both ways gives
  the model the same input.
- HDF5 tracings are read as stored, reordered to the model's leads; a file whose declared
  ``dataset.sampling_rate`` differs from the model's is resampled (and centred to its length);
  a lead the model needs and the file lacks is refused, naming it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from ecgexp.contract import SIGNAL_STEPS
from ecgexp.data.hdf5 import TracingReader, index_tracings, resolve_tracing_files
from ecgexp.data.labels import join_labels
from ecgexp.data.record_source import RecordFolderSource
from ecgexp.data.source import CombinedSource, HDF5Source
from ecgexp.errors import UserError
from ecgexp.signal.filters import fix_length, resample
from ecgexp.signal.leads import lead_indices
from ecgexp.signal.pipeline import SignalPipeline
from ecgexp.signal.readers import read_record

log = logging.getLogger(__name__)


def contract_pipeline(contract: dict) -> SignalPipeline:
    """The signal steps that turn a raw record into the model's input (see the module)."""
    steps = contract.get("signal_steps") or {}
    shape = {"leads": contract["leads"], "sampling_rate": contract["sampling_rate_hz"],
             "n_samples": contract["n_samples"]}
    if "baseline_removal" in steps:  # trained on raw records: their own steps
        return SignalPipeline(**shape, **{k: steps[k] for k in SIGNAL_STEPS if k in steps})
    return SignalPipeline(**shape, baseline_removal=False, powerline_hz=None,
                          scale=float(contract.get("amplitude_scale", 1.0)),
                          derive_limb_leads="missing")


class HDF5Inputs:
    """Tracings of HDF5 files as the model takes them: ``(n_samples, leads)`` float32 in the
    model's lead order, resampled when the file's rate differs, times the dataset's scale."""

    def __init__(self, reader: TracingReader, lead_index: Sequence[int], scale: float,
                 rate: float, contract: dict):
        self.reader, self.lead_index, self.scale = reader, np.asarray(lead_index), scale
        self.rate, self.target_rate = float(rate), float(contract["sampling_rate_hz"])
        self.n_samples = int(contract["n_samples"])

    def read_rows(self, file_index: int, start: int, stop: int) -> np.ndarray:
        """``(stop - start, n_samples, leads)`` float32 of consecutive rows of one file."""
        block = self.reader.read_rows(file_index, start, stop)[:, :, self.lead_index]
        block = np.asarray(block, dtype=np.float32)
        if self.rate != self.target_rate:
            block = np.stack([fix_length(resample(t, self.rate, self.target_rate),
                                         self.n_samples) for t in block]).astype(np.float32)
        if self.scale != 1:
            block *= np.float32(self.scale)
        return block


class RecordInputs:
    """Raw records through the contract's signal steps, one per call."""

    def __init__(self, root: Path, names: Sequence[str], pipeline: SignalPipeline):
        self.root, self.names, self.pipeline = root, list(names), pipeline

    def read(self, file_index: int) -> np.ndarray:
        record = read_record(self.root / self.names[file_index])
        return self.pipeline(record.signal, record.sampling_rate, record.leads)


def prediction_exams(source, contract: dict) -> tuple[pd.DataFrame, HDF5Inputs | RecordInputs]:
    """Every exam of ``source`` (an instantiated ``dataset`` config) and how to read it.

    The table has ``exam_id``, ``file_index``, ``row`` (and ``record`` for raw records, and
    ``source`` for combined sources) plus whatever label and metadata columns the dataset
    holds: the label table is joined when the dataset names one, exams without labels kept."""
    if isinstance(source, RecordFolderSource):
        return _record_exams(source, contract)
    if isinstance(source, CombinedSource):
        parts = [_hdf5_exams(s, contract) for s in source.sources.values()]
        tables, files = [], []
        for key, (table, inputs) in zip(source.sources, parts):
            tables.append(table.assign(source=key, file_index=table.file_index + len(files)))
            files += inputs.reader.files
        first = parts[0][1]
        reader = TracingReader(files, [d for _, i in parts for d in i.reader.tracings_datasets])
        return (pd.concat(tables, ignore_index=True),
                HDF5Inputs(reader, first.lead_index, first.scale, first.rate, contract))
    if isinstance(source, HDF5Source):
        return _hdf5_exams(source, contract)
    raise UserError(f"dataset: {type(source).__name__} cannot be predicted on; use an HDF5 "
                    f"dataset (code15, samitrop, code_test, generic) or a record folder "
                    f"(wfdb_folder)")


def _hdf5_exams(source: HDF5Source, contract: dict) -> tuple[pd.DataFrame, HDF5Inputs]:
    try:
        lead_index = lead_indices(source.leads, contract["leads"])
    except ValueError as error:
        raise UserError(f"dataset.leads: the model takes the leads {contract['leads']}; "
                        f"{error}") from None
    rate, length = float(source.sampling_rate), int(source.n_samples)
    expected = round(length * float(contract["sampling_rate_hz"]) / rate)
    if rate == float(contract["sampling_rate_hz"]) and length != int(contract["n_samples"]):
        raise UserError(f"dataset.n_samples: {source.name} holds {length} samples per tracing "
                        f"at {rate:g} Hz, the model takes {contract['n_samples']}; convert the "
                        f"file (ecgexp-preprocess) or predict on a dataset of that length")
    if rate != float(contract["sampling_rate_hz"]):
        log.warning("%s: tracings at %g Hz (dataset.sampling_rate) resampled to the model's "
                    "%g Hz (%d -> %d samples, centred in %d)", source.name, rate,
                    contract["sampling_rate_hz"], length, expected, contract["n_samples"])
    files = resolve_tracing_files(source.tracing_files)
    index = index_tracings(files, source.tracings_dataset, source.exam_id_dataset, length,
                           len(source.leads), source.drop_padding_rows, source.scale)
    table = index
    if source.labels_csv is not None:
        labels = source.read_labels([])
        if source.join == "row_order":
            table = join_labels(index, labels, "row_order", source.labels_csv)
        else:
            twice = labels.exam_id[labels.exam_id.duplicated()]
            if len(twice):
                raise UserError(f"dataset.labels_csv: exam_id {twice.iloc[0]} occurs more than "
                                f"once in {source.labels_csv}")
            table = index.merge(labels, on="exam_id", how="left", sort=False)
    reader = TracingReader(files, [source.tracings_dataset] * len(files))
    return table, HDF5Inputs(reader, lead_index, source.scale, rate, contract)


def _record_exams(source: RecordFolderSource, contract: dict) -> tuple[pd.DataFrame, RecordInputs]:
    """The records' exam table, with a row for each record left out before reading (a
    duplicate exam id): its ``problem`` says why, so that every record has a row."""
    root, names = source.records()
    table = source.exam_table(root, names)
    left_out = pd.DataFrame([{"exam_id": exam_id, "record": names[position],
                              "file_index": position, "row": 0, "problem": reason}
                             for position, (exam_id, reason) in
                             table.attrs.get("left_out", {}).items()])
    if len(left_out):
        table = pd.concat([table, left_out], ignore_index=True).sort_values(
            "file_index", kind="stable").reset_index(drop=True)
    return table, RecordInputs(root, names, source.pipeline)  # dataset_for's contract steps


def dataset_for(dataset: DictConfig, contract: dict, root: DictConfig | None = None
                ) -> DictConfig:
    """A ``dataset`` config ready to instantiate for prediction: raw-record datasets take the
    contract's signal steps (their ``pipeline``), a missing label table is none. ``root``: the
    config the dataset's interpolations (``${paths.data_dir}``) resolve in; its
    ``preprocessing.missing_leads`` says what a record without one of the model's leads gets
    (``error``: no prediction, the leads named; ``zero``: zero-filled)."""
    if root is not None:
        wrapped = copy.deepcopy(root)
        steps = contract_pipeline(contract).as_dict()
        missing_leads = OmegaConf.select(root, "preprocessing.missing_leads")
        if missing_leads is not None:
            steps["missing_leads"] = missing_leads
        with open_dict(wrapped):
            wrapped.preprocessing = {"_target_": "ecgexp.signal.pipeline.SignalPipeline",
                                     **steps}
            wrapped.dataset = dataset
        dataset = wrapped.dataset
    dataset = copy.deepcopy(dataset)
    for key in [k for k in dataset if OmegaConf.is_missing(dataset, k)]:
        if key != "labels_csv":
            raise UserError(f"dataset.{key}: not set; give dataset.{key}=<value> (e.g. "
                            f"dataset.path=<records folder> for dataset=wfdb_folder)")
        dataset.labels_csv = None
    OmegaConf.resolve(dataset)
    return dataset
