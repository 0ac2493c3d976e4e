"""Leases of live sessions in the database, so that the sessions of a host that died are closed
by any surviving host, on any machine (the journals, ``journal.py``, do it for processes that
share a folder).

Every serving process renews, every few seconds, the lease of each session it holds; each
process also looks for leases nobody renewed for longer than a client may take to resume and
a checkpoint may take to come, on sessions still `active` and without a checkpoint since:
those are recorded `abandoned`, ending at their last stored event. A backend without leases
(a third-party storage plugin) just does without.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

import trio

from ..storage import StorageError
from .journal import abandoned
from .recorder import Recorder

log = logging.getLogger("legato.records")


class LeaseKeeper:
    """Renews the leases of ``held()`` sessions as ``holder`` every ``interval_s`` and records
    the sessions whose leases expired ``stale_s`` ago as abandoned."""

    def __init__(
        self,
        recorder: Recorder,
        holder: str,
        held: Callable[[], list[str]],
        interval_s: float,
        stale_s: float,
    ) -> None:
        self.recorder = recorder
        self.holder = holder
        self.held = held
        self.interval_s = interval_s
        self.stale_s = stale_s
        self._woken = trio.Event()

    def wake(self) -> None:
        """Renew now rather than at the next interval: a session just started, and until its
        lease exists nobody could close it if this process died."""
        self._woken.set()

    async def run(self) -> None:
        while True:
            self._woken = trio.Event()
            await self.look()
            with trio.move_on_after(self.interval_s):
                await self._woken.wait()

    async def look(self) -> int:
        """Renew, then close what expired: how many sessions it recorded as abandoned."""
        storage = self.recorder.storage
        now = time.time()
        stamp = dt.datetime.fromtimestamp(now, dt.UTC)
        try:
            with trio.fail_after(self.recorder.settings.timeout_s):
                await storage.renew_leases(self.holder, self.held(), stamp)
                expired = await storage.expired_leases(stamp - dt.timedelta(seconds=self.stale_s))
        except AttributeError:
            return 0  # this backend keeps no leases
        except (StorageError, trio.TooSlowError) as exc:
            log.debug("leases not renewed: %s", exc)
            return 0
        for row in expired:
            self.recorder.session_ended(await abandoned(row, self.recorder, now), None)
        if expired:
            log.warning(
                "%d session(s) whose host stopped renewing their lease recorded as abandoned",
                len(expired),
            )
        return len(expired)
