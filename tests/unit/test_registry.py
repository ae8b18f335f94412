"""A run folder (its config.yaml) or a checkpoint (its model card) cannot run code or write
outside itself, on every reader: what it may instantiate is ecgexp.registry, checked on the
resolved object; nothing in it grants trust or chooses a file; a resumed or interpreted run
writes only inside its folder. Each fault is made for real: a marker file that must not
appear, a victim file that must stay byte-identical."""

import hashlib
import json
import pathlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers.commands import run_in_process
from helpers.configs import CONF_DIR, compose_config, compose_in

from ecgexp import challenge
from ecgexp.api import load_model
from ecgexp.contract import CARD_KEY
from ecgexp.errors import UserError
from ecgexp.interpret.heatmaps import extract_heatmaps
from ecgexp.registry import CLASSES, RULES, check_tree, refusal
from ecgexp.run_folder import RunFolder
from ecgexp.train import train


def write_exams(path: Path, n: int = 3) -> list[str]:
    """An HDF5 file of ``n`` exams (0.1 mV noise) and the ``ecgexp-predict`` arguments that
    read it."""
    import h5py
    import numpy as np

    tracings = np.random.default_rng(0).normal(0, 0.1, (n, 4096, 12)).astype(np.float32)
    with h5py.File(path, "w") as handle:
        handle["tracings"], handle["exam_id"] = tracings, np.arange(1, n + 1)
    return ["dataset=generic", f"dataset.tracing_files={path}", "dataset.labels_csv=null"]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_run(run: Path, folder: Path) -> Path:
    subprocess.run(["cp", "-a", str(run), str(folder)], check=True)
    return folder


