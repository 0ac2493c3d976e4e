"""Hook specifications: the functions a plugin may implement with ``@legato.hookimpl``.

Every hook here is documented in docs/plugins.md (a test checks that it is).
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from .stage import StageType
from .storage import StorageType

hookspec = pluggy.HookspecMarker("legato")


@hookspec
def register_stages(register: Callable[[StageType], None]) -> None:
    """Register stage types by calling ``register(StageType(...))`` once per type.

    Names must be unique across all installed plugins; a second registration of the same name
    is an error that names both plugins.
    """


@hookspec
def register_storage(register: Callable[[StorageType], None]) -> None:
    """Register storage backends by calling ``register(StorageType(...))`` once per backend.

    Backend names and URL schemes must be unique across all installed plugins; a clash is an
    error that names both plugins.
    """
