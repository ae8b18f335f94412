"""The tests mirror the package (issue 30): ``tests/unit/<package>/test_<module>.py`` for the
module ``ecgexp/<package>/<module>.py`` it tests, ``tests/e2e/test_<capability>.py`` for what
drives commands and whole runs across modules, helpers in the ``helpers`` package (never
imported from ``conftest`` or from another test module), and every module with logic has its
test file, but for the known gaps listed here. Checked on the files, without running them."""

import ast
from pathlib import Path

import pytest

import ecgexp

TESTS = Path(__file__).resolve().parents[1]
UNIT, E2E = TESTS / "unit", TESTS / "e2e"
PACKAGE = Path(ecgexp.__file__).resolve().parent
NOT_TESTS = ("data", "reference", "helpers")  # records, published values and helpers

# Unit test files that test no one module, by what they test instead.
PACKAGE_WIDE = {
    "test_imports.py": "the import graph of the whole package",
    "test_owners.py": "who may spell a column or a run-folder file name, over the whole package",
    "test_layout.py": "this layout of the tests against the package",
}
# Unit test files named by a topic of their module(s): one module's tests in two files, or one
# file whose checks span modules of one package (never merged: module fixtures, history).
TOPIC_FILES = {
    "evaluation/test_binary_undefined_labels.py": ["evaluation/binary.py"],
    "evaluation/test_task_reports.py": ["evaluation/binary.py", "evaluation/regression.py",
                                        "evaluation/multiclass.py"],
}

# The modules with logic that have no test file of their own yet (ecgexp/<path>): each is either
# tested through another module's file or an end-to-end file (named), or not on its own at all.
# A module that gets its test file, or no longer exists, must leave this set.
KNOWN_GAPS = {
    # The inference layer: TrainedModel through tests/unit/test_api.py and
    # tests/unit/test_challenge.py; the datasets and tables of ecgexp-predict and external sets
    # through tests/e2e/test_predict.py and tests/e2e/test_public_datasets.py.
    "inference/inputs.py", "inference/model.py", "inference/dataset.py", "inference/table.py",
    # The LightningModule: every training run (tests/e2e/test_learning.py, test_resume.py).
    "tasks/module.py",
    # The benchmarks: measured, with their checks, by tests/e2e/test_bench.py.
    "bench/apart.py", "bench/backbones.py", "bench/bootstrap.py", "bench/inference.py",
    "bench/checks.py", "bench/common.py", "bench/data.py", "bench/dropout.py", "bench/flops.py",
    "bench/gpu.py", "bench/heatmap.py", "bench/predict.py", "bench/predict_memory.py",
    "bench/probe.py", "bench/preprocess.py", "bench/report.py", "bench/reports.py",
    "bench/runner.py", "bench/scaling.py", "bench/training.py",
    # Console scripts' entry points (a few lines each): run by tests/e2e/test_cli.py and by
    # every test calling helpers.commands.run_in_process.
    "commands/bench.py", "commands/compare.py", "commands/convert_keras.py",
    "commands/evaluate.py", "commands/export.py", "commands/heatmap.py", "commands/predict.py",
    "commands/preprocess.py", "commands/synth.py", "commands/train.py",
    # The commands' own modules, tested end to end: tests/e2e/test_compare.py,
    # tests/e2e/test_predict.py, tests/e2e/test_loggers.py (tracking).
    "compare.py", "predict.py", "tracking.py",
    # Raw-record datasets: tests/e2e/test_public_datasets.py, tests/e2e/test_missing_values.py,
    # tests/unit/signal/test_quality.py, tests/unit/data/test_convert.py.
    "data/record_source.py", "data/ptbxl.py", "data/synthetic_source.py",
    # Through the DataModule: tests/unit/data/test_datamodule.py.
    "data/dataset.py",
    # The reports of ecgexp-evaluate and ecgexp-compare: tests/unit/test_evaluate.py,
    # tests/e2e/test_evaluate.py, tests/e2e/test_compare.py; multi-class reports in
    # tests/unit/evaluation/test_task_reports.py and tests/unit/tasks/test_multiclass.py.
    "evaluation/analyses.py", "evaluation/entries.py", "evaluation/paired.py",
    "evaluation/inputs.py", "evaluation/multiclass.py",
    # Task pieces: tests/unit/tasks/test_objectives.py (regression objectives),
    # tests/e2e/test_tasks.py and tests/e2e/test_experiments.py (build).
    "tasks/regression.py", "tasks/build.py",
}


def all_test_files() -> list[Path]:
    """Every test file of the suite (``test_*.py``), records and helpers aside."""
    return sorted(path for path in TESTS.rglob("test_*.py")
                  if path.relative_to(TESTS).parts[0] not in NOT_TESTS)