def shipped_targets() -> list[tuple[str, bool]]:
    """``(_target_, _partial_)`` of every node of the shipped config tree, read with yaml."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "_target_" in node:
                found.append((node["_target_"], node.get("_partial_") is True))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in CONF_DIR.rglob("*.yaml"):
        walk(yaml.safe_load(path.read_text()))
    return found


# ----------------------------------------------------------------------------- the registry
def test_the_registry_is_the_shipped_config_tree_and_holds_classes():
    shipped = shipped_targets()
    torch_classes = {"torch.optim.Adam", "torch.optim.AdamW",  # AdamW: the PTB-XL experiments
                     "torch.optim.lr_scheduler.ReduceLROnPlateau"}
    assert {target for target, _ in shipped} == CLASSES | RULES | torch_classes
    for target, partial in shipped:  # a rule is only ever bound, never called by instantiate
        assert partial or target not in RULES, target
        assert refusal(target, partial) is None, target
    from hydra.utils import get_object

    assert all(isinstance(get_object(target), type) for target in CLASSES)


@pytest.mark.parametrize("target, partial, reason", [
    ("ecgexp.checkpoints.read_checkpoint", False, "not in ecgexp's registry"),
    ("ecgexp.checkpoints.torch.load", False, "not in ecgexp's registry"),
    ("ecgexp.run_folder.shutil.copyfile", False, "not in ecgexp's registry"),
    ("ecgexp.files.os.open", False, "not in ecgexp's registry"),
    ("ecgexp.files.write_text_atomic", True, "not in ecgexp's registry"),
    ("ecgexp.models.weights.torch.nn.Linear", False, "not in ecgexp's registry"),
    ("os.system", False, "not in ecgexp's registry"),
    ("pytorch_lightning.seed_everything", False, "not in ecgexp's registry"),
    ("torch.optim.lr_scheduler.LambdaLR.__init__", False, "not in ecgexp's registry"),
    ("ecgexp.data.splits.random_split", False, "only bound (_partial_: true), never called"),
    ("mylab.nets.make_net", False, "not in ecgexp's registry"),  # not allowed
])
def test_functions_and_names_reached_through_modules_are_refused(target, partial, reason):
    assert reason in refusal(target, partial)


def test_a_task_entry_other_than_the_heatmaps_is_refused(trained_run, tmp_path):
    folder = copy_run(trained_run, tmp_path / "tampered")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["task"]["entry"] = "subprocess.call"
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(UserError, match="^run: .* names 'subprocess.call' at task.entry, "
                                        "which ecgexp refuses to call"):
        RunFolder(folder).load_config()


def test_torch_optimisers_and_schedulers_by_their_public_names():
    assert refusal("torch.optim.SGD", False) is None
    assert refusal("torch.optim.lr_scheduler.CosineAnnealingLR", True) is None
    assert refusal("torch.optim.sgd.SGD", False) is not None  # not its public name
    assert refusal("torch.optim.lr_scheduler.warnings", False) is not None


def test_an_allowed_package_gives_its_classes_only(tmp_path, monkeypatch):
    write_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert refusal("mylab.nets.TinyCNN", False, ("mylab",)) is None
    assert refusal("mylab.nets.TinyCNN", False, ("mylab.nets",)) is None
    assert refusal("mylab.nets.TinyCNN", False) == "it is not in ecgexp's registry"
    for target in ("mylab.nets.make_net", "mylab.nets.os.system", "mylab.nets.nn.Linear"):
        assert "only classes of the allowed packages (mylab)" in refusal(target, False,
                                                                         ("mylab",))
    assert refusal("mylabx.nets.TinyCNN", False, ("mylab",)) is not None


@pytest.mark.parametrize("prefixes, problem", [
    ("mylab", "'mylab' is not a list of module prefixes ([mylab] or [mylab.nets])"),
    ("[my-lab]", "['my-lab'] is not a list of dotted module names ('my-lab' is not one)"),
    ("[os]", "['os'] is not a list of your own packages ('os' is ecgexp, a library"),
    ("[ecgexp.models]", "['ecgexp.models'] is not a list of your own packages"),
])
def test_allow_modules_is_checked_at_start_up(tmp_path, prefixes, problem):
    for command, args in {"ecgexp-evaluate": ["run=nowhere"], "ecgexp-compare": ["runs=[a,b]"],
                          "ecgexp-predict": ["run=nowhere", "dataset=synthetic", "output=x.csv"],
                          "ecgexp": ["resume=nowhere"]}.items():
        result = run_in_process(command, tmp_path, f"allow_modules={prefixes}", *args)
        assert result.returncode == 2
        assert result.stderr.startswith(f"error: allow_modules: {problem}"), result.stderr


# ----------------------------------------------------------------------------- the faults
class Touch:
    """Unpickled, it creates the file ``marker`` (code from a file running)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.fixture
def scene(trained_run, tmp_path):
    """A copy of the trained run, a victim file with known bytes outside it, where the
    marker would appear, and a pickle inside the folder that creates the marker."""
    folder = copy_run(trained_run, tmp_path / "received")
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    marker = tmp_path / "MARKER"
    torch.save({"x": Touch(marker)}, folder / "evil.pkl")
    return folder, victim, marker


def payloads(folder: Path, victim: Path, marker: Path) -> dict[str, dict]:
    return {
        "unpickle": {"_target_": "ecgexp.checkpoints.read_checkpoint",
                     "path": str(folder / "evil.pkl"), "key": "x", "trusted": True},
        "overwrite": {"_target_": "ecgexp.files.write_text_atomic", "path": str(victim),
                      "text": "replaced", "replace": True},
        "copy": {"_target_": "ecgexp.run_folder.shutil.copyfile", "src": str(victim),
                 "dst": str(marker)},
        "open": {"_target_": "ecgexp.files.os.open", "path": str(marker), "flags": 65},
    }


