"""What the console shows: lines of other libraries that every run would print, removed where
they are emitted, and the config-group listing of the ``--help`` texts.

Applied on import of ``ecgexp`` (``ecgexp/__init__.py``), so for every console script and for
library use alike. Each filter matches one message of one emitter; every other warning and log
line of those libraries still shows:

- Lightning's "💡 Tip: ... litlogger ..." and "💡 Tip: ... litmodels ..." lines: advertisements
  that ``Trainer`` logs at INFO whenever no LitLogger is in use, through the logger of
  ``rank_zero_info`` (``pytorch_lightning.utilities.rank_zero``; lightning_fabric's twin too).
  Only the records of that logger that start with "💡 Tip:" are dropped: its other lines (the
  devices, "`Trainer.fit` stopped", the checkpoint restored for prediction) stay.
- torch's FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated", printed at each fit
  and predict: pytorch_lightning's own ``utilities/_pytree.py`` still builds ``LeafSpec()``,
  which torch deprecates; nothing ecgexp does can avoid it. Ignored only when attributed to
  that Lightning module.

Lightning's model summary ("Total FLOPs: 0": FLOPs are only counted with an example input,
which ecgexp's module has none of) is turned off in ``conf/trainer/default.yaml``
(``trainer.enable_model_summary=true`` brings it back).

The ``help_groups`` resolver lists config groups and their options for the help texts
(``conf/hydra/help/*.yaml``): each command names the groups that apply to it, so that Hydra's
``$APP_CONFIG_GROUPS`` (every group of the shared config folder) is not needed.
"""

from __future__ import annotations

import logging
import re
import shutil
import textwrap
import warnings
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).parent / "conf"

LIGHTNING_TIP = "💡 Tip:"
LIGHTNING_TIP_LOGGERS = ("pytorch_lightning.utilities.rank_zero",
                         "lightning_fabric.utilities.rank_zero")


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(LIGHTNING_TIP)


def install_filters() -> None:
    """Adds the filters described above (once: adding them again changes nothing)."""
    for name in LIGHTNING_TIP_LOGGERS:
        logger = logging.getLogger(name)
        if _not_a_tip not in logger.filters:
            logger.addFilter(_not_a_tip)
    warnings.filterwarnings(
        "ignore", message=re.escape("`isinstance(treespec, LeafSpec)` is deprecated"),
        category=FutureWarning, module=r"pytorch_lightning\.utilities\._pytree")


def help_groups(*groups: str) -> str:
    """``${help_groups:dataset,model}``: a line per group with its options (the YAML files of
    ``conf/<group>/``), the option in use marked ``*`` when Hydra has composed a config."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices
    except ValueError:  # no Hydra config set
        choices = {}
    width = max((len(group) for group in groups), default=0)
    columns = max(shutil.get_terminal_size().columns, 60)
    lines = []
    for group in groups:
        chosen = choices.get(group)
        options = sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
        listed = ", ".join(f"{option}*" if option == chosen else option for option in options)
        lines.append(textwrap.fill(listed, columns, initial_indent=f"  {group:<{width}}  ",
                                   subsequent_indent=" " * (width + 4), break_on_hyphens=False))
    return "\n".join(lines)


install_filters()
if not OmegaConf.has_resolver("help_groups"):
    OmegaConf.register_new_resolver("help_groups", help_groups)
