"""legato: a plugin-based, real-time audio engine host."""

from importlib.metadata import PackageNotFoundError, version

import pluggy

from . import _moved

try:
    __version__ = version("legato")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

#: Version of the interface plugins are written against (hooks and the stage protocol).
HOST_API_VERSION = 1

hookimpl = pluggy.HookimplMarker("legato")

_moved.install()  # old import paths of moved modules keep working

__all__ = ["HOST_API_VERSION", "__version__", "hookimpl"]
