"""The connector registry: a name (``opcua``, ``modbus``, ``s7`` ...) maps to a plugin.

Built-in connectors are named here by import path and imported only when a config uses them,
so a Modbus-only gateway never imports asyncua. Third parties register theirs either with
`ConnectorRegistry.register` or through the ``qiantang.edge.connectors`` entry-point group
(the entry point's object is a `ConnectorPlugin`). Duplicate names are refused.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Final

from qiantang.edge.errors import EdgeError

if TYPE_CHECKING:
    from qiantang.edge.config import DeviceConfig
    from qiantang.edge.model import Connector

__all__ = ["ENTRY_POINT_GROUP", "ConnectorPlugin", "ConnectorRegistry", "registry"]

ENTRY_POINT_GROUP: Final = "qiantang.edge.connectors"
_BUILTIN: Final = {
    "opcua": "qiantang.edge.opcua:PLUGIN",
    "modbus": "qiantang.edge.modbus:PLUGIN",
}


@dataclass(frozen=True, slots=True)
class ConnectorPlugin:
    """A connector kind: the pydantic model of one device block (a `DeviceConfig` subclass
    whose ``connector`` and ``points`` are typed for this protocol) and a factory."""

    device_model: type[DeviceConfig]
    create: Callable[[DeviceConfig], Connector]


class ConnectorRegistry:
    """Connector kinds by name."""

    def __init__(self) -> None:
        self._plugins: dict[str, ConnectorPlugin] = {}
        self._entry_points_loaded = False

    def register(self, name: str, plugin: ConnectorPlugin) -> None:
        """Add a connector kind; a name already taken (built-ins included) is refused."""
        if name in self._plugins or name in _BUILTIN:
            raise EdgeError(f"connector type {name!r} is already registered")
        self._plugins[name] = plugin

    def unregister(self, name: str) -> None:
        """Remove a kind added with `register` (tests, reloads)."""
        self._plugins.pop(name, None)

    def names(self) -> list[str]:
        """Every known kind, entry points included."""
        self._load_entry_points()
        return sorted({*self._plugins, *_BUILTIN})

    def get(self, name: str) -> ConnectorPlugin:
        """The plugin for `name`; `EdgeError` when unknown or when its module fails to load."""
        if name in _BUILTIN:
            return _import(_BUILTIN[name])
        self._load_entry_points()
        plugin = self._plugins.get(name)
        if plugin is None:
            raise EdgeError(f"unknown connector type {name!r}; known: {', '.join(self.names())}")
        return plugin

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._plugins or ep.name in _BUILTIN:
                continue  # explicit registrations and built-ins win
            plugin = ep.load()
            if isinstance(plugin, ConnectorPlugin):
                self._plugins[ep.name] = plugin


def _import(path: str) -> ConnectorPlugin:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise EdgeError(
            f"{module_name} needs a library that is not installed ({err.name}): "
            "pip install 'qiantang[edge]'"
        ) from err
    plugin = getattr(module, attr)
    assert isinstance(plugin, ConnectorPlugin)
    return plugin


registry: Final = ConnectorRegistry()
"""The process-wide registry the gateway and the CLI use."""
