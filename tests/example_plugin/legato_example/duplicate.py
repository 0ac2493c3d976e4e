"""A plugin that registers a stage type name another plugin already registered."""

from legato import hookimpl

from . import ZERO_CROSSINGS

LEGATO_API_VERSION = 1


@hookimpl
def register_stages(register):
    register(ZERO_CROSSINGS)
