"""The documentation cannot rot unseen: the commands it marks runnable run as written and do
what it says, the config tables of docs/configuration.md list the config tree, and the
README's links lead to files.

A runnable command is a line of a fenced block right after a line ``<!-- runnable -->`` in
README.md or docs/*.md. It runs through the console script's entry point in this process
(``helpers.commands.run_in_process``: its arguments, working directory, output and exit status as a
process would have them, without 6 s of imports), from a fresh folder in which ``tests/data``
is the repository's, so that a command written for the root of a clone runs verbatim.
"""

import importlib.util
import os
import re
import shlex
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.commands import run_in_process
from helpers.configs import CONF_DIR
from helpers.records import FIXTURES

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = "<!-- runnable -->"
SCRIPTS = Path(sys.executable).parent
# The columns of the CODE-test paper's Table 2 (published_tables/scores.csv) of each predictor
# of report/reader_scores.csv.
TABLE2_COLUMNS = {"model": "DNN", "cardiology_residents": "cardio.",
                  "emergency_residents": "emerg.", "medical_students": "stud."}


def runnable_commands(document: Path) -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of each command in the runnable blocks of ``document``: lines joined
    at a trailing backslash, split as the shell does, ``#`` comments dropped."""
    lines = document.read_text(encoding="utf-8").splitlines()
    commands = []
    for number, line in enumerate(lines, start=1):
        if line.strip() != MARKER:
            continue
        assert lines[number].startswith("```"), f"{document.name}:{number}: {MARKER} must be " \
                                                "followed by a fenced block"
        end = next(i for i in range(number + 1, len(lines)) if lines[i].startswith("```"))
        block = "\n".join(lines[number + 1:end]).replace("\\\n", " ")
        for command in block.splitlines():
            if argv := shlex.split(command, comments=True):
                commands.append((f"{document.relative_to(REPO)}:{number}", argv))
    return commands


COMMANDS = [command for document in DOCUMENTS for command in runnable_commands(document)]


def test_the_readme_and_the_pages_hold_runnable_commands():
    """The marker is found where it is written (else the run below would check nothing)."""
    where = {place.split(":")[0] for place, _ in COMMANDS}
    assert "README.md" in where
    assert any(place.startswith("docs/") for place in where)


def test_a_marker_without_a_fenced_block_is_refused(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"{MARKER}\necgexp --help\n")
    with pytest.raises(AssertionError, match="must be followed by a fenced block"):
        runnable_commands(page)


def primary_config(program: str) -> Path:
    """The primary config of a console script: ``ecgexp`` train.yaml, ``ecgexp-<name>``
    <name>.yaml (dashes as underscores)."""
    name = "train" if program == "ecgexp" else program.removeprefix("ecgexp-").replace("-", "_")
    return CONF_DIR / f"{name}.yaml"


def check_help(program: str, output: str) -> None:
    """The help names the command and prints every top-level key of its primary config."""
    assert output.startswith(f"{program}:"), output[:200]
    config = yaml.safe_load(primary_config(program).read_text())
    keys = set(config) - {"defaults", "hydra"}
    printed = set(re.findall(r"^([A-Za-z_]\w*):", output, flags=re.MULTILINE))
    assert keys <= printed, f"{program} --help lacks {sorted(keys - printed)}"


def check_table2_report(folder: Path) -> None:
    """The report of the CODE-test command of docs/evaluation.md holds the paper's Table 2:
    the network's and each reader's precision, recall, specificity and F1, to the three
    decimals published."""
    published = pd.read_csv(FIXTURES / "code_test" / "published_tables" / "scores.csv",
                            header=[0, 1], index_col=0)
    metric_of = {"Precision": "precision", "Recall": "recall", "Specificity": "specificity",
                 "F1 score": "f1"}
    scores = pd.read_csv(folder / "report" / "reader_scores.csv")
    assert set(scores.predictor) == {"model", "cardiology_residents"}
    for row in scores.itertuples():
        for metric, column in metric_of.items():
            expected = published.loc[row.label, (metric, TABLE2_COLUMNS[row.predictor])]
            assert round(getattr(row, column), 3) == pytest.approx(expected, abs=1e-9), \
                (row.predictor, row.label, metric)
    assert (folder / "report" / "agreement.csv").is_file()


