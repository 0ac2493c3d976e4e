"""Making one stage outside a pipeline (a meter in `legato master`, the library's fingerprinter,
the plugin test helpers): params validated exactly as a pipeline config's are."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config.params import build_params, with_values
from ..errors import LegatoError
from ..registry import Registry
from ..stage import Stage, StageType, StreamFormat


def stage_type_named(registry: Registry, name: str) -> StageType:
    """The installed stage type ``name``; LegatoError naming it when it is not installed."""
    try:
        return registry.stage_type(name)
    except KeyError:
        raise LegatoError(f"stage type {name!r} is not installed") from None


def make_stage(
    stage_type: StageType,
    fmt: StreamFormat,
    params: Mapping[str, Any] | None = None,
    measurements: Mapping[str, float] | None = None,
) -> Stage:
    """A stage instance for a stream of ``fmt``: ``params`` validated as a config's would be
    (ParamsInvalid), then the ``measurements`` of a track that its params take and accept, as
    a playback pipeline fills them."""
    built = build_params(stage_type, params or {})
    if measurements:
        built = with_values(stage_type, built, measurements)
    return stage_type.create(built, fmt)
