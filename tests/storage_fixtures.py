"""Fixtures that run one storage test suite against every built-in backend.

``backend`` (module scope) is parametrized over ``sqlite`` (a file in a temporary folder) and
``postgres`` (a database ``legato_test_<hex>`` created through the ``postgres`` database at
127.0.0.1:5432 and dropped after the module). The Postgres half is skipped, loudly, only when
no server can be reached or the postgres plugin registers no backend. Import the fixtures
into a test module (``from storage_fixtures import backend, storage, ...``) to use them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from legato.registry import Registry, load_registry
from legato.storage import Storage, open_storage

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN_USER = "postgres"
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@attrs.frozen
class Backend:
    """One backend under test: its shared database and a way to get empty ones."""

    name: str
    registry: Registry
    url: str
    fresh_url: Callable[[], str]
    """A new, empty database of this backend (dropped when the module ends)."""

    def open(self, url: str | None = None, **params: Any) -> Storage:
        """A not yet connected Storage (``params`` override the backend's defaults)."""
        backend = self.registry.storage[self.name]
        return open_storage(url or self.url, self.registry, backend.params(**params))


def _pg_admin(*statements: str) -> None:
    """Run statements on the ``postgres`` database (outside any trio run)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_ADMIN_USER, database="postgres", timeout=3
        )
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _sqlite_databases(folder: Path) -> Callable[[], str]:
    def fresh() -> str:
        return f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}"

    return fresh


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    registry = load_registry()
    if request.param not in registry.storage:
        pytest.skip(f"the {request.param} storage plugin registers no backend yet")
    if request.param == "sqlite":
        fresh = _sqlite_databases(tmp_path_factory.mktemp("sqlite"))
        yield Backend("sqlite", registry, fresh(), fresh)
        return
    with postgres_databases() as fresh:
        yield Backend("postgres", registry, fresh(), fresh)


@contextmanager
def postgres_databases() -> Iterator[Callable[[], str]]:
    """Makes new databases on the local Postgres server (skipping the test, loudly, when there
    is none) and drops them all afterwards."""
    try:
        _pg_admin("SELECT 1")
    except Exception as exc:
        pytest.skip(
            f"Postgres not reachable at {PG_HOST}:{PG_PORT}: {type(exc).__name__}: {exc};"
            f" start it with {PG_START}"
        )
    created: list[str] = []

    def fresh() -> str:
        name = f"legato_test_{uuid.uuid4().hex[:12]}"
        _pg_admin(f"CREATE DATABASE {name}")
        created.append(name)
        return f"postgresql://{PG_ADMIN_USER}@{PG_HOST}:{PG_PORT}/{name}"

    try:
        yield fresh
    finally:
        _pg_admin(*(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" for name in created))


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A new database on the local Postgres server, for the tests of a module."""
    with postgres_databases() as fresh:
        yield fresh()


@pytest.fixture
def empty_url(backend: Backend) -> str:
    """A database of the backend under test that nothing has touched."""
    return backend.fresh_url()


@pytest.fixture
async def storage(backend: Backend) -> AsyncIterator[Storage]:
    """The module's shared database, connected and migrated."""
    opened = backend.open()
    await opened.connect()
    try:
        await opened.migrate()
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def uid() -> str:
    """A prefix for the ids and user names of one test, so tests sharing a database never
    see each other's rows."""
    return f"t{uuid.uuid4().hex[:10]}"
