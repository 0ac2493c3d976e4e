"""Shared fixtures: the example third-party plugin, installed for real into a temporary folder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from legato.registry import Registry, load_registry

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install` the example plugin package into its own site folder (no network needed)."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(TESTS / "example_plugin"),
        ],
        check=True,
        cwd=build,
    )
    return target


@pytest.fixture
def example_registry(
    example_plugin_site: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Registry]:
    """A registry that sees the installed example plugin next to the built-in ones."""
    monkeypatch.syspath_prepend(str(example_plugin_site))
    yield load_registry()
    for name in [m for m in sys.modules if m.startswith("legato_example")]:
        del sys.modules[name]
