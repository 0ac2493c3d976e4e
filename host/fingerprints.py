"""``legato.fingerprints`` as documented before the cache moved to ``legato.library``."""

from .library.fingerprints import (
    FingerprintCache,
    FingerprintResult,
    open_fingerprint_cache,
)

__all__ = ["FingerprintCache", "FingerprintResult", "open_fingerprint_cache"]
