"""Turning asyncpg and socket failures into the two errors the host acts on.

``StorageUnavailable`` means "try again later" (the recorder spools): the server is down,
refusing, starting up, shutting down, out of connections or disk, or did not answer in time.
``StorageError`` means a person has to act: wrong user or password, no such database, no
permission. Messages name ``host:port/db`` and never the password.
"""

from __future__ import annotations

import socket

import asyncpg

from legato.storage import StorageError, StorageUnavailable

from .dsn import Target

_UNAVAILABLE_STATES = (
    asyncpg.PostgresConnectionError,  # 08xxx
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: shutdown, crash, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: disk full, too many connections
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, e.g. during a failover
)

RETRY_IN_TRANSACTION = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)
"""Errors after which the same transaction succeeds when simply run again."""


def translate(exc: BaseException, target: Target, within: str) -> StorageError | None:
    """The host-facing error for ``exc``, or None when it is not a database problem;
    ``within`` says which time limit applied ("within 5 s")."""
    where = f"postgres at {target.where}"
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, TimeoutError):
        return StorageUnavailable(f"{where}: no answer {within}")
    if isinstance(exc, socket.gaierror):
        host = target.where.rsplit(":", 1)[0]
        return StorageUnavailable(f"{where}: cannot resolve host {host!r} ({exc.strerror})")
    if isinstance(exc, ConnectionRefusedError):
        return StorageUnavailable(
            f"{where}: connection refused (is the server running and listening there?)"
        )
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return StorageUnavailable(f"{where}: connection failed ({reason})")
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return StorageError(
            f"{where}: password authentication failed for user {target.user!r}; check the "
            "user and password in the URL"
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return StorageError(
            f"{where}: the server rejected user {target.user!r} ({_server_text(exc)}); check "
            "the user in the URL"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        database = target.where.rsplit("/", 1)[1]
        return StorageError(
            f"{where}: database {database!r} does not exist; create it (createdb {database}) "
            "or fix the URL"
        )
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return StorageError(f"{where}: invalid connection settings in the URL ({exc})")
    if isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError):
        return StorageError(f"{where}: permission denied ({_server_text(exc)})")
    if isinstance(exc, asyncpg.exceptions.UndefinedTableError):
        return StorageError(
            f"{where}: {_server_text(exc)}: the schema is missing or out of date; run "
            "`legato db migrate`"
        )
    if isinstance(exc, _UNAVAILABLE_STATES + RETRY_IN_TRANSACTION):
        return StorageUnavailable(f"{where}: {_server_text(exc)}")
    if isinstance(exc, asyncpg.InternalClientError):
        return StorageUnavailable(f"{where}: connection left in an unexpected state ({exc})")
    if isinstance(exc, asyncpg.InterfaceError) and "pool is clos" in str(exc):
        return StorageError(f"{where}: the storage is closed")
    if isinstance(exc, asyncpg.InterfaceError):
        cause = exc.__cause__ or exc.__context__
        inner = translate(cause, target, within) if cause is not None else None
        return inner or StorageUnavailable(f"{where}: connection lost ({exc})")
    if isinstance(exc, asyncpg.PostgresError):
        return StorageError(f"{where}: {_server_text(exc)}")
    return None


def _server_text(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    return f"{message} [SQLSTATE {state}]" if state else message
