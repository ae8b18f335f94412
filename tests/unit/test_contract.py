"""``ecgexp.contract``: the input contract and the model card built from a small made-up
config and stand-in data sources (a raw-record source with a signal pipeline, an HDF5 source
without), every field checked against the values written into the config or the source."""

import copy
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

from ecgexp.contract import CARD_FORMAT, input_contract, model_card

PREPROCESSING = {"sampling_rate": 400, "leads": ["I", "II", "V1"], "baseline_removal": True,
                 "baseline_pass_hz": 0.8, "powerline_hz": 50, "notch_quality": 30,
                 "scale": 2.0, "missing_leads": "zero", "not_a_signal_step": 7}


def config(metadata_columns=("age", "sex"), dataset_name="made_up"):
    return OmegaConf.create({
        "preprocessing": copy.deepcopy(PREPROCESSING),
        "model": {"n_samples": 4096, "rate": "${preprocessing.sampling_rate}"},
        "task": {"metadata_columns": list(metadata_columns) if metadata_columns else None},
        "dataset": {"name": dataset_name}})


def test_raw_records_carry_the_pipeline_steps_of_the_config_and_its_scale():
    source = SimpleNamespace(pipeline=object(), name="ptbxl")
    contract = input_contract(config(), source)
    assert contract == {
        "leads": ["I", "II", "V1"], "sampling_rate_hz": 400.0, "n_samples": 4096,
        "units": "mV", "amplitude_scale": 2.0,
        "signal_steps": {"applied": "when read (raw records)", "baseline_removal": True,
                         "baseline_pass_hz": 0.8, "powerline_hz": 50, "notch_quality": 30,
                         "scale": 2.0, "missing_leads": "zero"},
        "metadata_columns": ["age", "sex"], "dataset": "ptbxl"}
    assert isinstance(contract["sampling_rate_hz"], float)


def test_hdf5_tracings_are_as_stored_with_the_source_rate_and_scale():
    source = SimpleNamespace(sampling_rate=500, scale=0.001)  # no pipeline, no name
    contract = input_contract(config(metadata_columns=None), source)
    assert contract["signal_steps"] == {
        "applied": "as stored (the HDF5 tracings were read unchanged)"}
    assert contract["sampling_rate_hz"] == 500.0 and contract["amplitude_scale"] == 0.001
    assert contract["metadata_columns"] == [] and contract["dataset"] == "made_up"


def test_a_bare_source_falls_back_on_the_config():
    contract = input_contract(config(dataset_name="code15"), SimpleNamespace())
    assert contract["sampling_rate_hz"] == 400.0 and contract["amplitude_scale"] == 1.0
    assert contract["dataset"] == "code15"


def test_the_card_holds_plain_values_that_load_with_weights_only(tmp_path):
    cfg = config()
    statistics = {"age": {"mean": 55.0, "std": 12.5}}
    card = model_card(cfg, SimpleNamespace(pipeline=object()), statistics, amplitude_mv=1.25)
    assert card["format"] == CARD_FORMAT == 1
    assert card["thresholds"] == {} and card["metadata_statistics"] == statistics
    assert card["metadata_statistics"] is not statistics
    assert card["config"]["model"] == {"n_samples": 4096, "rate": 400}  # resolved
    assert card["input_contract"]["amplitude_mv"] == 1.25
    assert card["input_contract"]["leads"] == ["I", "II", "V1"]
    torch.save({"ecgexp": card}, tmp_path / "card.pt")
    assert torch.load(tmp_path / "card.pt", weights_only=True) == {"ecgexp": card}


def test_the_card_amplitude_is_none_unless_given():
    card = model_card(config(), SimpleNamespace(), {})
    assert card["input_contract"]["amplitude_mv"] is None
