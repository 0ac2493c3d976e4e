"""History queries over a live connection: a session's own user reads their stored sessions,
statistics and progress, as `legato db` prints them. Queries run in the connection's nursery,
never in its receive loop, a few at a time over the whole server and one at a time per user
(a user with many connections waits for their own turn instead of taking every slot), each
under the storage timeout and bounded in rows (a session's events come in pages); the answer
reaches the client through the session's outbox."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

import trio

from ..protocol.messages import ErrorCode, History, HistoryReply, ProtocolError, encode
from ..records.recorder import Recorder
from ..storage import StorageError, StorageUnavailable
from .auth import Identity
from .session import Session, error_message

log = logging.getLogger("legato.server")

HISTORY_QUERIES = 4
"""History queries running at once over the whole server; more wait their turn."""

HISTORY_DEFAULTS: dict[str, Any] = {
    "stats_days": 30,
    "progress_days": 90,
    "limit": 50,
    "session_limit": 500,
    "period": "weekly",
}
"""What a history request leaves out, as `legato db` defaults it (``session_limit``: events
in one page of a ``session`` answer; `legato db session` prints them all unless asked)."""


class HistoryQueries:
    """Answers ``history`` requests from the recorder's storage (None: the server keeps no
    history)."""

    def __init__(self, recorder: Recorder | None, timeout_s: float) -> None:
        self.recorder = recorder
        self.timeout_s = timeout_s
        self._limiter = trio.CapacityLimiter(HISTORY_QUERIES)
        self._turns: dict[str | None, trio.Lock] = {}

    @contextlib.asynccontextmanager
    async def _turn(self, user: str | None) -> AsyncIterator[None]:
        """One query at a time for ``user`` (None: the sessions started without one); a lock
        nobody holds or waits for is dropped."""
        lock = self._turns.setdefault(user, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._turns.pop(user, None)

    async def answer(self, session: Session, request: History, identity: Identity) -> None:
        """Run one request and post its reply (or error) to the session; the session allows
        one request at a time (``Session.begin_history``)."""
        try:
            reply = HistoryReply(
                query=request.query,
                id=request.id,
                result=await self._query(session, request, identity),
            )
            message = await trio.to_thread.run_sync(encode, reply)  # may be a large session
        except ProtocolError as exc:
            message = error_message(exc.code, exc.message)
        except Exception:
            log.exception("history query %s failed", request.query)
            message = error_message(ErrorCode.INTERNAL, "the history query failed")
        session.end_history(message)

    async def _query(self, session: Session, request: History, identity: Identity) -> Any:
        """Run one history query for the session's own user (an admin token: any user's)."""
        if not identity.allows("history"):
            raise ProtocolError(ErrorCode.FORBIDDEN, "your token does not allow reading history")
        if request.user is not None and not identity.admin:
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "only an admin token may read another user's history"
            )
        if self.recorder is None:
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE, "this server keeps no history (it has no storage)"
            )
        user = request.user or session.start.user
        if user is None and not (identity.admin and request.query == "session"):
            raise ProtocolError(
                ErrorCode.NO_USER, "history is per user: start the session with a `user`"
            )
        if not self.recorder.ready:
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE, "the database is unavailable; try again later"
            )
        storage = self.recorder.storage
        days = request.days or HISTORY_DEFAULTS.get(f"{request.query}_days", 0)
        now = dt.datetime.now(dt.UTC)
        unknown = ProtocolError(
            ErrorCode.UNKNOWN_SESSION, f"no stored session {request.session_id!r} of this user"
        )
        try:
            async with self._turn(identity.user or session.start.user), self._limiter:
                with trio.fail_after(self.timeout_s):
                    if request.query == "stats":
                        return await storage.user_stats(user, days, now)
                    if request.query == "sessions":
                        limit = request.limit or HISTORY_DEFAULTS["limit"]
                        return await storage.list_sessions(user, limit)
                    if request.query == "progress":
                        period = request.period or HISTORY_DEFAULTS["period"]
                        return await storage.progress(user, period, now - dt.timedelta(days=days))
                    assert request.session_id is not None
                    found = await storage.get_session(
                        request.session_id,
                        request.after_seq or 0,
                        request.limit or HISTORY_DEFAULTS["session_limit"],
                    )
        except (StorageUnavailable, trio.TooSlowError):
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE, "the database is unavailable; try again later"
            ) from None
        except StorageError:
            if request.query == "session":
                raise unknown from None
            raise
        if found.get("user") != user and not identity.admin:
            raise unknown  # the same answer as for an unknown id: ids of others stay secret
        return found
