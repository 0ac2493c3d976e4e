"""Configuration: a TOML file of pipelines and settings tables, validated at load time with every
problem pointing at its key and line. Knows stage types (through the registry) and storage URLs,
nothing of sessions or sockets."""

from .params import ParamError, ParamsInvalid, build_params, structure, with_values
from .pipelines import (
    PIPELINE_KEYS,
    SOURCE,
    STAGE_KEYS,
    TOP_LEVEL_KEYS,
    Config,
    ConfigError,
    ConfigIssue,
    Pipeline,
    StageConfig,
    StorageConfig,
    load_config,
    parse_config,
)
from .settings import LibrarySettings, ServerSettings

__all__ = [
    "PIPELINE_KEYS",
    "SOURCE",
    "STAGE_KEYS",
    "TOP_LEVEL_KEYS",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "LibrarySettings",
    "ParamError",
    "ParamsInvalid",
    "Pipeline",
    "ServerSettings",
    "StageConfig",
    "StorageConfig",
    "build_params",
    "load_config",
    "parse_config",
    "structure",
    "with_values",
]
