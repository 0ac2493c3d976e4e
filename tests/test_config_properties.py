"""The config loader never crashes: any text gives either a Config or a ConfigError."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legato.config.pipelines import Config, ConfigError, parse_config
from legato.config.tomlpos import key_lines, split_key
from legato.registry import Registry, load_registry

REGISTRY: Registry = load_registry()

names = st.sampled_from(
    ["audio", "pitch", "onsets", "type", "inputs", "hop", "window", "fmin", "x y", "é", ""]
) | st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8)
scalars = (
    st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.sampled_from(["pitch_yin", "onsets_flux", "dynamics", "audio", "gain"])
    | st.text(max_size=10)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)


def toml_key(key: str) -> str:
    """A TOML basic string: control characters must be escaped, everything else may be raw."""
    body = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else "\\" + c if c in '"\\' else c
        for c in key
    )
    return f'"{body}"'


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_key(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


stage_tables = st.dictionaries(
    st.sampled_from(["type", "inputs", "hop", "window", "fmin", "fmax", "threshold"]) | names,
    values,
    max_size=5,
)
documents = st.dictionaries(names, st.dictionaries(names, stage_tables, max_size=3), max_size=3)


def render(doc: dict[str, dict[str, dict[str, object]]]) -> str:
    lines = []
    for pipeline, stages in doc.items():
        lines.append(f"[pipelines.{toml_key(pipeline)}]")
        for stage_id, table in stages.items():
            lines.append(f"[pipelines.{toml_key(pipeline)}.stages.{toml_key(stage_id)}]")
            lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def load(text: str) -> Config | ConfigError:
    try:
        return parse_config(text, "p.toml", REGISTRY)
    except ConfigError as exc:
        assert exc.issues and all(issue.message for issue in exc.issues)
        return exc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    load(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_arbitrary_pipelines_never_crash(doc: dict) -> None:
    result = load(render(doc))
    if isinstance(result, ConfigError):
        for issue in result.issues:
            assert issue.line is None or issue.line >= 1


@given(st.lists(names, min_size=1, max_size=4))
def test_split_key_round_trips_quoted_keys(parts: list[str]) -> None:
    text = ".".join(toml_key(p) for p in parts)
    assert split_key(text) == tuple(parts)
    assert key_lines(f"[{text}]\n")[tuple(parts)] == 1


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        ('a = 1\n[t]\nb = [\n  "x = 1",\n]\nc = 2\n', ("t", "c"), 6),
        ("[t]\nx.y = 1\n", ("t", "x", "y"), 2),
        ("[[t.list]]\nk = 'v # not a comment'\n", ("t", "list", "k"), 2),
    ],
)
def test_key_lines(text: str, path: tuple[str, ...], line: int) -> None:
    assert key_lines(text)[path] == line
