"""Per-process caches of what Hydra does again at every compose and ``--help`` for the config
trees no test edits: installed once by ``tests/conftest.py`` (``install()``)."""

import copy
import os
from pathlib import Path

from hydra.core.object_type import ObjectType

from helpers.configs import CONF_DIR


def _no_test_edits(path: str | Path) -> bool:
    """Whether a config search path (or a file in it) is one no test edits: ecgexp's own tree
    (``CONF_DIR``) or an installed package's (``pkg://``, ``structured://``)."""
    path = str(path)
    return (path.startswith(("pkg://", "structured://"))
            or Path(path.removeprefix("file://")).is_relative_to(CONF_DIR))


def _cached_package_configs() -> None:
    """Hydra parses every YAML file of a config tree again at each compose (about 28 files
    of ecgexp's tree and 5 of Hydra's own for ``train.yaml``: a third of its 0.2 s), and the
    suite composes about 600 times. The files of ecgexp's tree (``CONF_DIR``) and of installed
    packages (``pkg://``), which no test edits, are parsed once per process here and each
    compose gets a copy (keyed by path, size and mtime); any other file is read by Hydra as
    usual."""
    from hydra._internal.sources_registry import SourcesRegistry
    from hydra.core.plugins import Plugins
    from hydra.plugins.config_source import ConfigResult

    def package_file(source, config_path: str):
        path = Path(os.path.realpath(os.path.join(source.path,
                                                  source._normalize_file_name(config_path))))
        if _no_test_edits(path) and path.is_file():
            return path, path.stat().st_size, path.stat().st_mtime_ns
        return None

    def cache(scheme: str, key_of) -> None:
        source = SourcesRegistry.instance().resolve(scheme)
        read, parsed = source.load_config, {}

        def load_config(self, config_path: str) -> ConfigResult:
            key = key_of(self, config_path)
            if key is None:
                return read(self, config_path)
            if key not in parsed:
                parsed[key] = read(self, config_path)
            result = parsed[key]  # never handed out: Hydra edits what it gets
            return ConfigResult(provider=result.provider, path=result.path,
                                config=copy.deepcopy(result.config),
                                header=dict(result.header),
                                is_schema_source=result.is_schema_source)

        source.load_config = load_config

    Plugins.instance()  # its first call loads Hydra's config sources anew: patched after it
    cache("file", package_file)
    cache("pkg", lambda source, config_path: (source.path, config_path))


def _listed_once() -> None:
    """Hydra's ``--help`` lists each config group's options through a new, deep-copied config
    repository per group (about 120 of them: 1 s a help). The listing of ecgexp's own tree and of
    installed packages, which no test edits, is made once per process here (keyed by the search
    path, config, overrides and group); any other search path is listed by Hydra as usual."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    list_options, listed = ConfigLoaderImpl.get_group_options, {}

    def get_group_options(self, group_name, results_filter=ObjectType.CONFIG, config_name=None,
                          overrides=None):
        paths = tuple((entry.provider, entry.path)
                      for entry in self.config_search_path.get_path())
        searched_anew = any("hydra.searchpath" in o for o in overrides or [])
        if searched_anew or not all(_no_test_edits(path) for _, path in paths):
            return list_options(self, group_name, results_filter, config_name, overrides)
        key = (paths, group_name, results_filter, config_name, tuple(overrides or []))
        if key not in listed:
            listed[key] = list_options(self, group_name, results_filter, config_name, overrides)
        return list(listed[key])

    ConfigLoaderImpl.get_group_options = get_group_options


_installed = False


def install() -> None:
    """Both caches, once per process."""
    global _installed
    if not _installed:
        _cached_package_configs()
        _listed_once()
        _installed = True
