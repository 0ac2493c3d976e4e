"""Finding a track's fingerprint through the cache tiers: the database (keyed by the file's
identity and the algorithm version), then the ``.25d`` sidecar next to the audio, then
generating it in a worker thread under a timeout, and finally none, so the caller falls back to
standard mastering. Every answer says which tier gave it and why the tiers before it did not,
and is counted.

Nothing cached is trusted blindly: a database row or sidecar whose values are not 25 finite
numbers, whose algorithm version is not the current one, or whose file identity (size, mtime)
differs from the file on disk is treated as missing; the fingerprint is generated again and
the bad entry overwritten (a changed file is a new track row; the old row stays, unused).

Generation runs in the cache's own nursery (``run``), not in the caller's: a thread cannot be
interrupted, so when the caller's timeout passes it gets the fallback at once while the
generation carries on in the background and stores its result (sidecar and database row) when
it finishes; the next lookup of the file then finds it. Concurrent lookups of the same file
share one generation. When the cache stops, running generations are abandoned: their threads
finish on their own and the results are dropped.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import attrs
import trio

from ..config.settings import FINGERPRINT_TIMEOUT_S
from ..engine.files import AudioFile
from ..engine.graph import downmix
from ..engine.stages import make_stage
from ..errors import LegatoError, raise_single
from ..registry import installed
from ..stage import Fingerprinter, StageType
from ..storage import FingerprintRecord, Storage, StorageError
from .fingerprinter import find_fingerprinter
from .sidecar import SidecarInvalid, read_sidecar, write_sidecar

log = logging.getLogger("legato.fingerprints")

Tier = Literal["database", "sidecar", "generated", "fallback"]
TIERS: tuple[Tier, ...] = ("database", "sidecar", "generated", "fallback")

FILE_BLOCK_FRAMES = 65536
"""Frames decoded per read while fingerprinting: per-block costs vanish next to decoding."""


@attrs.frozen
class Fingerprint:
    """A track's fingerprint: ``values`` named by ``names``, from algorithm ``version`` of the
    fingerprinter that made it, whose ``measures`` (measure -> dimension) it keeps."""

    values: tuple[float, ...] = attrs.field(converter=tuple)
    names: tuple[str, ...] = attrs.field(converter=tuple)
    version: int
    measures: Mapping[str, str] = attrs.field(factory=dict, eq=False)

    def __getitem__(self, name: str) -> float:
        return self.values[self.names.index(name)]

    def measured(self) -> dict[str, float]:
        """The shared measures (``legato.stage.MEASURES``) this fingerprint holds, finite
        ones only."""
        values = {m: self[d] for m, d in self.measures.items() if d in self.names}
        return {m: v for m, v in values.items() if math.isfinite(v)}


@attrs.frozen
class TrackFile:
    """An audio file's identity: its resolved path (symlinks followed), size and mtime."""

    path: Path
    size: int
    mtime_ns: int


def identify(path: str | Path) -> TrackFile:
    """The file's identity now; LegatoError when it is missing or not a regular file."""
    try:
        resolved = Path(path).resolve(strict=True)
        info = os.stat(resolved)
    except OSError as exc:
        raise LegatoError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise LegatoError(f"{path}: not a regular file")
    return TrackFile(resolved, info.st_size, info.st_mtime_ns)


def generate(path: str | Path, stage_type: StageType | None = None) -> FingerprintRecord:
    """Fingerprint the file with ``stage_type`` (None: the installed default) through the
    stage itself, reading no further than its window (blocking: a worker thread or process).
    LegatoError when it cannot be read or changed while it was being read, since the result
    then describes neither version of it."""
    stage_type = stage_type or find_fingerprinter(installed())
    spec = stage_type.fingerprinter
    assert spec is not None
    before = identify(path)
    with AudioFile(path) as audio:
        fmt, frames = audio.format, audio.frames
        stage = make_stage(stage_type, fmt)
        left = None if spec.window_s is None else round(spec.window_s * fmt.sample_rate)
        for block in audio.blocks(FILE_BLOCK_FRAMES):
            stage.process(block if stage_type.input == "multichannel" else downmix(block))
            if left is not None:
                left -= len(block)
                if left <= 0:
                    break
        found = [e for e in stage.finish() if e["kind"] == "fingerprint"]
    if len(found) != 1 or len(found[0].get("values", ())) != len(spec.names):
        raise LegatoError(
            f"{path}: stage {stage_type.name!r} did not report one fingerprint of"
            f" {len(spec.names)} values"
        )
    if identify(path) != before:
        raise LegatoError(f"{path}: the file changed while it was being fingerprinted")
    return FingerprintRecord(
        path=str(before.path),
        size=before.size,
        mtime_ns=before.mtime_ns,
        version=spec.version,
        values=tuple(float(v) for v in found[0]["values"]),
        duration_s=frames / fmt.sample_rate,
        sample_rate=fmt.sample_rate,
        channels=fmt.channels,
    )