@pytest.mark.parametrize(
    ("where", "argv"),
    [pytest.param(where, argv, id=f"{where} {' '.join(argv)[:60]}",
                  marks=[] if "--help" in argv else [pytest.mark.slow])
     for where, argv in COMMANDS])
def test_runnable_command(where, argv, tmp_path):
    assert (SCRIPTS / argv[0]).is_file(), f"{where}: '{argv[0]}' is not a console script of " \
                                          f"ecgexp"
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(FIXTURES, target_is_directory=True)
    done = run_in_process(argv[0], tmp_path, *argv[1:], env={"TTY_COMPATIBLE": "0"})
    assert done.returncode == 0, f"{where}: {' '.join(argv)}\n{done.stdout}\n{done.stderr}"
    if "--help" in argv:
        check_help(argv[0], done.stdout)
    elif argv[0] == "ecgexp-evaluate":
        check_table2_report(tmp_path)
    else:
        pytest.fail(f"{where}: no check of what '{argv[0]}' wrote; add one to {__file__}")


# ----------------------------------------------------------------- the config tables (hooks.py)
def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


def test_the_group_tables_list_every_group_folder_and_option():
    """One section per folder of ecgexp/conf that holds options (nested ones by their path,
    ``hydra/launcher``), listing each option file, with train.yaml's default marked."""
    expected = {}
    for folder, _, files in os.walk(CONF_DIR):
        options = sorted(name.removesuffix(".yaml") for name in files if name.endswith(".yaml"))
        if options and Path(folder) != CONF_DIR:
            expected[Path(folder).relative_to(CONF_DIR).as_posix()] = options
    markdown = load_hooks().config_groups_markdown(CONF_DIR)
    listed, marked = {}, {}
    for section in markdown.split("### ")[1:]:
        group = re.match(r"`([^`]+)`", section)[1]
        listed[group] = re.findall(r"^\| `([^`]+)`", section, flags=re.MULTILINE)
        marked[group] = re.findall(r"^\| `([^`]+)` \(default\)", section, flags=re.MULTILINE)
    assert listed == expected
    assert {"dataset", "task", "labels", "quality", "experiment", "hydra/launcher"} <= set(listed)
    defaults = {group: option for entry in
                yaml.safe_load((CONF_DIR / "train.yaml").read_text())["defaults"]
                if isinstance(entry, dict) for group, option in entry.items()}
    assert {group: options[0] for group, options in marked.items() if options} == \
        {group: option for group, option in defaults.items() if option is not None}


def test_the_primary_config_table_lists_each_command():
    rows = load_hooks().primary_configs_markdown(CONF_DIR).splitlines()[2:]
    listed = [re.match(r"\| `([^`]+)` \| `([^`]*)`", row).groups() for row in rows]
    assert [config for config, _ in listed] == sorted(
        name for name in os.listdir(CONF_DIR) if name.endswith(".yaml"))
    assert ("train.yaml", "ecgexp") in listed and ("evaluate.yaml", "ecgexp-evaluate") in listed


def test_an_option_is_described_by_the_first_sentence_of_its_opening_comment(tmp_path):
    hooks = load_hooks()
    option = tmp_path / "option.yaml"
    option.write_text("# @package _global_\n# Atrial fibrillation (Habineza et al. 2023, J.\n"
                      "# Electrocardiol.) from e.g. the CODE exams. A second sentence.\nx: 1\n")
    assert hooks.opening_sentence(option) == \
        "Atrial fibrillation (Habineza et al. 2023, J. Electrocardiol.) from e.g. the CODE exams."
    option.write_text("# Records of a folder, e.g. the Challenge layout:\n"
                      "#   ecgexp dataset=wfdb_folder. Not this.\nx: 1\n")
    assert hooks.opening_sentence(option) == "Records of a folder, e.g. the Challenge layout"
    option.write_text("x: 1\n# A comment that opens nothing.\n")
    with pytest.raises(ValueError, match="option.yaml: no opening"):
        hooks.opening_sentence(option)


def test_a_description_is_safe_in_a_table_cell():
    cell = load_hooks().table_cell("reports (<output stem>_quality.csv, a | b, x*y) `a|<b>`")
    assert cell == r"reports (&lt;output stem&gt;_quality.csv, a \| b, x\*y) `a|<b>`"


def test_the_readme_links_lead_to_files():
    links = re.findall(r"\]\(([^)#]+)", (REPO / "README.md").read_text())
    assert links
    assert [link for link in links if not (REPO / link).exists()] == []
