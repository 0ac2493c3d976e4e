"""Pytest fixtures for plugin authors (loaded automatically once legato is installed):

- ``legato_registry``: the installed plugins, as the host sees them;
- ``legato_run``: run a stage type over audio in any block split (``legato.testing.run_blocks``);
- ``legato_server``: a real `legato serve` on an ephemeral port for a trio test, with
  ``legato_server.url``; pass a config with ``@pytest.mark.legato_config(text)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest

from . import testing
from .registry import Registry


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "legato_config(text): TOML config for the legato_server fixture"
    )


@pytest.fixture
def legato_registry() -> Registry:
    return testing.registry()


@pytest.fixture
def legato_run() -> Callable[..., list[dict[str, Any]]]:
    return testing.run_blocks


@attrs.frozen
class ServerHandle:
    """A running server and the URL clients connect to."""

    server: Any
    url: str


@pytest.fixture
async def legato_server(request: pytest.FixtureRequest) -> AsyncIterator[ServerHandle]:
    from .config.pipelines import parse_config

    marker = request.node.get_closest_marker("legato_config")
    config = (
        parse_config(marker.args[0], "<legato_config marker>", testing.registry())
        if marker
        else None
    )
    async with testing.running_server(config) as server:
        yield ServerHandle(server, testing.server_url(server))
