"""``ecgexp.startup``: a command wrapped by ``groups_not_null`` run with made-up command lines
(``sys.argv``): a config group set to ``null`` and a moved spelling refused with their one line
and exit status 2 before the command runs, everything else passed through; bare leading
arguments rewritten into the override, compared with the command line written out by hand."""

import sys

import pytest

from ecgexp.startup import MOVED, bare_arguments_to_override, groups_not_null


def wrapped(calls):
    @groups_not_null
    def command(*args, **kwargs):
        """The command's docstring."""
        calls.append((args, kwargs))
        return "ran"

    return command


@pytest.mark.parametrize("argument", ["model=null", "+model=null", "++dataset=null"])
def test_a_config_group_set_to_null_is_refused_with_one_line(argument, monkeypatch, capsys):
    name = argument.lstrip("+").split("=")[0]
    monkeypatch.setattr(sys, "argv", ["ecgexp-train", "trainer.max_epochs=1", argument])
    calls = []
    with pytest.raises(SystemExit) as stop:
        wrapped(calls)()
    assert stop.value.code == 2 and calls == []
    assert capsys.readouterr().err == (
        f"error: {name}=null: '{name}' is a config group, which cannot be null; leave it out "
        f"of the command, or drop the option the config chooses with ~{name}\n")


def test_the_moved_heatmap_task_names_its_command(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["ecgexp-train", "+task=heatmap"])
    with pytest.raises(SystemExit):
        wrapped([])()
    err = capsys.readouterr().err
    assert err == f"error: {MOVED['task=heatmap']}\n"
    assert err.startswith("error: task=heatmap: heatmaps are a command of their own, "
                          "ecgexp-heatmap run=<run folder or checkpoint>")


def test_other_nulls_and_calls_with_arguments_run_the_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ecgexp-train", "task.metadata_columns=null",
                                      "not_a_group=null", "=null", "~model", "model=resnet1d"])
    calls = []
    command = wrapped(calls)
    assert command() == "ran" and calls == [((), {})]
    assert command.__doc__ == "The command's docstring."
    monkeypatch.setattr(sys, "argv", ["ecgexp-train", "model=null"])
    assert command("cfg", key=1) == "ran"  # called from Python: sys.argv is not read
    assert calls[-1] == (("cfg",), {"key": 1})


@pytest.mark.parametrize(("argv", "many", "expected"), [
    (["p", "runs/a", "x=1"], False, ["p", "run='runs/a'", "x=1"]),
    (["p", "a", "b"], False, ["p", "run='a'", "b"]),
    (["p", "a", "b", "-m", "c"], True, ["p", "run=['a','b']", "-m", "c"]),
    (["p", "it's"], False, ["p", "run='it\\'s'"]),
    (["p", "x=1", "a"], True, ["p", "x=1", "a"]),
    (["p", "--help"], False, ["p", "--help"]),
    (["p"], True, ["p"]),
])
def test_bare_leading_arguments_become_one_override(argv, many, expected, monkeypatch):
    monkeypatch.setattr(sys, "argv", list(argv))
    bare_arguments_to_override("run", many=many)
    assert sys.argv == expected
