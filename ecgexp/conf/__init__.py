"""The config tree of ecgexp (a package, so that Hydra finds it with
``initialize_config_module("ecgexp.conf")``)."""
