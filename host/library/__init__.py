"""The track library: tracks named by their path inside one folder, and their fingerprints found
through the cache tiers (database, ``.25d`` sidecar, generation, fallback)."""

from ..config.settings import LibrarySettings  # the [library] table, kept importable here
from .fingerprints import (
    FingerprintCache,
    FingerprintResult,
    generate,
    identify,
    open_fingerprint_cache,
)
from .tracks import Library, TrackRefused, UnknownTrack

__all__ = [
    "FingerprintCache",
    "FingerprintResult",
    "Library",
    "LibrarySettings",
    "TrackRefused",
    "UnknownTrack",
    "generate",
    "identify",
    "open_fingerprint_cache",
]
