"""A plugin written for a newer host API than this legato provides."""

from legato import hookimpl

LEGATO_API_VERSION = 2


@hookimpl
def register_stages(register):
    raise AssertionError("a plugin for another host API must not be called")
