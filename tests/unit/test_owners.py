"""One owner per name: the code of the package spells the columns of a predictions table only
in ``ecgexp/columns.py`` and the files of a run folder only in ``ecgexp/run_folder.py``.

Read from the source with ``ast``: every string constant and every literal part of an f-string,
docstrings left out (they describe the names; they do not build them). Config keys that share
a prefix with a column (``label_columns``, ``score_edges``, ``label_files``) are not column
names, nor are the parameter-name prefixes of the published encoders (``label_embedding.``).
"""

import ast
import re
from pathlib import Path

import ecgexp

PACKAGE = Path(ecgexp.__file__).parent
COLUMN = re.compile(r"^(score|target|label|predicted|prob|mean|std|survival_at)_|^risk_score$")
NOT_COLUMNS = {"label_columns", "score_edges", "label_files", "mean_probability",
               "mean_interval_width", "target_column", "target_columns", "label_columns: ",
               "target_glu.", "label_embedding."}
# File names, not W&B keys (``predictions_test``, ``training_statistics.<name>``) nor the
# quality files of a converted dataset (``<name>_quality.csv``).
RUN_FILE = re.compile(r"config\.yaml|metrics\.json|training_statistics\.json|provenance\.json|"
                      r"(^|[^\w])quality\.csv|predictions_\S*\.csv|\.ckpt|^checkpoints$|"
                      r"\.ecgexp\.lock")


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of ``tree``."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            found.add(id(body[0].value))
    return found


def spellings(pattern: re.Pattern, ignore: set[str] = frozenset()) -> dict[str, list[str]]:
    """The string constants of each package module that ``pattern`` finds, by module path."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        skipped = docstrings(tree)
        hits = [node.value for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in skipped and node.value not in ignore
                and pattern.search(node.value)]
        if hits:
            found[path.relative_to(PACKAGE).as_posix()] = hits
    return found


def test_the_column_names_are_spelt_only_by_their_owner():
    found = spellings(COLUMN, NOT_COLUMNS)
    assert set(found) == {"columns.py"}, found
    assert {"score_", "target_", "label_", "risk_score"} <= set(found["columns.py"])


def test_the_run_folder_files_are_spelt_only_by_their_owner():
    found = spellings(RUN_FILE)
    assert set(found) == {"run_folder.py"}, found


def test_the_finder_sees_a_spelling_in_code_not_in_a_docstring():
    tree = ast.parse('"""score_AF in a docstring."""\ncolumn = f"score_{name}"\n')
    skipped = docstrings(tree)
    literals = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                and isinstance(node.value, str) and id(node) not in skipped]
    assert literals == ["score_"]


# The modules that call a network: training's forward pass (the LightningModule), the one
# inference loop, the export's check of the exported file against the network, the crops'
# wrapper (a network calling the network it wraps), and the benchmarks' plain loops that it is
# measured against. Attribution (heatmaps) calls networks through ``output_of`` for gradients,
# not predictions.
CALLS_NETWORKS = {"tasks/module.py", "inference/loop.py", "inference/export.py",
                  "models/windows.py"}


def network_calls(source: str) -> list[int]:
    """The lines of ``source`` that call a network: ``net(...)`` or ``<x>.net(...)``."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and (
                isinstance(node.func, ast.Name) and node.func.id == "net"
                or isinstance(node.func, ast.Attribute) and node.func.attr == "net")]


def test_one_inference_loop_calls_the_networks():
    """A run's splits, its external sets, ecgexp-predict, the API, the Challenge interface
    and heatmaps' scores all go through ``ecgexp.inference.loop.inferred``."""
    found = {str(path.relative_to(PACKAGE)): lines for path in sorted(PACKAGE.rglob("*.py"))
             if not path.relative_to(PACKAGE).parts[0] == "bench"
             and (lines := network_calls(path.read_text()))}
    assert set(found) == CALLS_NETWORKS, found


def test_the_network_call_finder_sees_both_spellings():
    assert network_calls("a = net(x)\nb = model.net(x, m)\nc = network(x)\n") == [1, 2]
