"""The fingerprint25d stage (being written)."""

LEGATO_API_VERSION = 1
