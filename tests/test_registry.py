"""Plugin discovery through entry points, host API checks, duplicate names, broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from legato import HOST_API_VERSION
from legato.registry import Registry, load_registry

BUILT_INS = {"pitch_yin", "onsets_flux", "dynamics"}


def by_name(registry: Registry) -> dict:
    return {p.name: p for p in registry.plugins}


def test_built_in_stages_register_through_entry_points() -> None:
    registry = load_registry()
    plugins = by_name(registry)
    for name in BUILT_INS:
        assert plugins[name].error is None, plugins[name].error
        assert plugins[name].distribution == "legato"
        assert plugins[name].api_version == HOST_API_VERSION
        assert name in registry.stages


def test_third_party_plugin_is_discovered(example_registry: Registry) -> None:
    plugins = by_name(example_registry)
    owner = plugins[example_registry.stage_owner["zero_crossings"]]
    assert owner.error is None
    assert owner.distribution == "legato-example-plugin"
    assert owner.version == "1.2.3"
    assert owner.stages == ["zero_crossings"]


def test_broken_plugin_is_reported_by_name_and_others_load(example_registry: Registry) -> None:
    plugins = by_name(example_registry)
    assert "broken" in plugins["broken"].error
    assert "legato_example_missing_dependency" in plugins["broken"].error
    assert set(example_registry.stages) >= BUILT_INS


def test_host_api_mismatch_is_explained(example_registry: Registry) -> None:
    error = by_name(example_registry)["future_api"].error
    assert error == (
        f"plugin 'future_api' targets legato host API 2, "
        f"but this legato provides host API {HOST_API_VERSION}"
    )


def test_duplicate_stage_name_names_both_plugins(example_registry: Registry) -> None:
    plugins = by_name(example_registry)
    owner = example_registry.stage_owner["zero_crossings"]
    loser = ({"duplicate", "zero_crossings"} - {owner}).pop()
    assert plugins[loser].error == (
        f"stage type 'zero_crossings' is registered by both plugin {owner!r} and plugin {loser!r}"
    )
    assert plugins[loser].stages == []


def test_plugins_command_prints_json(example_plugin_site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(example_plugin_site)}
    done = subprocess.run(
        [sys.executable, "-m", "legato.cli", "plugins"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    listed = {p["name"]: p for p in json.loads(done.stdout)}
    example = [p for p in listed.values() if p["distribution"] == "legato-example-plugin"]
    assert {p["version"] for p in example} == {"1.2.3"}
    (stage,) = [s for p in example for s in p["stages"]]
    assert stage["type"] == "zero_crossings"
    assert stage["params"][0]["name"] == "hop" and stage["params"][0]["unit"] == "samples"
    assert listed["broken"]["error"]
    for name in BUILT_INS:
        assert [s["type"] for s in listed[name]["stages"]] == [name]


def test_example_plugin_passes_its_own_tests_with_legato_fixtures(
    example_plugin_site: Path,
) -> None:
    """The author's view: the example package's test suite runs on the fixtures legato ships."""
    env = {**os.environ, "PYTHONPATH": str(example_plugin_site)}
    tests = Path(__file__).parent / "example_plugin" / "tests"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tests,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