def tamper(folder: Path, key: str, node: dict) -> None:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    parent, _, name = key.rpartition(".")
    target = config
    for part in parent.split(".") if parent else []:
        target = target[part]
    target[name] = node
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def tampered_card(checkpoint: Path, key: str, node: dict, out: Path) -> Path:
    """A copy of ``checkpoint`` whose model card's config has ``node`` at ``key``."""
    stored = torch.load(checkpoint, weights_only=True)
    config = stored[CARD_KEY]["config"]
    parent, _, name = key.rpartition(".")
    for part in parent.split(".") if parent else []:
        config = config[part]
    config[name] = node
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(stored, out)
    return out


def readers(folder: Path, tmp_path: Path) -> dict:
    """Every reader of a run folder, as a user calls it; each returns (rc or None, message)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    sweep = tmp_path / "sweep"
    if not sweep.exists():
        sweep.mkdir()
        copy_run(folder, sweep / "0")
        copy_run(folder, sweep / "1")
    exams = write_exams(tmp_path / "exams.h5")

    def console(command, *args):
        result = run_in_process(command, work, *args)
        return result.returncode, result.stderr

    def python(function):
        try:
            function()
        except UserError as error:
            return 2, str(error)
        return 0, ""

    return {
        "evaluate run=": lambda: console("ecgexp-evaluate", f"run={folder}",
                                         f"output_dir={work / 'report'}"),
        "evaluate multirun=": lambda: console("ecgexp-evaluate", f"multirun={sweep}"),
        "predict run=": lambda: console("ecgexp-predict", f"run={folder}", *exams,
                                        f"output={work / 'p.csv'}"),
        "predict runs=": lambda: console("ecgexp-predict", f"runs=[{folder},{folder}]",
                                         *exams, f"output={work / 'q.csv'}"),
        "compare": lambda: console("ecgexp-compare", f"runs=[{folder},{folder}]",
                                   f"output_dir={work / 'cmp'}"),
        "heatmaps": lambda: python(lambda: extract_heatmaps(
            compose_config("heatmap", f"run={folder}"))),
        "resume": lambda: python(lambda: train(compose_in(tmp_path, f"resume={folder}"))),
        "api.load_model": lambda: python(lambda: load_model(folder)),
        "challenge load_model": lambda: python(lambda: challenge.load_model(str(folder), False)),
    }


CONFIG_READERS = ("evaluate run=", "evaluate multirun=", "compare", "heatmaps", "resume")
CARD_READERS = ("predict run=", "predict runs=", "heatmaps", "api.load_model",
                "challenge load_model")


@pytest.mark.parametrize("payload", ["unpickle", "overwrite", "copy", "open"])
def test_a_tampered_config_runs_nothing_on_every_reader(scene, tmp_path, payload):
    folder, victim, marker = scene
    tamper(folder, "task.objective", payloads(folder, victim, marker)[payload])
    before, victim_bytes = digests(folder), victim.read_bytes()
    target = payloads(folder, victim, marker)[payload]["_target_"]
    for name in CONFIG_READERS:
        status, message = readers(folder, tmp_path)[name]()
        assert status == 2, (name, message[-2000:])
        assert f"names '{target}' at task.objective, which ecgexp refuses to instantiate" in \
            message, (name, message[-2000:])
        assert not marker.exists() and victim.read_bytes() == victim_bytes, name
        assert digests(folder) == before, name


@pytest.mark.parametrize("payload", ["unpickle", "overwrite"])
def test_a_tampered_model_card_runs_nothing_on_every_reader(scene, tmp_path, payload):
    """The run folder's checkpoints carry a model card whose config names the payload."""
    folder, victim, marker = scene
    node = payloads(folder, victim, marker)[payload]
    for name in ("best.ckpt", "last.ckpt"):
        tampered_card(folder / "checkpoints" / name, "model", node, folder / "checkpoints" / name)
    before = digests(folder)
    for name in CARD_READERS:
        status, message = readers(folder, tmp_path)[name]()
        assert status == 2, (name, message[-2000:])
        assert f"names '{node['_target_']}' at model, which ecgexp refuses to instantiate" in \
            message, (name, message[-2000:])
        assert not marker.exists() and victim.read_text() == "the user's own file\n", name
        assert digests(folder) == before, name
    card = tampered_card(folder / "checkpoints" / "best.ckpt", "model", node,
                         tmp_path / "sent" / "m.ckpt")  # a checkpoint file on its own
    with pytest.raises(UserError, match=rf"^model: '{card}' names '{node['_target_']}' at "):
        load_model(card)


