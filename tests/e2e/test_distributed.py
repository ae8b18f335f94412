"""Scaling out: samplers sharded by rank, DDP with 2 CPU processes (gloo), the SLURM launcher
config, bf16 mixed precision."""

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.commands import run
from helpers.configs import CONF_DIR, SHORT_RUN, compose_in
from helpers.runs import run_folders
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ecgexp.data.samplers import EpochShuffleSampler, ShardSampler, TwoSourceBatchSampler

LABELS = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]


@pytest.mark.parametrize("n, world_size", [(10, 2), (10, 3), (7, 4), (3, 5)])
def test_epoch_shuffle_shards_one_permutation_padded_to_equal_lengths(n, world_size):
    epoch, seed = 3, 11
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    per_rank = -(-n // world_size)
    padded = (permutation.tolist() * world_size)[:per_rank * world_size]
    for rank in range(world_size):
        sampler = EpochShuffleSampler(n, seed=seed, rank=rank, world_size=world_size)
        sampler.set_epoch(epoch)
        assert len(sampler) == per_rank
        assert list(sampler) == padded[rank::world_size]
    shards = [set(EpochShuffleSampler(n, seed, rank, world_size)) for rank in range(world_size)]
    assert set().union(*shards) == set(range(n))


def test_shard_sampler_gives_every_exam_once_unpadded():
    assert [list(ShardSampler(7, rank, 3)) for rank in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert list(ShardSampler(4)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="rank 2"):
        ShardSampler(4, rank=2, world_size=2)


@pytest.mark.parametrize("world_size", [2, 3])
def test_two_source_batches_are_shared_out_with_their_composition(world_size):
    source_a, source_b = np.arange(0, 10), np.arange(100, 137)  # 10 A exams, 3 per batch
    whole = TwoSourceBatchSampler(source_a, source_b, batch_size=8, fraction_a=0.375, seed=4)
    shards = [TwoSourceBatchSampler(source_a, source_b, batch_size=8, fraction_a=0.375, seed=4,
                                    rank=rank, world_size=world_size)
              for rank in range(world_size)]
    global_batches = list(whole)  # 4 batches: 3 + 3 + 3 + 1 A exams
    per_rank = [list(shard) for shard in shards]
    assert {len(batches) for batches in per_rank} == {math.ceil(4 / world_size)}
    for rank, batches in enumerate(per_rank):
        for number, batch in zip(itertools.count(rank, world_size), batches):
            if number < len(global_batches):  # batch `number` of the single-process stream
                assert batch == global_batches[number]
            else:  # padding repeats the epoch's A batches from its start, with fresh B exams
                a_part = [i for i in global_batches[number % 4] if i < 100]
                assert [i for i in batch if i < 100] == a_part
                assert len([i for i in batch if i >= 100]) == 5

    second_epoch = [list(shard) for shard in shards]  # B continues where it stopped
    a_exams = [i for batches in second_epoch for batch in batches for i in batch if i < 100]
    b_exams = [i for batches in second_epoch for batch in batches for i in batch if i >= 100]
    assert set(a_exams) == set(source_a)
    assert len(b_exams) == 5 * world_size * math.ceil(4 / world_size)


def _log_counts(run_folder) -> dict[str, int]:
    line = next(line for line in (run_folder / "train.log").read_text().splitlines()
                if re.search(r"synthetic: .*train \d+", line))
    return {split: int(count) for split, count in re.findall(r"(train|val|test) (\d+)", line)}


def _bce(scores: np.ndarray, targets: np.ndarray) -> float:
    scores = np.clip(scores.astype(np.float64), 1e-12, 1 - 1e-12)
    return float(-(targets * np.log(scores) + (1 - targets) * np.log(1 - scores)).mean())


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_shards_training_and_validates_on_all_exams(trained_run,
                                                                          tmp_path):
    result = run("ecgexp", tmp_path, "trainer=ddp", "trainer.accelerator=cpu",
                 "trainer.devices=2", *[o for o in SHORT_RUN if "limit_train" not in o],
                 f"paths.data_dir={trained_run.parent / 'data'}")  # its data, made already
    assert result.returncode == 0, result.stderr[-3000:]
    [folder] = run_folders(tmp_path / "outputs")
    assert "Starting with 2 processes" in (folder / "train.log").read_text() + result.stderr
    counts = _log_counts(folder)

    history = pd.read_csv(folder / "history" / "metrics.csv")
    epochs = history.dropna(subset=["val_loss"]).set_index("epoch")
    # Each process trains on its half of the training split: steps per epoch are those of
    # ceil(train / 2) exams in batches of 16 (a single process would take ceil(train / 16)).
    steps_per_epoch = math.ceil(math.ceil(counts["train"] / 2) / 16)
    assert epochs["step"].tolist() == [steps_per_epoch - 1]  # SHORT_RUN: one epoch

    # Rank 0 alone predicts every validation exam once; val_loss (synchronised over both
    # processes during training) equals the BCE of those predictions at the best epoch.
    predictions = pd.read_csv(folder / "predictions_val.csv")
    assert len(predictions) == counts["val"] and predictions["exam_id"].is_unique
    loss = _bce(predictions[[f"score_{x}" for x in LABELS]].to_numpy(),
                predictions[[f"target_{x}" for x in LABELS]].to_numpy())
    assert loss == pytest.approx(epochs["val_loss"].min(), abs=2e-5)
    assert len(list(folder.glob("predictions_*.csv"))) == 2
    assert (folder / "metrics.json").is_file() and (folder / "config.yaml").is_file()
    # Rank 0 alone writes the run folder: the recorded command is the user's, not the
    # command Lightning starts the second process with.
    assert "train_ddp_process" not in (folder / "provenance.json").read_text()


def _bf16_representable(values: np.ndarray) -> bool:
    as_bf16 = torch.from_numpy(values.astype(np.float32)).to(torch.bfloat16).float().numpy()
    return bool(np.array_equal(as_bf16, values.astype(np.float32)))


@pytest.mark.parametrize("precision, bf16_scores", [("bf16-mixed", True), ("32-true", False)])
def test_precision_is_used_on_cpu(tmp_path, precision, bf16_scores):
    from ecgexp.train import train

    cfg = compose_in(tmp_path, f"trainer.precision={precision}", *SHORT_RUN)
    train(cfg)
    folder = Path(cfg.paths.output_dir)
    scores = pd.read_csv(folder / "predictions_test.csv")[[f"score_{x}" for x in LABELS]]
    assert np.isfinite(scores.to_numpy()).all()
    assert _bf16_representable(scores.to_numpy()) == bf16_scores


def _hydra_config(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg


def test_slurm_launcher_is_sized_from_the_trainer():
    cfg = _hydra_config("trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                        "loader.num_workers=6", "hydra/launcher=slurm",
                        "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher." \
                                "SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert (launcher.cpus_per_task, launcher.partition) == (6, "gpu")
    assert (cfg.trainer.strategy, cfg.trainer.use_distributed_sampler) == ("ddp", False)


def test_the_plain_submitit_slurm_launcher_composes():
    launcher = _hydra_config("hydra/launcher=submitit_slurm").hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
