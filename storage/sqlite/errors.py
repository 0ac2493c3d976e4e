"""sqlite3 exceptions turned into the storage errors a user (or the retrying recorder) can act
on: a busy, interrupted or failing disk is ``StorageUnavailable`` (retry later); a bad path,
a file that is not a database or a violated constraint is ``StorageError``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from legato.storage import StorageError, StorageUnavailable

from .params import SQLiteParams

_RETRYABLE_IO = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}
_NOT_A_DATABASE = {sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT}
_READ_ONLY = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM}


def _cannot_open(path: Path) -> str:
    if not path.parent.is_dir():
        return f"directory {path.parent} does not exist"
    if path.is_dir():
        return "it is a directory"
    return "permission denied or not a regular file"


def translate(exc: sqlite3.Error, path: Path, params: SQLiteParams, doing: str) -> StorageError:
    """The storage error for ``exc``, raised while ``doing`` (e.g. "writing a batch")."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    where = f"SQLite database {path}"
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StorageUnavailable(
            f"{where} is locked by another connection: {doing} gave up after waiting"
            f" busy_timeout_s = {params.busy_timeout_s:g} s"
        )
    if primary == sqlite3.SQLITE_INTERRUPT:
        return StorageUnavailable(
            f"{where}: {doing} ran longer than its time limit and was rolled back"
        )
    if primary in _RETRYABLE_IO:
        return StorageUnavailable(f"{where}: {doing} failed: {exc} (disk full or I/O error)")
    if primary == sqlite3.SQLITE_CANTOPEN:
        return StorageError(f"cannot open {where}: {_cannot_open(path)}")
    if primary in _NOT_A_DATABASE:
        return StorageError(f"{path} is not a usable SQLite database: {exc}")
    if primary in _READ_ONLY:
        return StorageError(f"{where} cannot be written: {exc}")
    if "no such table" in str(exc):
        return StorageError(f"{where} has no legato schema yet: run `legato db migrate`")
    return StorageError(f"{where}: {doing} failed: {exc}")
