"""Running asyncio coroutines from trio: one asyncio event loop in a dedicated daemon thread.

asyncpg only speaks asyncio, the host only speaks trio. Each bridge owns a private asyncio loop
running in its own thread; trio code hands it a coroutine function and sleeps on a
``trio.Event`` until the asyncio task finishes. The wake-up is a ``TrioToken.run_sync_soon``
callback scheduled from the asyncio thread, so a call costs no worker thread and no blocked
thread on either side. Cancelling the trio caller cancels the asyncio task and waits (briefly,
shielded) for it to unwind, so a cancelled write has really stopped before the caller moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

from ..common import yield_to_live_work

T = TypeVar("T")

CANCEL_GRACE_S = 5.0
"""How long a cancelled call waits for its asyncio task to unwind before giving up on it."""


class BridgeClosed(RuntimeError):
    """The bridge's loop is not running (never started, or closed)."""


class AsyncioBridge:
    """An asyncio event loop in a daemon thread, driven from trio."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    async def start(self) -> None:
        """Start the loop thread and return once its loop is running."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()
        await trio.to_thread.run_sync(self._ready.wait)

    def _main(self) -> None:
        yield_to_live_work()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            self._loop = None
            loop.close()

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` on the asyncio loop; its result or exception comes back here."""
        loop = self._loop
        if loop is None or not self.running:
            raise BridgeClosed(f"{self._name}: the asyncio loop is not running")
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        result: list[outcome.Outcome] = []
        tasks: list[asyncio.Task[T]] = []
        cancelled_by_caller = False

        def finished(task: asyncio.Task[T]) -> None:
            if task.cancelled() and not cancelled_by_caller:
                stopped = BridgeClosed(f"{self._name}: the asyncio loop was stopped")
                result.append(outcome.Error(stopped))
            else:
                result.append(outcome.capture(task.result))
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        def begin() -> None:
            task = loop.create_task(fn(*args))  # type: ignore[arg-type]
            task.add_done_callback(finished)
            tasks.append(task)

        def cancel() -> None:
            if tasks:
                tasks[0].cancel()

        try:
            loop.call_soon_threadsafe(begin)
        except RuntimeError as exc:
            raise BridgeClosed(f"{self._name}: the asyncio loop is closed") from exc
        try:
            await done.wait()
        except trio.Cancelled:
            cancelled_by_caller = True
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(cancel)
            with trio.CancelScope(shield=True) as grace:
                grace.deadline = trio.current_time() + CANCEL_GRACE_S
                await done.wait()
            raise
        return result[0].unwrap()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop the loop (cancelling what is still running on it) and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(thread.join, timeout_s)
