"""The console commands, one module each (``pyproject.toml`` [project.scripts]): a Hydra entry
point that wires the library and imports no other command. Their start-up rules are
:mod:`ecgexp.startup`; their configs are ``ecgexp/conf/<command>.yaml``."""
