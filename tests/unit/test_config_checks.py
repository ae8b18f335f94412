"""Bad values and typos fail at start-up, with the key named, before any folder is created."""

import pytest
from helpers.commands import run_in_process
from helpers.configs import SHORT_RUN, compose_in
from omegaconf import OmegaConf

from ecgexp.config_checks import check
from ecgexp.errors import UserError, is_user_error
from ecgexp.train import train


@pytest.mark.parametrize("group,typo,valid", [("experiment", "demoo", "demo"),
                                              ("sweep", "optunaa", "optuna")])
def test_an_unknown_option_fails_with_the_valid_ones(tmp_path, group, typo, valid):
    result = run_in_process("ecgexp", tmp_path, f"{group}={typo}")
    assert result.returncode != 0
    assert f"Could not find '{group}/{typo}'" in result.stderr
    assert f"Available options in '{group}':\n\t" in result.stderr
    assert f"\t{valid}\n" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override,message", [
    ("loader.batch_size=0", "loader.batch_size: 0 is not a whole number >= 1"),
    ("loader.batch_size=-4", "loader.batch_size: -4 is not a whole number >= 1"),
    ("loader.batch_size=abc", "loader.batch_size: 'abc' is not a whole number >= 1"),
    ("loader.num_workers=-1", "loader.num_workers: -1 is not a whole number >= 0"),
    ("loader.eval_batch_size=0", "loader.eval_batch_size: 0 is not a whole number >= 1"),
    ("optimizer.lr=0", "optimizer.lr: 0 is not a number > 0"),
    ("optimizer.lr=fast", "optimizer.lr: 'fast' is not a number > 0"),
    ("model.kernel_size=0", "model.kernel_size: 0 is not a whole number >= 1"),
    ("model.kernel_size=2.5", "model.kernel_size: 2.5 is not a whole number >= 1"),
    ("model.dropout=1.0", "model.dropout: 1.0 is not a fraction in [0, 1)"),
    ("trainer.max_epochs=abc", "trainer.max_epochs: 'abc' is not a whole number >= 0"),
    ("trainer.max_epochs=true", "trainer.max_epochs: True is not a whole number >= 0"),
    ("dataset.split.val_fraction=1.5",
     "dataset.split.val_fraction: 1.5 is not a fraction in [0, 1)"),
    ("split=random", None),  # valid: the split group's own fractions
    ("dataset.split.stratify=yes",
     "dataset.split.stratify: 'yes' is not true, false or a list of label columns"),
    ("dataset.split.stratify=[AF,1]",
     "dataset.split.stratify: ['AF', 1] is not true, false or a list of label columns"),
    ("dataset.split.stratify=[AF,RBBB]", None),
    ("+split.test_fraction=-0.1", "split.test_fraction: -0.1 is not a fraction in [0, 1)"),
    ("scheduler.factor=2", "scheduler.factor: 2 is not a number between 0 and 1"),
    ("dataset.nan_policy=ignore", "dataset.nan_policy: 'ignore' is not one of error, skip"),
])
def test_values_are_checked_with_the_key_named(tmp_path, override, message):
    overrides = [override] if override != "+split.test_fraction=-0.1" else [
        "split=random", "split.test_fraction=-0.1"]
    cfg = compose_in(tmp_path, *overrides)
    if message is None:
        check(cfg, "train")
        return
    with pytest.raises(UserError) as error:
        check(cfg, "train")
    key = message.split(":")[0]
    assert str(error.value) == f"{message}; set {key}=<value>"


@pytest.mark.parametrize("command,arguments,line", [
    ("ecgexp", ["loader.batch_size=0"],
     "error: loader.batch_size: 0 is not a whole number >= 1; set loader.batch_size=<value>"),
    ("ecgexp-evaluate", ["run=nowhere", "thresholds=[0.5,1.5]"],
     "error: thresholds: [0.5, 1.5] is not a list, each a number in [0, 1]; set "
     "thresholds=<value>"),
    ("ecgexp-preprocess", ["input=in", "output=out.h5", "batch_size=0"],
     "error: batch_size: 0 is not a whole number >= 1; set batch_size=<value>"),
    ("ecgexp", ["quality=null"],  # Hydra itself stops on it with a traceback
     "error: quality=null: 'quality' is a config group, which cannot be null; leave it out of "
     "the command, or drop the option the config chooses with ~quality"),
    ("ecgexp-preprocess", ["input=in", "output=out.h5", "+labels=null"],
     "error: labels=null: 'labels' is a config group, which cannot be null; leave it out of "
     "the command, or drop the option the config chooses with ~labels"),
])
def test_a_bad_value_is_one_line_and_creates_nothing(tmp_path, command, arguments, line):
    result = run_in_process(command, tmp_path, *arguments)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command,arguments,start", [
    ("ecgexp", ["trainer.precision=64x"], "error: trainer.precision: Precision '64x' is invalid."),
    ("ecgexp", ["trainer.accelerator=gpu"],
     "error: trainer.accelerator: No supported gpu backend found!"),
    ("ecgexp-predict", ["run=x", "dataset=synthetic", "output=p.csv", "device=cuda"],
     "error: device: 'cuda', but this machine has no CUDA device (torch.cuda.is_available() "
     "is false); set device=cpu or device=auto"),
])
def test_trainer_and_device_settings_fail_before_any_folder(tmp_path, command, arguments,
                                                            start):
    result = run_in_process(command, tmp_path, *arguments)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(start), line
    assert list(tmp_path.iterdir()) == []


