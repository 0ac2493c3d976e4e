"""The sqlite storage backend (being written)."""

LEGATO_API_VERSION = 1