def modules_with_logic() -> set[str]:
    """The modules of ecgexp (paths under ``ecgexp/``) that define a function or a class."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               for node in ast.walk(tree)):
            found.add(path.relative_to(PACKAGE).as_posix())
    return found


def mirrored_test(module: str) -> Path:
    """``tests/unit/<package>/test_<module>.py`` of ``<package>/<module>.py``."""
    path = Path(module)
    return UNIT / path.parent / f"test_{path.name}"


def module_of(test_file: Path) -> Path:
    """``ecgexp/<package>/<module>.py`` of ``tests/unit/<package>/test_<module>.py``."""
    relative = test_file.relative_to(UNIT)
    return PACKAGE / relative.parent / relative.name.removeprefix("test_")


def test_every_test_file_is_a_unit_or_an_end_to_end_test():
    files = all_test_files()
    assert len(files) > 60
    misplaced = [str(p.relative_to(TESTS)) for p in files
                 if not (p.is_relative_to(UNIT) or p.parent == E2E)]
    assert misplaced == [], "test files belong in tests/unit/<package>/ or tests/e2e/"


def test_each_unit_test_file_mirrors_an_existing_module():
    unmatched = []
    for path in all_test_files():
        if not path.is_relative_to(UNIT):
            continue
        relative = path.relative_to(UNIT).as_posix()
        if relative in PACKAGE_WIDE:
            continue
        modules = TOPIC_FILES.get(relative)
        if modules is not None:
            unmatched += [f"{relative} ({m})" for m in modules if not (PACKAGE / m).is_file()]
        elif not module_of(path).is_file():
            unmatched.append(relative)
    assert unmatched == [], ("unit test files name no module ecgexp/<package>/<module>.py: "
                             "rename them, or list them in PACKAGE_WIDE or TOPIC_FILES")
    listed = [*PACKAGE_WIDE, *TOPIC_FILES]
    assert [name for name in listed if not (UNIT / name).is_file()] == []


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_test_file_imports_conftest_or_another_test_module():
    offending = {}
    for path in [*all_test_files(), *(TESTS / "helpers").glob("*.py")]:
        bad = sorted(name for name in imported_modules(path)
                     if name == "conftest" or name.split(".")[0] in ("tests", "conftest")
                     or name.split(".")[-1].startswith("test_"))
        if bad:
            offending[str(path.relative_to(TESTS))] = bad
    assert offending == {}, "shared code goes into the helpers package (tests/helpers)"


def test_the_finders_see_what_they_look_for(tmp_path):
    """The checks above on made-up files: they would see a break of the layout."""
    source = tmp_path / "test_x.py"
    source.write_text("import os\nfrom conftest import SHORT_RUN\n\ndef f():\n"
                      "    from test_learning import train_task\n    import helpers.runs\n")
    assert imported_modules(source) == {"os", "conftest", "test_learning", "helpers.runs"}
    assert mirrored_test("evaluation/report.py") == UNIT / "evaluation" / "test_report.py"
    assert module_of(UNIT / "data" / "test_hdf5.py") == PACKAGE / "data" / "hdf5.py"
    assert "files.py" in modules_with_logic() and "data/__init__.py" not in modules_with_logic()


def test_every_module_with_logic_has_its_test_file_or_is_a_known_gap():
    modules = modules_with_logic()
    missing = {m for m in modules if not mirrored_test(m).is_file()}
    assert sorted(missing - KNOWN_GAPS) == [], (
        f"modules without {mirrored_test('<package>/<module>.py').relative_to(TESTS)}: "
        f"write it (or, for now, list the module in KNOWN_GAPS with where it is tested)")
    assert sorted(KNOWN_GAPS - missing) == [], (
        "KNOWN_GAPS is stale: these modules have their test file now, or no longer exist (or "
        "hold no logic): take them off the list")


def longest_first() -> tuple[str, ...]:
    """``LONGEST_FIRST`` of tests/conftest.py, read from its source (not imported)."""
    for node in ast.parse((TESTS / "conftest.py").read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["LONGEST_FIRST"]:
            return ast.literal_eval(node.value)
    pytest.fail("tests/conftest.py has no LONGEST_FIRST")


def test_the_longest_files_named_first_exist():
    """conftest.py orders the test files for the xdist workers by their paths: a file moved or
    renamed would otherwise silently fall back to the end of the queue."""
    names = longest_first()
    assert len(names) == len(set(names)) > 20
    assert [name for name in names if not (TESTS / name).is_file()] == []
