"""Dependencies point one way: no import circle among the package's modules, counting imports
inside functions too; the metrics layer imports nothing of ecgexp but itself and its errors;
the console commands (``ecgexp/commands``) import no other command, and nothing imports
them; what converts records or reports on predictions starts without Lightning."""

from pathlib import Path

from helpers.source import imported_modules

import ecgexp

PACKAGE = Path(ecgexp.__file__).parent


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
        ".__init__")


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: (imported_modules(path) & set(modules)) - {name}
            for name, path in modules.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a path that returns to its start), or None."""
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for dependency in sorted(graph[name]):
            if state.get(dependency) == "open":
                return path[path.index(dependency):] + [dependency]
            if dependency not in state:
                circle = visit(dependency, path + [dependency])
                if circle:
                    return circle
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            circle = visit(name, [name])
            if circle:
                return circle
    return None


def test_the_finder_sees_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_metrics_layer_stands_alone():
    """Arrays in, numbers out: no task, run folder, command or report behind a metric."""
    graph = import_graph()
    metrics = {name for name in graph if name.startswith("ecgexp.metrics")}
    assert {"ecgexp.metrics.bootstrap", "ecgexp.metrics.ranking"} <= metrics
    outside = {name: sorted(d for d in graph[name] if not d.startswith("ecgexp.metrics")
                            and d not in ("ecgexp", "ecgexp.errors"))
               for name in metrics}
    assert {name: found for name, found in outside.items() if found} == {}


def test_reports_point_one_way_tasks_use_evaluation_not_back():
    """A task kind registers its report's analyses (``objective.analyses``, ``report``,
    ``thresholded_labels``); the evaluation layer asks the objective, never imports tasks."""
    graph = import_graph()
    evaluation = {name for name in graph if name.startswith("ecgexp.evaluation")}
    assert "ecgexp.evaluation.binary" in graph["ecgexp.tasks.objectives"]  # the one direction
    back = {name: sorted(d for d in graph[name] if d.startswith("ecgexp.tasks"))
            for name in evaluation}
    assert {name: found for name, found in back.items() if found} == {}


def test_commands_are_leaves_that_import_no_other_command():
    graph = import_graph()
    commands = {name for name in graph if name.startswith("ecgexp.commands.")}
    scripts = {line.split('"')[1].split(":")[0] for line in
               (PACKAGE.parent / "pyproject.toml").read_text().split("[project.scripts]")[1]
               .split("\n\n")[0].splitlines() if "=" in line}
    assert scripts == commands  # one module per console script, and no other
    assert {name: sorted(graph[name] & commands) for name in commands
            if graph[name] & commands} == {}
    importers = {name for name, imported in graph.items()
                 if imported & (commands | {"ecgexp.commands"}) and name not in commands}
    assert importers <= {"ecgexp.__main__"}, importers


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert {"ecgexp.train", "ecgexp.evaluate", "ecgexp.tracking"} <= set(graph)
    assert "ecgexp.data.build" in graph["ecgexp.train"]
    assert find_circle(graph) is None, " -> ".join(find_circle(graph))


# What a command needs before its first line of output: converting records and reporting on
# predictions never train, and Lightning (with the torch compiler it imports) is 2 to 4 s of
# start-up on 2 cores.
WITHOUT_LIGHTNING = ("ecgexp.data.convert", "ecgexp.evaluate", "ecgexp.compare",
                     "ecgexp.progress", "ecgexp.checkpoints", "ecgexp.run_folder")


def test_converting_and_reporting_do_not_import_lightning():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    with_lightning = {name for name, path in modules.items()
                      if imported_modules(path, "pytorch_lightning", on_import=True)
                      | imported_modules(path, "lightning_fabric", on_import=True)}
    assert {"ecgexp.train", "ecgexp.tasks.callbacks"} <= with_lightning  # the check sees them
    for start in WITHOUT_LIGHTNING:
        reached, todo = set(), [start]
        while todo:
            name = todo.pop()
            if name in reached or name not in modules:
                continue
            reached.add(name)
            todo += imported_modules(modules[name], on_import=True)
            parent = name.rpartition(".")[0]
            todo += [parent] if parent else []  # importing a.b imports a first
        assert reached & with_lightning == set(), (start, sorted(reached & with_lightning))