def test_trust_and_files_are_never_taken_from_the_run_folder(scene, tmp_path):
    """The folder's config says ckpt_trusted, model.weights (its pickle) and
    model.weights_trusted; its best checkpoint is that pickle. Every reader of the checkpoint
    refuses it as a file that is not weights-only, and nothing runs."""
    folder, victim, marker = scene
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["ckpt_trusted"] = True
    config["model"]["weights"] = str(folder / "evil.pkl")
    config["model"]["weights_trusted"] = True
    config["allow_modules"] = ["pathlib"]
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    loaded = RunFolder(folder).load_config()
    assert loaded.ckpt_trusted is False and loaded.model.weights is None
    assert loaded.model.weights_trusted is False and list(loaded.allow_modules) == []
    (folder / "checkpoints" / "best.ckpt").write_bytes((folder / "evil.pkl").read_bytes())
    (folder / "checkpoints" / "last.ckpt").write_bytes((folder / "evil.pkl").read_bytes())
    for name in ("predict run=", "heatmaps", "resume", "api.load_model"):
        status, message = readers(folder, tmp_path)[name]()
        assert status == 2 and "weights_only" in message.replace("weights-only", "weights_only"), \
            (name, message[-2000:])
    assert not marker.exists()


@pytest.mark.parametrize("key", ["callbacks.model_checkpoint.dirpath", "logger.csv.save_dir",
                                 "trainer.default_root_dir"])
def test_resume_never_writes_outside_the_run_folder(trained_run, tmp_path, key):
    folder = copy_run(trained_run, tmp_path / "received")
    outside = tmp_path / "elsewhere"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    if key == "logger.csv.save_dir" and not config.get("logger"):
        config["logger"] = {"csv": {"_target_": "pytorch_lightning.loggers.CSVLogger",
                                    "save_dir": "x", "name": "history", "version": ""}}
    parent, _, name = key.rpartition(".")
    node = config
    for part in parent.split("."):
        node = node[part]
    node[name] = str(outside)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    before = digests(folder)
    with pytest.raises(UserError, match=rf"^resume: {folder}/config.yaml sets {key} to "
                                        rf"'{outside}', outside the run folder"):
        train(compose_in(tmp_path, f"resume={folder}", "trainer.max_epochs=3"))
    assert not outside.exists() and digests(folder) == before


@pytest.mark.parametrize("link", ["heatmaps", "checkpoints/extra", "report"])
def test_links_out_of_a_run_folder_are_not_followed(trained_run, tmp_path, link):
    folder = copy_run(trained_run, tmp_path / "received")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (folder / link).symlink_to(outside)
    message = rf"'{folder / link}' is a link to '{outside}', outside the run folder"
    with pytest.raises(UserError, match=rf"^run: {message}"):
        extract_heatmaps(compose_config("heatmap", f"run={folder}"))
    with pytest.raises(UserError, match=rf"^resume: {message}"):
        train(compose_in(tmp_path, f"resume={folder}", "trainer.max_epochs=3"))
    result = run_in_process("ecgexp-evaluate", tmp_path, f"run={folder}")
    assert result.returncode == 2 and message.replace("\\", "") in result.stderr.replace(
        "\\", "")
    assert list(outside.iterdir()) == []


# --------------------------------------------------------------- your own model and task kind
BANDS_TASK = """# Potassium regression whose report has a section of its own: the error per band.
name: potassium_bands
metadata_columns: []
objective:
  _target_: mylab.tasks.PotassiumBands
  target_column: potassium
  units: mmol/L
"""


