"""``ecgexp-evaluate`` with hostile or broken inputs (issue 14): names from data stay inside
their folder, unusable predictions and ensembles are one line naming the file and the key,
and evaluation never creates data."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.configs import SHORT_RUN, compose_config
from omegaconf import OmegaConf, open_dict

from ecgexp.errors import UserError, reported
from ecgexp.evaluate import challenge_export, evaluate, load_run, prediction_files
from ecgexp.train import train

FAST = ["bootstrap.n_resamples=20"]
HOSTILE = ["../escape", "/abs/olute/name", "a/../../b"]
# The file names a careful reader gives them: separators become "_", leading dots go.
HOSTILE_FILES = ["_escape.txt", "_abs_olute_name.txt", "a_.._.._b.txt"]
HOSTILE_FIRST_LINES = ["escape", "name", "b"]  # the records' basenames


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny Chagas run trained in ``<root>/train_here`` with a relative data dir
    (``paths.data_dir=data``), as a user running ``ecgexp`` there gets."""
    root = tmp_path_factory.mktemp("safety")
    (root / "train_here").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root / "train_here")
        cfg = compose_config("train", "paths.data_dir=data", f"paths.log_dir={root / 'logs'}",
                             *SHORT_RUN, "task=chagas", "logger=none")
        with open_dict(cfg):
            cfg.paths.output_dir = str(root / "run")
        train(cfg)
    assert OmegaConf.load(root / "run" / "config.yaml").dataset.labels_csv.startswith("data/")
    return root / "run"


def copy_run(run: Path, folder: Path, provenance: bool = True) -> Path:
    """The files evaluation reads: config, predictions and (optionally) provenance."""
    folder.mkdir(parents=True)
    names = ["config.yaml", "predictions_val.csv", "predictions_test.csv", "metrics.json"]
    for name in names + (["provenance.json"] if provenance else []):
        shutil.copy(run / name, folder / name)
    return folder


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ----------------------------------------------------------------------------- 1. export
def scores_table(n: int) -> pd.DataFrame:
    return pd.DataFrame({"exam_id": np.arange(100, 100 + n),
                         "score_chagas": np.linspace(0.05, 0.95, n)})