def test_a_bad_value_in_a_sweep_stops_it_before_training(tmp_path):
    """The sweeper sets each job's values; the job with the bad one stops the sweep."""
    result = run_in_process("ecgexp", tmp_path, "-m", "optimizer.lr=-1,0.001")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: optimizer.lr: -1 is not a number > 0; set optimizer.lr=<value>")
    written = [p for p in tmp_path.rglob("*") if p.is_file() and ".hydra" not in p.parts
               and p.name != "multirun.yaml"]
    assert written == []  # Hydra's own sweep record only: no run config, checkpoint or data


def test_an_optimized_metric_the_task_lacks_fails_before_training(tmp_path):
    cfg = compose_in(tmp_path, *SHORT_RUN, "optimized_metric=val/macro/accuracy")
    with pytest.raises(UserError) as error:
        train(cfg)
    message = str(error.value)
    assert message.startswith("optimized_metric: the MultiLabel task reports no metric "
                              "'val/macro/accuracy'; validation metrics are: ")
    assert "val/macro/auroc" in message and "val/AF/f1" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_only_errors_raised_by_ecgexp_are_bad_input():
    with pytest.raises(ValueError) as library:
        int("x")
    assert not is_user_error(library.value)
    with pytest.raises(ValueError) as own:
        check(OmegaConf.create({"loader": {"batch_size": 0}}), "train")
    assert is_user_error(own.value)


@pytest.mark.parametrize("where", ["read-only", "under a file"])
@pytest.mark.parametrize("command,key", [
    ("ecgexp", "hydra.run.dir"), ("ecgexp-evaluate", "output_dir"),
    ("ecgexp-synth", "output_dir"), ("ecgexp-preprocess", "output")])
def test_an_output_that_cannot_be_written_is_one_line(tmp_path, tmpfs, trained_run, where,
                                                      command, key):
    parent = tmpfs("read_only", "ro,size=1m") if where == "read-only" else tmp_path / "a_file"
    if where == "under a file":
        parent.touch()
    target = parent / ("out.h5" if command == "ecgexp-preprocess" else "out")
    work = tmp_path / "work"
    work.mkdir()
    arguments = {"ecgexp": [f"hydra.run.dir={target}"],
                 "ecgexp-evaluate": [f"run={trained_run}", f"output_dir={target}"],
                 "ecgexp-synth": [f"output_dir={target}"],
                 "ecgexp-preprocess": [f"input={tmp_path}", f"output={target}"]}[command]
    result = run_in_process(command, work, *arguments)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {key}: ") and f"'{target}' cannot be written" in line
    assert ("read-only file system" if where == "read-only" else "is a file, not a folder") in line
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("error, asked", [
    (MemoryError("Unable to allocate 3.20 GiB for an array with shape (7000, 4096, 12) and "
                 "data type float64"), "Unable to allocate 3.20 GiB"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 12884901888 bytes."),
     "you tried to allocate 12884901888 bytes"),
])
def test_running_out_of_memory_is_one_line_with_what_lowers_it(tmp_path, monkeypatch, error,
                                                               asked):
    """The memory a run asks for runs out (raised where the data is set up): one line with
    what was asked, as the library said it, and the settings that lower it."""
    from ecgexp.data import datamodule

    def fail(self, stage=None):
        raise error

    monkeypatch.setattr(datamodule.ExamDataModule, "setup", fail)
    result = run_in_process("ecgexp", tmp_path, *SHORT_RUN)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: out of memory (") and asked in line
    assert line.endswith("; lower loader.batch_size, loader.eval_batch_size and "
                         "loader.num_workers (training), batch_size and num_workers "
                         "(ecgexp-predict), bootstrap.n_resamples (ecgexp-evaluate, "
                         "ecgexp-compare)")
    assert "Traceback" not in result.stderr