def write_package(root: Path) -> None:
    """``mylab.nets``: a network defined outside ecgexp, with ecgexp's model arguments;
    ``mylab.tasks``: a task kind of one's own (a potassium regression with a report section of
    its own), and ``conf/task/potassium_bands.yaml``, the one YAML file that names it."""
    package = root / "mylab"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (root / "conf" / "task").mkdir(parents=True, exist_ok=True)
    (root / "conf" / "task" / "potassium_bands.yaml").write_text(BANDS_TASK)
    (package / "tasks.py").write_text('''
import numpy as np
import pandas as pd

from ecgexp.tasks.regression import Regression


class PotassiumBands(Regression):
    """Potassium regression; its report adds the test split's absolute error per band."""

    def report(self, inputs):
        test = inputs.predictions["test"]
        target = test[f"target_{self.target_column}"]
        band = pd.cut(target, [-np.inf, 3.5, 5.5, np.inf], right=False,
                      labels=["below_3.5", "3.5_to_5.5", "from_5.5"])
        error = (test[self.predicted_column] - target).abs()
        table = error.groupby(band, observed=True).agg(["count", "mean"])
        return {"potassium_bands": table.rename(columns={"mean": "mae"}).reset_index(
            names="band")}
''')
    (package / "nets.py").write_text('''
import os  # noqa: F401  (a module attribute that must never be reachable)

import torch
from torch import nn


class TinyCNN(nn.Module):
    """A small network of one's own: convolution, global pooling, linear."""

    def __init__(self, in_leads=12, n_samples=4096, n_outputs=1, head="linear", width=8,
                 **ignored):
        super().__init__()
        self.in_leads, self.n_samples = in_leads, n_samples
        self.conv = nn.Conv1d(in_leads, width, 15, stride=4, padding=7)
        self.relu = nn.ReLU()
        self.lin = nn.Linear(width, n_outputs)

    def forward(self, x):
        return self.lin(self.relu(self.conv(x)).mean(dim=-1))


def make_net(**settings):
    return TinyCNN(**settings)
''')


