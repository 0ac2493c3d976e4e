"""Which stage type fingerprints the library's tracks: one found through the registry by name,
that declares a ``Fingerprinter`` (the host never imports a fingerprint plugin)."""

from __future__ import annotations

from ..errors import LegatoError
from ..registry import Registry, installed
from ..stage import Fingerprinter, StageType

PREFERRED = "fingerprint25d"
"""The stage type the library uses when it is installed; otherwise the first other (by name)
that declares a ``Fingerprinter``."""


def find_fingerprinter(registry: Registry, name: str | None = None) -> StageType:
    """The stage type that fingerprints tracks: ``name``, or by default ``PREFERRED``, else any
    installed one declaring a ``Fingerprinter``. LegatoError saying what is missing (and why a
    plugin that would provide it failed to load) otherwise."""
    if name is not None:
        stage_type = registry.stages.get(name)
        if stage_type is None:
            raise LegatoError(f"fingerprint stage {name!r} is not installed{_broken(registry)}")
        if stage_type.fingerprinter is None:
            raise LegatoError(f"stage type {name!r} does not fingerprint tracks")
        return stage_type
    offered = sorted(n for n, s in registry.stages.items() if s.fingerprinter is not None)
    if not offered:
        raise LegatoError(f"no installed stage type fingerprints tracks{_broken(registry)}")
    return registry.stages[PREFERRED if PREFERRED in offered else offered[0]]


def _broken(registry: Registry) -> str:
    errors = [p.error for p in registry.plugins if p.error]
    return f" (plugins that failed to load: {'; '.join(errors)})" if errors else ""


def default_spec() -> Fingerprinter:
    """The installed default fingerprinter's declaration; LegatoError when there is none."""
    spec = find_fingerprinter(installed()).fingerprinter
    assert spec is not None
    return spec
