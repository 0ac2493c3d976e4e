"""Structuring and validating a stage's params from config values: strict scalar types, declared
ranges and choices, unknown names with a suggestion, then the stage type's own cross-field check."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from ..stage import StageType

_converter = cattrs.Converter(forbid_extra_keys=True)


@attrs.frozen
class ParamError:
    """One problem with one param: ``key`` is the param name (or "" for the whole table)."""

    key: str
    message: str


class ParamsInvalid(ValueError):
    def __init__(self, errors: list[ParamError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.key}: {e.message}" if e.key else e.message for e in errors))


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _type_error(expected: Any, value: Any) -> str | None:
    """Strict TOML-ish type check for scalar params (no silent 2048.5 -> 2048, no bool as int)."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = [t for t in typing.get_args(expected) if t is not type(None)]
        if value is None and len(options) < len(typing.get_args(expected)):
            return None
        problems = [_type_error(t, value) for t in options]
        return None if any(p is None for p in problems) else problems[0]
    if origin is tuple:  # tuple[str, ...]: a TOML array of strings
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"must be an array of strings, got {type(value).__name__} {value!r}"
        return None
    if origin is typing.Literal:
        options = typing.get_args(expected)
        if value not in options:
            return f"must be one of {', '.join(repr(o) for o in options)}, got {value!r}"
        return None
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected in (bool, str):
        ok = isinstance(value, expected)
    else:
        return None
    if not ok:
        return f"must be {_TYPE_NAMES[expected]}, got {type(value).__name__} {value!r}"
    return None


def _wants_float(expected: Any, value: Any) -> bool:
    """An integer given where a (possibly optional) float is declared becomes a float."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return expected is float or float in typing.get_args(expected)


def _range_error(meta: Mapping[str, Any], value: Any) -> str | None:
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    low, high, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return f"must be a finite number, got {value!r}"
    if low is not None and value < low:
        return f"must be at least {low}{unit}, got {value}"
    if high is not None and value > high:
        return f"must be at most {high}{unit}, got {value}"
    return None


def structure(cls: type, raw: Mapping[str, Any], owner: str) -> Any:
    """Turn config values into an instance of an attrs class declared with ``param`` fields, or
    raise ParamsInvalid listing every problem; ``owner`` names the table in messages."""
    cls = attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    errors: list[ParamError] = []
    for key, value in raw.items():
        field = fields.get(key)
        if field is None:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(fields) or "none"
            errors.append(ParamError(key, f"unknown param for {owner}{hint} (params: {known})"))
            continue
        problem = _type_error(field.type, value) or _range_error(
            field.metadata.get("legato", {}), value
        )
        if problem:
            errors.append(ParamError(key, problem))
    if errors:
        raise ParamsInvalid(errors)
    values = {k: (float(v) if _wants_float(fields[k].type, v) else v) for k, v in raw.items()}
    try:
        return _converter.structure(values, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        raise ParamsInvalid([ParamError("", f"invalid params: {exc}")]) from exc


def build_params(stage_type: StageType, raw: Mapping[str, Any]) -> Any:
    """A stage type's params instance from config values, including its cross-field check."""
    params = structure(stage_type.params, raw, f"stage type {stage_type.name!r}")
    if stage_type.check is not None:
        problems = [ParamError(k, m) for k, m in stage_type.check(params)]
        if problems:
            raise ParamsInvalid(problems)
    return params


def with_values(stage_type: StageType, params: Any, values: Mapping[str, Any]) -> Any:
    """``params`` with those of ``values`` that the stage type declares, that ``params`` leaves
    unset (None) and that the stage accepts (type, range, its own check) filled in. A value the
    stage refuses is left out: measurements of a track can be offered to any stage's params
    without being able to make them invalid."""
    current = attrs.asdict(params, recurse=False)
    offered = {k: v for k, v in values.items() if k in current and current[k] is None}
    while offered:
        try:
            return build_params(stage_type, {**current, **offered})
        except ParamsInvalid as exc:
            refused = {e.key for e in exc.errors} & offered.keys()
            if not refused:
                return params
            offered = {k: v for k, v in offered.items() if k not in refused}
    return params