@attrs.frozen
class FingerprintResult:
    """A lookup's answer. ``fingerprint`` is None only for the ``fallback`` tier; ``reason``
    says why this tier answered (the misses of the tiers before it, ``;``-separated)."""

    fingerprint: Fingerprint | None
    tier: Tier
    reason: str


@attrs.define(eq=False)
class _Generation:
    """One file's generation, shared by every lookup waiting for it."""

    done: trio.Event = attrs.field(factory=trio.Event)
    record: FingerprintRecord | None = None
    error: LegatoError | None = None
    notes: list[str] = attrs.field(factory=list)


class FingerprintCache:
    """The tiers over one ``Storage`` (None: no database tier). Start ``run`` in a nursery (or
    use ``open_fingerprint_cache``) before calling ``lookup``.

    ``timeout_s`` bounds how long a lookup waits for a generation and ``database_timeout_s``
    how long it waits for the database (a hung one is skipped like an unreachable one);
    ``limiter`` bounds how many generations run at once (default one, so fingerprinting never
    takes more than one core from live sessions); ``sidecars`` False skips the sidecar tier
    (neither read nor written). ``fingerprinter`` is the stage type that fingerprints (itself,
    its name in the installed registry, or None: found there, see ``find_fingerprinter``);
    when there is none, every lookup answers from the fallback tier saying why.
    """

    def __init__(
        self,
        storage: Storage | None,
        timeout_s: float = FINGERPRINT_TIMEOUT_S,
        limiter: trio.CapacityLimiter | None = None,
        *,
        sidecars: bool = True,
        database_timeout_s: float = FINGERPRINT_TIMEOUT_S,
        fingerprinter: StageType | str | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.storage = storage
        self.timeout_s = timeout_s
        self.limiter = limiter if limiter is not None else trio.CapacityLimiter(1)
        self.sidecars = sidecars
        self.fingerprinter: StageType | None = None
        self.problem: str | None = None
        """Why there is no fingerprinter (every lookup then falls back)."""
        if fingerprinter is None or isinstance(fingerprinter, str):
            try:
                self.fingerprinter = find_fingerprinter(installed(), fingerprinter)
            except LegatoError as exc:
                self.problem = str(exc)
                log.warning("fingerprints: %s; playback uses the fallback mastering", exc)
        else:
            self.fingerprinter = fingerprinter
        self.database_timeout_s = database_timeout_s
        self.counts: Counter[str] = Counter(dict.fromkeys((*TIERS, "invalid"), 0))
        """Answers per tier, and ``invalid``: stale or corrupt entries found (and replaced)."""
        self._nursery: trio.Nursery | None = None
        self._running: dict[TrackFile, _Generation] = {}

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the background generations until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def wait_idle(self) -> None:
        """Return once no generation is running (those timed out included)."""
        while self._running:
            await next(iter(self._running.values())).done.wait()

    @property
    def generating(self) -> int:
        return len(self._running)

    @property
    def _spec(self) -> Fingerprinter:
        assert self.fingerprinter is not None and self.fingerprinter.fingerprinter is not None
        return self.fingerprinter.fingerprinter

    # ---- the tiers -------------------------------------------------------------------------

    async def identify(self, path: str | Path) -> TrackFile:
        """A stat of a local file takes microseconds and a thread hand-off a few hundred, so it
        runs here; a lookup then costs one hand-off (the database or sidecar read)."""
        await trio.lowlevel.checkpoint()
        return identify(path)

    async def from_database(self, track: TrackFile) -> tuple[FingerprintRecord | None, str]:
        """The valid database record, or None and why not."""
        if self.storage is None:
            return None, "database: none configured"
        record = None
        try:
            with trio.move_on_after(self.database_timeout_s) as waited:
                record = await self.storage.get_fingerprint(
                    str(track.path), track.size, track.mtime_ns, self._spec.version
                )
        except StorageError as exc:
            return None, f"database: {exc}"
        if waited.cancelled_caught:
            return None, f"database: no answer within {self.database_timeout_s:g} s"
        if record is None:
            return None, "database: not stored"
        problem = record.problem()
        if problem is not None:
            self.counts["invalid"] += 1
            return None, f"database: corrupt row ({problem})"
        return record, "database: found"

    async def from_sidecar(self, track: TrackFile) -> tuple[FingerprintRecord | None, str]:
        """The valid sidecar record, or None and why not."""
        if not self.sidecars:
            return None, "sidecar: disabled"
        try:
            record = await trio.to_thread.run_sync(
                read_sidecar, track.path, track.size, track.mtime_ns, self._spec
            )
        except SidecarInvalid as exc:
            self.counts["invalid"] += 1
            return None, f"sidecar: invalid ({exc})"
        if record is None:
            return None, "sidecar: none"
        return record, "sidecar: found"

    async def store(
        self, record: FingerprintRecord, *, sidecar: bool = True, database: bool = True
    ) -> list[str]:
        """Write the record to the sidecar (when enabled) and the database; failures are
        logged and returned as notes, never raised: the fingerprint itself is still good."""
        notes: list[str] = []
        if sidecar and self.sidecars:
            try:
                await trio.to_thread.run_sync(write_sidecar, Path(record.path), record, self._spec)
            except OSError as exc:
                notes.append(f"sidecar not written ({exc.strerror or exc})")
        if database and self.storage is not None:
            try:
                with trio.move_on_after(self.database_timeout_s) as waited:
                    await self.storage.put_fingerprint(record)
                if waited.cancelled_caught:
                    notes.append(
                        f"not stored in the database (no answer within "
                        f"{self.database_timeout_s:g} s)"
                    )
            except StorageError as exc:
                notes.append(f"not stored in the database ({exc})")
        for note in notes:
            log.warning("%s: %s", record.path, note)
        return notes

    async def lookup(self, path: str | Path) -> FingerprintResult:
        """The fingerprint of the audio file at ``path`` from the first tier that has a valid
        one; the fallback tier (no fingerprint) when none has and generation fails or takes
        longer than ``timeout_s``. Never raises for a bad file or an unavailable database."""
        if self.problem is not None:
            return self._answer(None, "fallback", [self.problem])
        try:
            track = await self.identify(path)
        except LegatoError as exc:
            return self._answer(None, "fallback", [str(exc)])
        record, db_reason = await self.from_database(track)
        if record is not None:
            return self._answer(record, "database", [db_reason])
        record, sidecar_reason = await self.from_sidecar(track)
        reasons = [db_reason, sidecar_reason]
        if record is not None:
            reasons += await self.store(record, sidecar=False)
            return self._answer(record, "sidecar", reasons)
        return await self._generated(track, reasons)

    # ---- generation ------------------------------------------------------------------------

    async def _generated(self, track: TrackFile, reasons: list[str]) -> FingerprintResult:
        if self._nursery is None:
            raise RuntimeError("FingerprintCache.run must be running to generate fingerprints")
        generation = self._running.get(track)
        if generation is None:
            generation = self._running[track] = _Generation()
            self._nursery.start_soon(self._generate, track, generation)
        with trio.move_on_after(self.timeout_s):
            await generation.done.wait()
        if generation.error is not None:
            reasons.append(f"generation failed: {generation.error}")
            return self._answer(None, "fallback", reasons)
        if generation.record is None:
            if generation.done.is_set():
                reasons.append("generation: cancelled (the cache is stopping)")
            else:
                reasons.append(
                    f"generation: not done within {self.timeout_s:g} s (still running; "
                    "stored when it finishes)"
                )
            return self._answer(None, "fallback", reasons)
        return self._answer(generation.record, "generated", reasons + generation.notes)

    async def _generate(self, track: TrackFile, generation: _Generation) -> None:
        try:
            record = await trio.to_thread.run_sync(
                generate,
                track.path,
                self.fingerprinter,
                limiter=self.limiter,
                abandon_on_cancel=True,
            )
            generation.notes += await self.store(record)
            generation.record = record
        except LegatoError as exc:
            generation.error = exc
        except Exception as exc:
            log.exception("%s: fingerprint generation failed", track.path)
            generation.error = LegatoError(f"{track.path}: {type(exc).__name__}: {exc}")
        finally:
            del self._running[track]
            generation.done.set()

    def _answer(
        self, record: FingerprintRecord | None, tier: Tier, reasons: list[str]
    ) -> FingerprintResult:
        self.counts[tier] += 1
        fingerprint = None
        if record is not None:
            spec = self._spec
            fingerprint = Fingerprint(record.values, spec.names, record.version, spec.measures)
        return FingerprintResult(fingerprint, tier, "; ".join(reasons))


def track_measurements(stage_type: StageType, measured: Mapping[str, float]) -> dict[str, float]:
    """The params ``stage_type`` plans from, as its ``TrackPlan`` maps them to a track's
    ``measured`` values (``Fingerprint.measured``); none for a stage that plans from nothing.
    The stage's params then take those they accept (``legato.config.with_values``)."""
    plan = stage_type.track_plan
    if plan is None:
        return {}
    return {p: measured[m] for p, m in plan.measurements.items() if m in measured}


@asynccontextmanager
async def open_fingerprint_cache(
    storage: Storage | None, *args: Any, **options: Any
) -> AsyncIterator[FingerprintCache]:
    """A running ``FingerprintCache(storage, *args, **options)``; leaving the block abandons
    generations still running (``wait_idle`` first to let them finish and be stored)."""
    cache = FingerprintCache(storage, *args, **options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            try:
                yield cache
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_single(group)
