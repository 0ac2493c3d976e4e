"""A plugin whose import fails, as a buggy release would."""

import legato_example_missing_dependency  # noqa: F401
