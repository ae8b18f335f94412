"""Helpers shared by the test files (importable as ``helpers``: ``pythonpath = ["tests"]`` in
pyproject.toml). Fixtures and pytest hooks stay in ``tests/conftest.py``; what a test imports
by name lives here, by theme:

- :mod:`helpers.configs`: the config tree (``CONF_DIR``, ``TASKS``), composing it
  (``compose_in``, ``compose_config``, ``compose_evaluate``) and the overrides of short runs
  (``SHORT_RUN``, ``TINY_RUN``, ``QUARTER_LENGTHS``, ``EXTERNAL``);
- :mod:`helpers.commands`: console scripts in a new process (``run``) or in this one
  (``run_in_process``, ``call_entry_point``, ``entry_point``);
- :mod:`helpers.records`: the real records of ``tests/data`` (``FIXTURES``, ``REFERENCE``,
  ``code15_exams``, ``header_fields``), damaged copies (``damaged``) and synthetic exams read
  with h5py (``synthetic_tracings``);
- :mod:`helpers.models`: every ``model=`` at a tiny size (``NARROW``, ``model_names``);
- :mod:`helpers.ptbxl`: a PTB-XL folder of real and noise records (``write_ptbxl``);
- :mod:`helpers.runs`: what is built once per session for every worker (``built_once``) and
  the run folders a command wrote (``run_folders``);
- :mod:`helpers.learning`: the training set-up the learning checks share (tests/e2e);
- :mod:`helpers.source`: the modules a source file imports, read with ``ast``
  (``imported_modules``);
- :mod:`helpers.wandb_log`: the records of an offline W&B run, read without wandb's reader;
- :mod:`helpers.hydra_cache`: the per-process caches of Hydra's config parsing and option
  listing, installed by ``tests/conftest.py``.
"""
