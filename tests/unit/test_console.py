"""The console stays readable: each command's --help, the metric tables, no third-party noise
on a training run."""

import logging
import re
import warnings

import pytest
from helpers.commands import call_entry_point, entry_point
from helpers.configs import CONF_DIR
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from ecgexp import console
from ecgexp.commands import (
    bench,
    compare,
    convert_keras,
    evaluate,
    export,
    heatmap,
    predict,
    preprocess,
    synth,
    train,
)
from ecgexp.evaluation.report import format_value, is_count, print_report

# console script -> (entry point, primary config, text of its first line)
COMMANDS = {
    "ecgexp": (train.main, "train", "ecgexp: train a task on a dataset"),
    "ecgexp-evaluate": (evaluate.evaluate, "evaluate", "ecgexp-evaluate: recompute the metrics"),
    "ecgexp-preprocess": (preprocess.preprocess, "preprocess",
                          "ecgexp-preprocess: convert raw ECG"),
    "ecgexp-synth": (synth.synth, "synth", "ecgexp-synth: write a synthetic dataset"),
    "ecgexp-bench": (bench.bench, "bench", "ecgexp-bench: the benchmark suite"),
    "ecgexp-compare": (compare.compare, "compare", "ecgexp-compare: runs of one task compared"),
    "ecgexp-predict": (predict.predict, "predict", "ecgexp-predict: a trained model's predictions"),
    "ecgexp-heatmap": (heatmap.heatmap, "heatmap", "ecgexp-heatmap: saliency heatmaps"),
    "ecgexp-convert-keras": (convert_keras.convert_keras, "convert_keras",
                             "ecgexp-convert-keras: convert the Keras"),
    "ecgexp-export": (export.export, "export", "ecgexp-export: a trained model's network"),
}


def help_text(command: str, monkeypatch, capsys, *args: str) -> str:
    """``command --help`` run in this process (as the console script does), its output."""
    assert entry_point(command) is COMMANDS[command][0]
    # call_entry_point puts back the process-wide HydraConfig (set by the help) after the test
    with pytest.raises(SystemExit) as stopped:
        call_entry_point(command, monkeypatch, *args, "--help")
    assert stopped.value.code == 0
    return capsys.readouterr().out


def listed_groups(text: str) -> dict[str, str]:
    """The help's configuration groups section: ``{group: its options line}``."""
    if "== Configuration groups ==" not in text:
        return {}
    section = text.split("== Configuration groups ==")[1].split("== Config ==")[0]
    groups, group = {}, None
    for line in section.splitlines():
        if match := re.match(r"^  (\S+) {2,}(.*)$", line):
            group = match.group(1)
            groups[group] = match.group(2)
        elif group and line.startswith("    "):  # options wrapped onto the next line
            groups[group] += " " + line.strip()
    return groups


def primary_groups(config_name: str) -> set[str]:
    """The config groups of a primary config's defaults list (Hydra's own overrides aside)."""
    defaults = OmegaConf.load(CONF_DIR / f"{config_name}.yaml").get("defaults", [])
    return {key for entry in defaults if not isinstance(entry, str)
            for key in entry if not key.startswith("override ") and key != "hydra"}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_starts_with_what_the_command_does_and_examples(command, monkeypatch, capsys):
    _, config_name, description = COMMANDS[command]
    text = help_text(command, monkeypatch, capsys)
    assert text.splitlines()[0].startswith(description)
    assert "powered by Hydra" not in text
    examples = text.split("Examples:")[1].split("==")[0]
    assert re.search(rf"^  {command}( |$)", examples, re.M), examples
    assert text.index("Examples:") < text.index("== Config ==")
    assert "--hydra-help" in text
    # the groups of this command's own config, and no other (train: also its SLURM launcher)
    expected = primary_groups(config_name) | ({"hydra/launcher"} if command == "ecgexp" else set())
    assert set(listed_groups(text)) == expected


def test_predict_without_a_dataset_says_how_to_choose_one(tmp_path):
    from helpers.commands import run_in_process

    result = run_in_process("ecgexp-predict", tmp_path, "run=x", "output=y.csv")
    assert result.returncode == 2
    assert result.stderr.startswith("error: dataset: choose the exams to predict, e.g. "
                                    "dataset=wfdb_folder dataset.path=<folder>")


def test_train_help_lists_the_training_groups_with_their_options(monkeypatch, capsys):
    groups = listed_groups(help_text("ecgexp", monkeypatch, capsys, "model=resnet1d_small"))
    assert {"dataset", "task", "model", "trainer", "logger", "experiment", "sweep"} <= set(groups)
    options = {group: line.replace(",", " ").split() for group, line in groups.items()}
    assert {"resnet1d", "resnet1d_keras", "resnet1d_small*"} <= set(options["model"])
    assert "synthetic*" in options["dataset"] and "chagas" in options["task"]
    assert "heatmap" not in options["task"]  # a command of its own: ecgexp-heatmap
    assert all(not option.endswith("*") for option in options["split"])  # none chosen


