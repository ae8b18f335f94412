"""OmegaConf resolvers used by the config tree (registered on import of ``ecgexp``)."""

from omegaconf import OmegaConf

if not OmegaConf.has_resolver("len"):
    OmegaConf.register_new_resolver("len", lambda sequence: len(sequence))
