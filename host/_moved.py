"""Old import paths of the modules that moved into the layers' folders (``legato.graph`` is now
``legato.engine.graph``, ...): importing an old path gives the module itself, so code written
against it keeps working; new code imports the new paths (docs/architecture.md)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

MOVED: dict[str, str] = {
    "legato.audio": "legato.engine.files",
    "legato.graph": "legato.engine.graph",
    "legato.runner": "legato.engine.runner",
    "legato.params": "legato.config.params",
    "legato.settings": "legato.config.settings",
    "legato.tomlpos": "legato.config.tomlpos",
    "legato.recorder": "legato.records.recorder",
    "legato.spool": "legato.records.spool",
    "legato.practice": "legato.records.practice",
    "legato.fingerprints": "legato.library.fingerprints",
    "legato.sidecar": "legato.library.sidecar",
    "legato.session": "legato.server.session",
    "legato.playback": "legato.server.playback",
    "legato.page": "legato.server.page",
    "legato.player": "legato.client.player",
    "legato.dbcli": "legato.cli.db",
    "legato.fingerprint_cmd": "legato.cli.fingerprint",
    "legato.master_cmd": "legato.cli.master",
    "legato.play_cmd": "legato.cli.play",
    "legato.reference": "legato.cli.reference",
    "legato.groups": "legato.errors",
}
"""Old module path -> where it lives now."""


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old path with the module at its new one (the same module object)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The module was executed under its new name already."""


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