@pytest.fixture(scope="module")
def own_model_run(tmp_path_factory):
    """A short run of ``mylab.nets.TinyCNN`` on the task ``mylab.tasks.PotassiumBands`` (both
    allowed with ``allow_modules=[mylab]``; the task's YAML on the search path), trained by
    the ``ecgexp`` command with mylab on PYTHONPATH."""
    root = tmp_path_factory.mktemp("own_model")
    write_package(root / "lib")
    from helpers.configs import SHORT_RUN

    env = {"PYTHONPATH": str(root / "lib")}
    sys.path.insert(0, env["PYTHONPATH"])  # as PYTHONPATH does for a new process
    try:
        arguments = [*SHORT_RUN, "model._target_=mylab.nets.TinyCNN", "logger=none",
                     "task=potassium_bands", f"hydra.searchpath=[file://{root / 'lib' / 'conf'}]"]
        refused = run_in_process("ecgexp", root, *arguments, env=env)
        assert refused.returncode == 2 and refused.stderr.startswith(
            "error: train: the config names 'mylab.tasks.PotassiumBands' at task.objective, "
            "which ecgexp refuses to instantiate (it is not in ecgexp's registry); ecgexp "
            "instantiates only the "
            "classes of ecgexp.registry and those of your own packages allowed on the command "
            "line (allow_modules=[mylab])\n"), refused.stderr
        result = run_in_process("ecgexp", root, *arguments, "allow_modules=[mylab]", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        sys.path.remove(env["PYTHONPATH"])
    [folder] = [p.parent for p in (root / "outputs").rglob("metrics.json")]
    return root, folder, env


def test_your_own_model_goes_through_every_command_when_allowed(own_model_run, tmp_path,
                                                                monkeypatch):

    root, folder, env = own_model_run
    monkeypatch.syspath_prepend(env["PYTHONPATH"])
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["allow_modules"] == ["mylab"]
    exams = write_exams(tmp_path / "exams.h5")
    allow = "allow_modules=[mylab]"
    commands = {
        "ecgexp-evaluate": [f"run={folder}", f"output_dir={tmp_path / 'report'}",
                            "bootstrap.n_resamples=20"],
        "ecgexp-predict": [f"run={folder}", *exams, f"output={tmp_path / 'p.csv'}"],
        "ecgexp-compare": [f"runs=[{folder},{folder}]", f"output_dir={tmp_path / 'cmp'}",
                           "bootstrap.n_resamples=20"],
        "ecgexp-export": [f"run={folder}", f"output_dir={tmp_path / 'export'}"],
    }
    for command, args in commands.items():
        refused = run_in_process(command, tmp_path, *args, env=env)
        assert refused.returncode == 2, (command, refused.stderr[-2000:])
        assert re.search(r"names 'mylab\.(nets\.TinyCNN' at model|tasks\.PotassiumBands' at "
                         r"task\.objective), which ecgexp refuses to instantiate \(it is not in "
                         r"ecgexp's registry\)", refused.stderr), refused.stderr
        assert "allow_modules=[mylab]" in refused.stderr
        allowed = run_in_process(command, tmp_path, *args, allow, env=env)
        assert allowed.returncode == 0, (command, allowed.stderr[-3000:])
    import pandas as pd

    assert pd.read_csv(tmp_path / "p.csv").exam_id.tolist() == [1, 2, 3]
    assert {p.name for p in (tmp_path / "export").iterdir()} == {"model.onnx", "model.onnx.json"}
    with pytest.raises(UserError, match="allow_modules=\\[mylab\\]"):
        load_model(folder)
    model = load_model(folder, allow_modules=["mylab"])
    assert type(model.net).__module__ == "mylab.nets"
    heatmap = compose_config("heatmap", f"run={folder}", "method=saliency",
                             "figures.max_exams=0", allow)
    summary = extract_heatmaps(heatmap)
    assert summary["exams"] > 0
    # The task kind of one's own: its report section, from the run's test predictions.
    test = pd.read_csv(folder / "predictions_test.csv")
    error = (test.predicted_potassium - test.target_potassium).abs()
    bands = pd.read_csv(tmp_path / "report" / "potassium_bands.csv").set_index("band")
    for band, inside in {"below_3.5": test.target_potassium < 3.5,
                         "3.5_to_5.5": test.target_potassium.between(3.5, 5.5, "left"),
                         "from_5.5": test.target_potassium >= 5.5}.items():
        if inside.any():
            assert bands.loc[band, "count"] == inside.sum()
            assert bands.loc[band, "mae"] == pytest.approx(error[inside].mean(), rel=1e-9)
    assert bands["count"].sum() == len(test)
    assert {"predicted_potassium"} <= set(pd.read_csv(tmp_path / "p.csv").columns)
    compared = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert set(compared.metric) >= {"mae", "rmse"} and (compared.difference == 0).all()


def test_the_refusal_of_an_unknown_ecgexp_class_suggests_no_allowance_that_is_refused():
    """ecgexp itself can never be allowed, so the line about a class of ecgexp that is not in
    the registry does not suggest allow_modules=[ecgexp]; another package's line names it."""
    tree = {"callbacks": {"bar": {"_target_": "ecgexp.progress.Gone"}}}
    with pytest.raises(UserError, match=r"allowed on the command line "
                                        r"\(allow_modules=\[<your package>\]\)"):
        check_tree(tree, "'config.yaml'", "run")
    tree = {"model": {"_target_": "mylab.nets.Net"}}
    with pytest.raises(UserError, match=r"\(allow_modules=\[mylab\]\)"):
        check_tree(tree, "'config.yaml'", "run")
