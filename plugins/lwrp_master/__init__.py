"""The lwrp_master stage (being written)."""

LEGATO_API_VERSION = 1
