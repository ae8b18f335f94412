"""MkDocs hook (``hooks:`` in mkdocs.yml): the tables of config groups and primary configs,
made from the config tree ``ecgexp/conf`` at every build, so that the documentation lists
exactly the groups and options the package ships.

A page asks for a table with a placeholder line: ``<!-- config-groups -->`` (every group
folder, with each option file in it) or ``<!-- primary-configs -->`` (the ``*.yaml`` files
of ``ecgexp/conf`` itself, one per command, each opening with "Primary config of
`<command>`: "). An option is described by the first sentence of its file's opening comment
(after Hydra's ``# @package`` line, before the indented example lines); a file without one
stops the build with its name. The files are read as text.

The docstrings of the API pages are written for Sphinx: their roles (``:func:`train```,
``:mod:`~ecgexp.metrics.bootstrap```) are shown as the code they name (the last part after
``~``), and a paragraph ending ``::`` before its example ends with one colon.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

GROUPS_PLACEHOLDER = "<!-- config-groups -->"
PRIMARY_PLACEHOLDER = "<!-- primary-configs -->"

# A sentence ends at a full stop followed by the capital, backtick or bracket of the next one
# ("et al. 2023" and "e.g. the" go on), unless the stop follows an initial ("J. Electrocardiol.").
SENTENCE_END = re.compile(r"(?<![\s(][A-Z]\.)(?<=\.)\s+(?=[A-Z`(])")
PRIMARY = re.compile(r"Primary config of `(?P<command>[^`]+)`: (?P<purpose>.*)")
# A Sphinx role as mkdocstrings renders it: :func:<code>~ecgexp.api.train</code>.
SPHINX_ROLE = re.compile(
    r":(?:mod|func|class|meth|attr|data|obj):<code>(?P<short>~?)(?P<name>[^<]*)</code>")


def opening_sentence(path: Path) -> str:
    """The first sentence of the file's opening ``#`` comment, without a closing colon."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# @package"):
            continue
        # A blank comment line or an indented one (an example command) ends the description.
        if not line.startswith("#") or line.startswith("#  ") or not line[1:].strip():
            break
        lines.append(line[1:].strip())
    if not lines:
        raise ValueError(f"{path}: no opening '# ...' comment to describe this config in the "
                         "documentation (docs/hooks.py)")
    return SENTENCE_END.split(" ".join(lines))[0].rstrip(":")


def table_cell(text: str) -> str:
    """``text`` safe in a Markdown table cell: outside code spans, ``|`` and ``*`` are
    escaped and ``<``, ``>``, ``&`` written as entities (``<output stem>`` is no HTML tag)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # the even parts lie outside code spans
        plain = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        parts[i] = plain.replace("|", r"\|").replace("*", r"\*")
    return "`".join(parts)


def config_groups(conf_dir: Path) -> dict[str, list[Path]]:
    """Group name (its folder under ``conf_dir``, ``hydra/launcher`` for a nested one) -> its
    option files, for every folder that holds ``.yaml`` files, sorted by name."""
    groups = {}
    for folder in sorted(path for path in conf_dir.rglob("*") if path.is_dir()):
        options = sorted(folder.glob("*.yaml"))
        if options:
            groups[folder.relative_to(conf_dir).as_posix()] = options
    return groups


def train_defaults(conf_dir: Path) -> dict[str, str | None]:
    """Group -> the option ``train.yaml`` composes by default (None: the group is off)."""
    defaults = yaml.safe_load((conf_dir / "train.yaml").read_text(encoding="utf-8"))["defaults"]
    return {group: option for entry in defaults if isinstance(entry, dict)
            for group, option in entry.items()}


def config_groups_markdown(conf_dir: Path) -> str:
    """A section per config group: its options and what each is, the option ``ecgexp``
    (train.yaml) uses by default marked."""
    defaults = train_defaults(conf_dir)
    sections = []
    for group, options in config_groups(conf_dir).items():
        rows = ["| option | what it is |", "|---|---|"]
        for path in options:
            default = " (default)" if defaults.get(group) == path.stem else ""
            rows.append(f"| `{path.stem}`{default} | {table_cell(opening_sentence(path))} |")
        sections.append(f"### `{group}`\n\n" + "\n".join(rows))
    return "\n\n".join(sections)


def primary_configs_markdown(conf_dir: Path) -> str:
    """A table of the primary configs: the command each belongs to and what it does."""
    rows = ["| config | command | what it does |", "|---|---|---|"]
    for path in sorted(conf_dir.glob("*.yaml")):
        primary = PRIMARY.fullmatch(opening_sentence(path))
        if primary is None:
            raise ValueError(f"{path}: its opening comment must start 'Primary config of "
                             "`<command>`: ' (docs/hooks.py)")
        rows.append(f"| `{path.name}` | `{primary['command']}` | "
                    f"{table_cell(primary['purpose'])} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the placeholders of a page with the tables of the config tree beside
    mkdocs.yml."""
    conf_dir = Path(config.config_file_path).parent / "ecgexp" / "conf"
    if GROUPS_PLACEHOLDER in markdown:
        markdown = markdown.replace(GROUPS_PLACEHOLDER, config_groups_markdown(conf_dir))
    if PRIMARY_PLACEHOLDER in markdown:
        markdown = markdown.replace(PRIMARY_PLACEHOLDER, primary_configs_markdown(conf_dir))
    return markdown


def on_page_content(html: str, page, config, files) -> str:
    """Sphinx roles of the rendered docstrings as plain code, ``::`` as one colon."""
    html = SPHINX_ROLE.sub(lambda role: "<code>" + (role["name"].rsplit(".", 1)[-1]
                                                   if role["short"] else role["name"]) + "</code>",
                           html)
    return html.replace("::</p>", ":</p>")
