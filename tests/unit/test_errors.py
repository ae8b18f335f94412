"""``ecgexp.errors``: which exceptions are a user's bad input (one line, exit status 2) and
which keep their traceback; the out-of-memory line; a command's required keys."""

import json

import pytest
from omegaconf import OmegaConf

from ecgexp.errors import (
    EXIT_STATUS,
    UserError,
    is_user_error,
    message_of,
    out_of_memory,
    reported,
)


def raised_by(call, *args):
    """The exception ``call(*args)`` raises (its traceback kept)."""
    try:
        call(*args)
    except Exception as error:  # noqa: BLE001
        return error
    raise AssertionError(f"{call} raised nothing")


def test_message_of_a_key_error_drops_the_quotes_str_adds():
    assert str(KeyError("task.objective: no such key")) == "'task.objective: no such key'"
    assert message_of(KeyError("task.objective: no such key")) == "task.objective: no such key"
    assert message_of(KeyError(3)) == "3"
    assert message_of(ValueError("a, b")) == "a, b"


def test_checked_types_are_bad_input_only_when_raised_by_ecgexp():
    assert issubclass(UserError, ValueError)
    assert is_user_error(UserError("made here"))  # whoever raised it
    here = raised_by(int, "x")  # a ValueError raised outside ecgexp: a bug or unwrapped
    assert isinstance(here, ValueError) and not is_user_error(here)
    assert not is_user_error(ValueError("never raised"))  # no traceback to tell
    from ecgexp.metrics.weights import as_weights

    ours = raised_by(as_weights, [[1.0, 2.0]], 3)  # raised by a `raise` of ecgexp
    assert isinstance(ours, ValueError) and is_user_error(ours)
    bug = raised_by(json.loads, "{")  # JSONDecodeError, a ValueError of the standard library
    assert not is_user_error(bug)
    assert not is_user_error(raised_by(lambda: [][1]))  # IndexError: not a checked type


@pytest.mark.parametrize("error, line", [
    (MemoryError(), "out of memory; lower loader.batch_size"),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
     "out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB); "
     "lower loader.batch_size"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore text"),
     "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB); lower loader.batch_size")])
def test_out_of_memory_is_one_line_with_what_was_asked_and_what_lowers_it(error, line):
    message = out_of_memory(error)
    assert message.startswith(line) and "\n" not in message
    assert message.endswith("bootstrap.n_resamples (ecgexp-evaluate, ecgexp-compare)")


def test_other_errors_are_not_out_of_memory():
    assert out_of_memory(RuntimeError("shape mismatch")) is None
    assert out_of_memory(ValueError("out of memory")) is None  # a value, not an allocation


def test_a_bad_input_ends_the_command_with_one_line_and_status_2(capsys):
    @reported
    def command(cfg):
        raise UserError(f"dataset.path: '{cfg.path}' does not exist")

    with pytest.raises(SystemExit) as stopped:
        command(OmegaConf.create({"path": "/nowhere"}))
    assert stopped.value.code == EXIT_STATUS == 2
    assert capsys.readouterr().err == "error: dataset.path: '/nowhere' does not exist\n"


def test_a_bug_keeps_its_traceback_and_an_allocation_failure_is_one_line(capsys):
    @reported
    def buggy(cfg):
        return {}["missing"]  # a KeyError of ecgexp's caller, not of ecgexp: a bug

    with pytest.raises(KeyError, match="missing"):
        buggy(OmegaConf.create({}))

    @reported
    def greedy(cfg):
        raise MemoryError()

    with pytest.raises(SystemExit) as stopped:
        greedy(OmegaConf.create({}))
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("error: out of memory; lower loader.batch_size")


def test_required_keys_not_given_are_named_before_the_command_runs(capsys):
    ran = []

    @reported
    def command(cfg):
        ran.append(cfg)

    with pytest.raises(SystemExit):
        command(OmegaConf.create({"run": "???", "labels_csv": "???", "split": "test"}))
    assert capsys.readouterr().err == (
        "error: run, labels_csv: not set; give run=<value> labels_csv=<value> on the command "
        "line (--help describes them)\n")
    with pytest.raises(SystemExit):
        command(OmegaConf.create({"run": "???"}))
    assert "(--help describes it)" in capsys.readouterr().err
    assert ran == []
    command(OmegaConf.create({"run": "a"}))
    assert len(ran) == 1
