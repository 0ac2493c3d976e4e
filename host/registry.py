"""The plugin registry: discovers plugins through the ``legato`` entry-point group, checks the host
API version each declares, and collects the stage types they register.

Each entry point is loaded on its own so a broken plugin is reported by name and the others
still load.
"""

from __future__ import annotations

import importlib.metadata as md
from types import ModuleType
from typing import Any

import attrs
import pluggy

from . import HOST_API_VERSION, hookspecs
from .stage import StageType
from .storage import StorageType

ENTRY_POINT_GROUP = "legato"


class PluginError(Exception):
    """A plugin could not be used (import failure, API mismatch, duplicate registration)."""


@attrs.define
class PluginInfo:
    """One discovered plugin and what it registered (or why it could not be loaded)."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    api_version: int | None = None
    stages: list[str] = attrs.field(factory=list)
    storage: list[str] = attrs.field(factory=list)
    error: str | None = None


@attrs.define
class Registry:
    """The loaded plugins and the stage types and storage backends they provide."""

    plugins: list[PluginInfo] = attrs.field(factory=list)
    stages: dict[str, StageType] = attrs.field(factory=dict)
    stage_owner: dict[str, str] = attrs.field(factory=dict)
    storage: dict[str, StorageType] = attrs.field(factory=dict)
    storage_owner: dict[str, str] = attrs.field(factory=dict)

    def stage_type(self, name: str) -> StageType:
        return self.stages[name]

    def storage_for_scheme(self, scheme: str) -> StorageType | None:
        return next((t for t in self.storage.values() if scheme in t.schemes), None)

    def describe(self) -> list[dict[str, Any]]:
        """JSON-ready description of every plugin, as printed by `legato plugins`."""
        out = []
        for info in self.plugins:
            entry = attrs.asdict(info)
            entry["stages"] = [self.stages[s].describe() for s in info.stages]
            entry["storage"] = [self.storage[s].describe() for s in info.storage]
            out.append(entry)
        return out


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def _api_version_error(name: str, module: ModuleType) -> tuple[int | None, str | None]:
    declared = getattr(module, "LEGATO_API_VERSION", None)
    if declared is None:
        return None, (
            f"plugin {name!r} does not declare LEGATO_API_VERSION; "
            f"this legato provides host API {HOST_API_VERSION}"
        )
    if declared != HOST_API_VERSION:
        return declared, (
            f"plugin {name!r} targets legato host API {declared}, "
            f"but this legato provides host API {HOST_API_VERSION}"
        )
    return declared, None


def _collect(registry: Registry, info: PluginInfo, module: ModuleType) -> None:
    """Run one plugin's hooks into staging lists, check every name, then commit atomically."""
    pm = new_plugin_manager()
    pm.register(module, name=info.name)
    stages: list[StageType] = []
    backends: list[StorageType] = []
    pm.hook.register_stages(register=stages.append)
    pm.hook.register_storage(register=backends.append)
    _check_names(info, stages, StageType, "stage type", registry.stages, registry.stage_owner)
    _check_names(info, backends, StorageType, "storage", registry.storage, registry.storage_owner)
    schemes = {
        s: registry.storage_owner[t.name] for t in registry.storage.values() for s in t.schemes
    }
    for backend in backends:
        for scheme in backend.schemes:
            if scheme in schemes:
                raise PluginError(
                    f"URL scheme {scheme!r} is claimed by both plugin {schemes[scheme]!r} "
                    f"and plugin {info.name!r}"
                )
            schemes[scheme] = info.name
    for stage_type in stages:
        registry.stages[stage_type.name] = stage_type
        registry.stage_owner[stage_type.name] = info.name
        info.stages.append(stage_type.name)
    for backend in backends:
        registry.storage[backend.name] = backend
        registry.storage_owner[backend.name] = info.name
        info.storage.append(backend.name)


def _check_names(
    info: PluginInfo,
    offered: list[Any],
    cls: type,
    what: str,
    taken: dict[str, Any],
    owner: dict[str, str],
) -> None:
    seen: set[str] = set()
    for item in offered:
        if not isinstance(item, cls):
            raise PluginError(f"plugin {info.name!r} registered {item!r}, not a {cls.__name__}")
        if item.name in taken or item.name in seen:
            first = owner.get(item.name, info.name)
            raise PluginError(
                f"{what} {item.name!r} is registered by both plugin {first!r} "
                f"and plugin {info.name!r}"
            )
        seen.add(item.name)


def add_plugin(registry: Registry, name: str, module: ModuleType, dist: Any = None) -> PluginInfo:
    """Check and register one plugin module; failures are recorded on the returned info."""
    info = PluginInfo(
        name=name,
        module=module.__name__,
        distribution=dist.metadata["Name"] if dist is not None else None,
        version=dist.version if dist is not None else None,
    )
    registry.plugins.append(info)
    info.api_version, info.error = _api_version_error(name, module)
    if info.error is None:
        try:
            _collect(registry, info, module)
        except PluginError as exc:
            info.error = str(exc)
        except Exception as exc:  # a plugin's own bug must not stop the others
            info.error = f"plugin {name!r} failed in a hook: {type(exc).__name__}: {exc}"
    return info


def load_registry(extra_modules: dict[str, ModuleType] | None = None) -> Registry:
    """Discover every installed plugin (plus ``extra_modules``, for tests) into a Registry."""
    registry = Registry()
    entry_points = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    for ep in entry_points:
        try:
            module = ep.load()
        except Exception as exc:
            registry.plugins.append(
                PluginInfo(
                    name=ep.name,
                    module=ep.value,
                    distribution=ep.dist.metadata["Name"] if ep.dist else None,
                    version=ep.dist.version if ep.dist else None,
                    error=f"plugin {ep.name!r} failed to import: {type(exc).__name__}: {exc}",
                )
            )
            continue
        add_plugin(registry, ep.name, module, ep.dist)
    for name, module in (extra_modules or {}).items():
        add_plugin(registry, name, module)
    return registry


_installed: Registry | None = None


def installed() -> Registry:
    """The registry of installed plugins, loaded once per process (for code that has no
    registry handed to it, such as worker processes and the plugin test helpers)."""
    global _installed
    if _installed is None:
        _installed = load_registry()
    return _installed
