"""docker/Dockerfile, checked statically (no Docker engine here: nothing is built or run).

The checks read the Dockerfile line by line and compare it with pyproject.toml, the Makefile,
.dockerignore and the paths config: a CUDA base image, the project installed from pyproject
(so the dependency list cannot drift), copied files that exist and are not ignored, a declared
console script as entry point, the Makefile's torch pin, and volumes the paths config uses.
"""

import json
import re
import shlex
from fnmatch import fnmatch
from pathlib import Path

import pytest
from helpers.configs import CONF_DIR
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")
ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1].strip())
            for line in joined.splitlines() if line.strip()]


def arguments(name: str) -> list[str]:
    return [args for instruction, args in instructions() if instruction == name]


def expanded(text: str) -> str:
    """``text`` with the Dockerfile's ``ARG`` defaults substituted for ``${NAME}``."""
    defaults = dict(arg.split("=", 1) for arg in arguments("ARG"))
    return re.sub(r"\$\{(\w+)\}", lambda match: defaults[match.group(1)], text)


def environment() -> dict[str, str]:
    return dict(pair.split("=", 1) for args in arguments("ENV") for pair in shlex.split(args))


def pip_installs() -> list[list[str]]:
    """The arguments of each ``pip install`` in the RUN instructions, ARGs expanded."""
    return [shlex.split(expanded(command))[2:] for args in arguments("RUN")
            for command in re.split(r"&&|;", args) if command.split()[:2] == ["pip", "install"]]


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY."""
    return [(parts[:-1], parts[-1]) for parts in map(shlex.split, arguments("COPY"))]


def test_base_image_is_cuda():
    (base,) = arguments("FROM")
    assert base.startswith("nvidia/cuda:") or re.match(r"pytorch/pytorch:.*cuda", base)


def test_project_is_installed_from_pyproject_with_existing_extras():
    ((sources, destination),) = [c for c in copies() if "pyproject.toml" in c[0]]
    target = re.compile(rf"{re.escape(destination.rstrip('/'))}/?(\[([\w,-]+)\])?")
    projects = [match for install in pip_installs() for word in install
                if (match := target.fullmatch(word))]
    assert len(projects) == 1
    extras = set(projects[0].group(2).split(",")) if projects[0].group(2) else set()
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"])
    # the build needs the readme that pyproject names, and the package beside pyproject
    assert PYPROJECT["project"]["readme"] in sources
    assert (["ecgexp"], f"{destination.rstrip('/')}/ecgexp") in copies()


def test_dependencies_are_not_listed_in_the_dockerfile():
    names = {re.split(r"[<>=!~\[; ]", dependency)[0].lower()
             for dependency in PYPROJECT["project"]["dependencies"]} - {"torch"}
    installed = {re.split(r"[<>=!~\[]", word)[0].lower()
                 for install in pip_installs() for word in install if not word.startswith("-")}
    assert not names & installed


def test_torch_pin_matches_the_makefile():
    (makefile_pin,) = re.findall(r"torch==([\w.+]+)", (ROOT / "Makefile").read_text())
    pins = [word.split("==")[1] for install in pip_installs() for word in install
            if word.startswith("torch==")]
    assert pins == [makefile_pin]


def test_copied_files_exist_and_are_in_the_build_context():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert {".venv", ".git"} <= set(patterns)

    def ignored(relative: str) -> bool:  # a path is ignored when it or a parent folder matches
        parts = relative.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch(prefix, pattern) or fnmatch(prefix, pattern.removeprefix("**/"))
                   for prefix in prefixes for pattern in patterns)

    for sources, _ in copies():
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: not in the repository"
            files = [path] if path.is_file() else [
                p for p in path.rglob("*") if p.suffix in (".py", ".yaml")]
            assert files
            kept_out = [str(f.relative_to(ROOT)) for f in files
                        if ignored(str(f.relative_to(ROOT)))]
            assert not kept_out, f".dockerignore excludes copied files: {kept_out[:5]}"


def test_entrypoint_is_a_declared_console_script():
    (entrypoint,) = arguments("ENTRYPOINT")
    assert json.loads(entrypoint)[0] in PYPROJECT["project"]["scripts"]


@pytest.fixture
def composed_paths(monkeypatch):
    """The ``paths`` config composed with the Dockerfile's ``ECGEXP_*`` variables set."""
    for name, value in environment().items():
        if name.startswith("ECGEXP_"):
            monkeypatch.setenv(name, value)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train")
    yield cfg.paths
    GlobalHydra.instance().clear()


def test_volumes_are_the_configured_data_and_log_dirs(composed_paths):
    (volumes,) = arguments("VOLUME")
    assert sorted(json.loads(volumes)) == sorted([composed_paths.data_dir,
                                                  composed_paths.log_dir])
    assert composed_paths.data_dir == "/data" and composed_paths.log_dir == "/outputs"


def test_runs_as_a_non_root_user():
    users = arguments("USER")
    assert users and users[-1] not in ("root", "0")