def test_export_names_from_data_stay_inside_the_export_folder(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    victims = {"escape.txt": b"the user's own file\n", "b.txt": b"another one\n"}
    for name, content in victims.items():
        (parent / name).write_bytes(content)
    export = parent / "export"
    table = scores_table(4)
    names = [*HOSTILE, "plain"]
    assert challenge_export(table, "chagas", 0.5, export, pd.Series(names)) == 4
    assert listing(export) == {*HOSTILE_FILES, "plain.txt"}  # no temporary file left either
    assert listing(parent) == {"export", *victims}
    for name, content in victims.items():
        assert (parent / name).read_bytes() == content
    assert not Path("/abs/olute/name.txt").exists()
    for file, first, score in zip([*HOSTILE_FILES, "plain.txt"],
                                  [*HOSTILE_FIRST_LINES, "plain"], table.score_chagas):
        assert (export / file).read_text().splitlines() == [
            first, f"# Chagas label: {score >= 0.5}", f"# Chagas probability: {score:.6f}"]


@pytest.mark.parametrize("names,expected", [
    (["r1", "r2", "r1", "r3"], "the column 'record' holds 'r1' twice (exam_id 100 and 102)"),
    (["a/b", "x", "a_b", "y"], "the column 'record' holds 'a/b' and 'a_b' (exam_id 100 and 102), "
                               "which both give the file name 'a_b.txt'"),
])
def test_export_refuses_records_that_share_a_file(tmp_path, names, expected):
    export = tmp_path / "export"
    with pytest.raises(UserError) as raised:
        challenge_export(scores_table(4), "chagas", 0.5, export, pd.Series(names))
    assert str(raised.value).startswith(f"challenge_export: {expected}")
    assert not export.exists()  # nothing is written before every name is checked


def test_export_refuses_a_folder_holding_files(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "stale.txt").write_text("an earlier export\n")
    with pytest.raises(UserError) as raised:
        challenge_export(scores_table(3), "chagas", 0.5, export)
    assert str(raised.value).startswith(f"challenge_export: '{export}' is not empty (1 entries, "
                                        f"e.g. 'stale.txt')")
    assert listing(export) == {"stale.txt"}
    assert (export / "stale.txt").read_text() == "an earlier export\n"


def test_evaluate_exports_the_dataset_record_column_safely(trained, tmp_path):
    """The ``record`` column of the run's label CSV (as ``ecgexp-preprocess`` writes it)
    names the export files; hostile names land inside the export folder."""
    run = copy_run(trained, tmp_path / "run", provenance=False)
    config = OmegaConf.load(run / "config.yaml")
    data = trained.parent / "train_here"
    exams = pd.read_csv(data / config.dataset.labels_csv)
    test_ids = pd.read_csv(run / "predictions_test.csv").exam_id.tolist()
    records = {exam_id: f"rec{exam_id}" for exam_id in exams.exam_id}
    records.update(zip(test_ids, HOSTILE))
    exams["record"] = exams.exam_id.map(records)
    exams.to_csv(tmp_path / "exams_with_records.csv", index=False)
    config.dataset.labels_csv = str(tmp_path / "exams_with_records.csv")
    for key in ("directory", "tracing_files"):
        config.dataset[key] = str(data / config.dataset[key])
    (run / "config.yaml").write_text(OmegaConf.to_yaml(config))
    (tmp_path / "escape.txt").write_bytes(b"keep me\n")
    export = tmp_path / "export"

    evaluate(compose_config("evaluate", f"run={run}", *FAST, f"challenge_export={export}"))
    expected = HOSTILE_FILES + [f"rec{exam_id}.txt" for exam_id in test_ids[len(HOSTILE):]]
    assert listing(export) == set(expected)
    assert listing(tmp_path) == {"run", "exams_with_records.csv", "escape.txt", "export"}
    assert (tmp_path / "escape.txt").read_bytes() == b"keep me\n"
    for file, first in zip(HOSTILE_FILES, HOSTILE_FIRST_LINES):
        assert (export / file).read_text().splitlines()[0] == first


# ----------------------------------------------------------------------------- 2. predictions
@pytest.fixture
def labels_csv(tmp_path) -> Path:
    path = tmp_path / "labels.csv"
    pd.DataFrame({"AF": [0, 1, 0, 1, 1, 0], "RBBB": [1, 0, 0, 1, 0, 0]}).to_csv(path,
                                                                              index=False)
    return path


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


SCORES = "AF,RBBB\n0.1,0.2\n0.9,0.3\n0.2,0.1\n0.8,0.7\n0.6,0.4\n0.3,0.2\n"


@pytest.mark.parametrize("content,expected", [
    ("", "is empty (no header line, no rows); predictions expects an .npy of shape (6, 2) or "
         "a CSV with the score columns AF, RBBB"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "is not a readable CSV table ('utf-8' codec can't "
                                               "decode"),
    ("AF,RBBB\n", "has a header (AF, RBBB) but no rows"),
    ("AF,other\n" + "0.5,0.5\n" * 6, "lacks the column(s) RBBB; predictions expects"),
    (SCORES.replace("0.2,0.1", "nan,0.1"), "column 'AF' holds nan at row 3 (line 4 of the "
                                           "file) (1 such rows); scores must be finite"),
    (SCORES.replace("0.9,0.3", "0.9,inf"), "column 'RBBB' holds inf at row 2 (line 3"),
    (SCORES.replace("0.8,0.7", "0.8,high"), "column 'RBBB' holds 'high' at row 4 (line 5"),
    (SCORES + "0.5,0.5\n", "has shape (7, 2), but"),
])
def test_unusable_prediction_files_are_one_line(tmp_path, labels_csv, content, expected):
    path = write(tmp_path / "scores.csv", content)
    with pytest.raises(UserError) as raised:
        prediction_files(path, labels_csv)
    assert str(raised.value).startswith(f"predictions: '{path}' ")
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_unusable_npy_predictions_are_one_line(tmp_path, labels_csv):
    scores = np.full((6, 2), 0.5)
    scores[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", scores)
    with pytest.raises(UserError, match=r"predictions: '.*nan\.npy' holds nan at row 5, "
                                        r"column 2 \(label RBBB\) of the array"):
        prediction_files(tmp_path / "nan.npy", labels_csv)
    write(tmp_path / "broken.npy", "not an array")
    with pytest.raises(UserError, match=r"predictions: '.*broken\.npy' is not a NumPy \.npy "
                                        r"array"):
        prediction_files(tmp_path / "broken.npy", labels_csv)


@pytest.mark.parametrize("content,expected", [
    ("AF,RBBB\n0,1\n1,0\nyes,0\n1,1\n1,0\n0,0\n", "column 'AF' holds 'yes' at row 3 (line 4"),
    ("AF,RBBB\n0,1\n1,0\n0,0\n1,1\n1,2\n0,0\n", "column 'RBBB' holds 2 at row 5 (line 6"),
    ("AF,RBBB\n0,1\n1,0\n0,0\n1,\n1,0\n0,0\n", "column 'RBBB' holds nan at row 4 (line 5"),
])
def test_labels_that_are_not_0_1_are_one_line(tmp_path, content, expected):
    labels = write(tmp_path / "labels.csv", content)
    scores = write(tmp_path / "scores.csv", SCORES)
    with pytest.raises(UserError) as raised:
        prediction_files(scores, labels)
    assert str(raised.value).startswith(f"labels_csv: '{labels}' {expected}")
    assert "a binary label must be 0 or 1" in str(raised.value)


@pytest.mark.parametrize("edit,expected", [
    (lambda path: write(path, ""), "is empty (no header line, no rows); the chagas task "
                                   "expects a predictions table with the columns exam_id, "
                                   "score_chagas, target_chagas"),
    (lambda path: pd.read_csv(path).drop(columns="target_chagas").to_csv(path, index=False),
     "lacks the column(s) target_chagas; the chagas task expects"),
    (lambda path: pd.read_csv(path).assign(score_chagas=lambda t: t.score_chagas.where(
        t.index != 7, np.inf)).to_csv(path, index=False),
     "column 'score_chagas' holds inf at row 8 (line 9 of the file)"),
    (lambda path: pd.read_csv(path).assign(target_chagas=lambda t: t.target_chagas.where(
        t.index != 2, 0.5)).to_csv(path, index=False),
     "column 'target_chagas' holds 0.5 at row 3 (line 4 of the file)"),
])
def test_unusable_run_predictions_are_one_line(trained, tmp_path, edit, expected):
    run = copy_run(trained, tmp_path / "run")
    edit(run / "predictions_test.csv")
    with pytest.raises(UserError) as raised:
        load_run(run)
    assert str(raised.value).startswith(f"run: '{run / 'predictions_test.csv'}' {expected}")


def test_console_gets_one_line_not_a_pandas_traceback(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    write(run / "predictions_val.csv", "")
    with pytest.raises(SystemExit) as exited:
        reported(evaluate)(compose_config("evaluate", f"run={run}", *FAST))
    assert exited.value.code == 2
    assert capsys.readouterr().err == (f"error: run: '{run / 'predictions_val.csv'}' is empty "
                                       f"(no header line, no rows); the chagas task expects a "
                                       f"predictions table with the columns exam_id, "
                                       f"score_chagas, target_chagas, as "
                                       f"ecgexp writes it\n")
    assert not (run / "report").exists()


# ----------------------------------------------------------------------------- 3. ensembles
def test_ensemble_of_runs_with_different_exams_is_refused(trained, tmp_path):
    first = copy_run(trained, tmp_path / "sweep" / "0")
    second = copy_run(trained, tmp_path / "sweep" / "1")
    test = pd.read_csv(second / "predictions_test.csv")
    extra = test.head(2).assign(exam_id=test.exam_id.max() + np.array([1, 2]))
    pd.concat([test.iloc[3:], extra]).to_csv(second / "predictions_test.csv", index=False)
    differ = "predicted different test exams (3 only in the first, 2 only in the second)"
    same_split = "an ensemble needs runs of the same split (same dataset and split_seed)"
    with pytest.raises(UserError) as raised:
        evaluate(compose_config("evaluate", f"runs=[{first},{second}]", *FAST))
    assert str(raised.value) == f"runs: {first} and {second} {differ}; {same_split}"
    with pytest.raises(UserError) as raised:
        evaluate(compose_config("evaluate", f"multirun={tmp_path / 'sweep'}", *FAST))
    assert str(raised.value) == f"multirun: {first} and {second} {differ}; {same_split}"
    assert listing(tmp_path) == {"sweep"}  # no ensemble_report


# ----------------------------------------------------------------------------- 4. data
def test_evaluation_elsewhere_reads_the_run_data_and_creates_none(trained, tmp_path,
                                                                   monkeypatch):
    """From another working directory the run's relative data dir is found where the run
    recorded it (provenance.json); nothing is generated here."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = {p: p.stat().st_mtime_ns for p in (trained.parent / "train_here").rglob("*")}
    evaluate(compose_config("evaluate", f"run={trained}", *FAST,
                            f"output_dir={tmp_path / 'report'}"))
    assert listing(elsewhere) == set()
    strata = pd.read_csv(tmp_path / "report" / "strata.csv")
    assert set(strata.stratum) == {"age", "sex"}  # the dataset's attributes were read
    assert {p: p.stat().st_mtime_ns for p in (trained.parent / "train_here").rglob("*")} == before


def test_evaluation_never_generates_missing_data(trained, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    hint = "set dataset_attributes=false, or data_root=<the folder the run's relative data"
    # A run without provenance.json: its relative paths are taken from here.
    old = copy_run(trained, tmp_path / "old_run", provenance=False)
    with pytest.raises(UserError) as raised:
        evaluate(compose_config("evaluate", f"run={old}", *FAST))
    message = str(raised.value)
    assert message.startswith("dataset_attributes: the run's dataset.") and hint in message
    assert "'data/synthetic_n120_seed0/" in message and f"directory {elsewhere})" in message
    # The data moved away from where provenance.json recorded it.
    moved = copy_run(trained, tmp_path / "moved_run")
    record = (moved / "provenance.json").read_text()
    (moved / "provenance.json").write_text(record.replace(str(trained.parent / "train_here"),
                                                          str(tmp_path / "gone")))
    with pytest.raises(UserError) as raised:
        evaluate(compose_config("evaluate", f"run={moved}", *FAST))
    assert f"'{tmp_path / 'gone' / 'data' / 'synthetic_n120_seed0'}" in str(raised.value)
    assert f"{moved / 'provenance.json'} recorded the run's data" in str(raised.value)
    assert listing(elsewhere) == set() and not (tmp_path / "gone").exists()
    assert not (old / "report").exists() and not (moved / "report").exists()
    # data_root says where the relative paths start.
    evaluate(compose_config("evaluate", f"run={old}", *FAST,
                            f"data_root={trained.parent / 'train_here'}"))
    assert (old / "report" / "strata.csv").is_file() and listing(elsewhere) == set()


# ----------------------------------------------------------------------------- 5. figures
def test_label_names_cannot_place_figures_outside_the_report(tmp_path):
    labels = write(tmp_path / "labels.csv", "../x,AF\n0,1\n1,0\n0,0\n1,1\n1,0\n0,1\n")
    scores = write(tmp_path / "scores.csv", "../x,AF\n.1,.8\n.7,.3\n.2,.1\n.9,.6\n.6,.2\n.3,.9\n")
    out = tmp_path / "out"
    evaluate(compose_config("evaluate", f"predictions={scores}", f"labels_csv={labels}", *FAST,
                            f"output_dir={out / 'report'}"))
    assert listing(out) == {"report"} and listing(tmp_path) == {"labels.csv", "scores.csv",
                                                                 "out"}
    pngs = {p.name for p in (out / "report").glob("*.png")}
    assert pngs == {"roc_pr_.._x.png", "reliability_.._x.png", "roc_pr_AF.png",
                    "reliability_AF.png"}


def test_labels_giving_one_figure_name_are_refused(tmp_path):
    labels = write(tmp_path / "labels.csv", "a/b,a_b\n0,1\n1,0\n0,0\n1,1\n")
    scores = write(tmp_path / "scores.csv", "a/b,a_b\n.1,.8\n.7,.3\n.2,.1\n.9,.6\n")
    with pytest.raises(UserError) as raised:
        evaluate(compose_config("evaluate", f"predictions={scores}", f"labels_csv={labels}", *FAST,
                                f"output_dir={tmp_path / 'report'}"))
    assert str(raised.value).startswith("label_columns: the label list holds 'a/b' and 'a_b', "
                                        "which both give the file name 'a_b'")
    assert not (tmp_path / "report").exists()


def test_compare_files_are_checked(tmp_path, labels_csv):
    scores = write(tmp_path / "scores.csv", SCORES)
    reader = write(tmp_path / "reader.csv", "AF\n0\n1\n0\n1\n1\n0\n")
    with pytest.raises(UserError) as raised:
        evaluate(compose_config("evaluate", f"predictions={scores}", f"labels_csv={labels_csv}",
                                *FAST, f"+compare.reader={reader}",
                                f"output_dir={tmp_path / 'report'}"))
    assert str(raised.value).startswith(f"compare.reader: '{reader}' lacks the column(s) RBBB")


def test_a_report_never_overwrites_files_it_did_not_write(trained, tmp_path):
    """A folder of other files is refused, byte-identical (an earlier report too:
    tests/e2e/test_no_overwrite.py)."""
    settings = [f"run={trained}", "dataset_attributes=false", *FAST]
    theirs = tmp_path / "results"
    theirs.mkdir()
    (theirs / "metrics.csv").write_text("my own numbers\n")
    with pytest.raises(UserError, match=rf"^output_dir: '{theirs}' is not empty \(1 entries, "
                                        rf"e.g. 'metrics.csv'\); a report goes into a new or "
                                        rf"empty folder"):
        evaluate(compose_config("evaluate", *settings, f"output_dir={theirs}"))
    assert [p.name for p in theirs.iterdir()] == ["metrics.csv"]
    assert (theirs / "metrics.csv").read_text() == "my own numbers\n"