def test_help_leaves_no_hydra_config_behind(monkeypatch, capsys):
    before = HydraConfig.instance().cfg
    with monkeypatch.context() as patched:
        help_text("ecgexp-synth", patched, capsys)
        assert HydraConfig.get().job.config_name == "synth"  # what the help composed
    assert HydraConfig.instance().cfg is before  # other tests see no leftover Hydra config


def test_evaluate_help_lists_no_training_group(monkeypatch, capsys):
    """Only the groups evaluate shares with compare, each with its one option chosen."""
    text = help_text("ecgexp-evaluate", monkeypatch, capsys)
    assert listed_groups(text) == {"bootstrap": "default*", "calibration": "default*",
                                   "wandb": "default*"}
    for options in ("abnormality, af_risk", "resnet1d, resnet1d_keras", "csv, none"):
        assert options not in text  # the task, model and logger groups of training
    assert "run: null" in text and "bootstrap:" in text  # the config to override


def test_help_groups_outside_hydra_marks_nothing(monkeypatch):
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)
    text = console.help_groups("model", "paths")
    # the options of a group, wrapped under the group's column
    block = re.search(r"^  model +(.*?)\n  paths", text, re.M | re.S)[1]
    assert re.sub(r",\n {9}", ", ", block).split(", ") == sorted(
        path.stem for path in (CONF_DIR / "model").glob("*.yaml"))
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "*" not in text


REPORT = {"test": {"AF": {"auroc": 0.91234, "n": 40.0, "positives": 3.0, "n_exams": 40},
                   "macro": {"auroc": 0.5}}}


def test_report_prints_counts_as_integers(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    print_report(REPORT, title="demo")
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "AF" in line)
    assert [cell.strip() for cell in row.split("│")[2:-1]] == ["0.912", "40", "3", "40"]
    assert "40.000" not in out and "3.000" not in out
    assert "demo: test split" in out


def test_counts_are_named_like_counts():
    assert all(map(is_count, ["n", "n_exams", "positives", "negatives", "events",
                              "event_count", "exams"]))
    assert not any(map(is_count, ["auroc", "threshold", "recall", "f1", "mean_nll"]))
    assert format_value("n", 12.0) == "12" and format_value("positives", 3) == "3"
    assert format_value("n", 12.5) == "12.500"  # a mean over ensemble members stays exact
    assert format_value("n", float("nan")) == "nan"
    assert format_value("auroc", 1.0) == "1.000" and format_value("ap", 0.12345) == "0.123"


@pytest.mark.parametrize("columns", [60, 200])
def test_report_is_as_wide_as_the_terminal(columns, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))
    metrics = {f"metric_{i:02d}": 0.5 for i in range(12)}  # 154 columns wide unsqueezed
    print_report({"val": {"AF": metrics}}, title="wide")
    out = capsys.readouterr().out
    widths = [len(line) for line in out.splitlines() if line.strip()]
    assert max(widths) <= columns
    if columns == 200:  # no fixed width of 120: the whole table, every header on one line
        assert max(widths) > 120 and all(name in out for name in metrics)


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_the_filters_drop_only_their_own_lines():
    console.install_filters()  # again: a no-op
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert logger.filters.count(console._not_a_tip) == 1
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("💡 Tip: For seamless cloud logging, try installing litlogger")
        logger.info("GPU available: False, used: False")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert handler.messages == ["GPU available: False, used: False"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        console.install_filters()
        message = "`isinstance(treespec, LeafSpec)` is deprecated, use ..."
        warnings.warn_explicit(message, FutureWarning, "_pytree.py", 21,
                               module="pytorch_lightning.utilities._pytree")
        warnings.warn_explicit(message, FutureWarning, "other.py", 1, module="other")
    assert [w.filename for w in caught] == ["other.py"]


def test_a_report_too_wide_for_the_terminal_is_transposed(capsys, monkeypatch):
    """Sixteen metrics of one label at 80 columns: a row per metric, every name and value
    whole (the discrete-time survival table)."""
    monkeypatch.setenv("COLUMNS", "80")
    metrics = {f"brier_at_{i}": i / 100 for i in range(15)} | {"events": 12.0}
    print_report({"test": {"death": metrics}}, title="survival_discrete")
    lines = capsys.readouterr().out.splitlines()
    rows = {cells[0]: cells[1:] for line in lines  # the header's rules are ┃, the body's │
            if len(cells := [c.strip() for c in re.split("[│┃]", line)[1:-1]]) == 2}
    assert rows["metric"] == ["death"]
    assert rows["brier_at_14"] == ["0.140"] and rows["events"] == ["12"]
    assert max(map(len, lines)) <= 80
