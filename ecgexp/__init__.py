"""ecgexp: config-driven deep learning on the 12-lead ECG."""

from ecgexp import config as _config  # noqa: F401  (registers the OmegaConf resolvers)
from ecgexp import console as _console  # noqa: F401  (console filters, the help resolver)

__version__ = "0.1.0"
