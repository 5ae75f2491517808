"""fastreg's configuration: Distribution's ``config.yml`` and ``REGISTRY_*`` variables, parsed
once, at load, into typed settings for every feature.

- ``convert``: the one set of value converters (Distribution's Go rules) and ``ConfigError``;
- ``keys``: the table of keys Distribution knows, environment overrides, the type/unknown check;
- ``load``: ``load_config`` / ``parse_config`` and the ``Config`` dataclasses, assembled from each
  feature's own ``parse(section) -> Settings``.

The names of ``load`` are imported on first use (PEP 562): each feature's settings module uses
``fastreg.config.convert``, and ``load`` imports those modules, so importing it here eagerly
would make ``import fastreg.notify.config`` (say) re-enter its own half-run module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastreg.config.convert import ConfigError, parse_duration, parse_size

if TYPE_CHECKING:
    from fastreg.config.load import (
        Config,
        HTTPConfig,
        LogConfig,
        StorageConfig,
        TLSSettings,
        load_config,
        parse_config,
    )

_FROM_LOAD = frozenset(
    {"Config", "HTTPConfig", "LogConfig", "StorageConfig", "TLSSettings", "load_config",
     "parse_config"}
)

__all__ = [
    "Config",
    "ConfigError",
    "HTTPConfig",
    "LogConfig",
    "StorageConfig",
    "TLSSettings",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_LOAD:
        from fastreg.config import load

        return getattr(load, name)
    raise AttributeError(f"module 'fastreg.config' has no attribute {name!r}")
