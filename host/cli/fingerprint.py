"""`legato fingerprint PATH...`: fingerprint audio files and whole folders into the database
and ``.25d`` sidecars, in parallel across cores, skipping what is already cached.

First every file is checked against the cache tiers (``legato.library.fingerprints``): one
with a valid database row or sidecar is done (the other copy is written if it is missing or
bad), so an interrupted run simply resumes. The rest are fingerprinted by a pool of worker
processes (``--jobs``, default one per core), each importing legato and running the
fingerprint stage found through the registry (``legato.library.fingerprints.generate``); the
main process writes each result's sidecar and database row as it arrives. A file that
cannot be read is reported by name and the run goes on; a worker process that dies takes no
other file with it (the files it was working on are retried one at a time, and the one that
kills a worker on its own is reported). Exit status 1 when some file failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import soundfile as sf

from ..errors import LegatoError, raise_single
from ..stage import Fingerprinter
from ..storage import FingerprintRecord, Storage
from .common import Subparsers, config_option, db_option, open_storage_for

if TYPE_CHECKING:
    from ..library.fingerprints import FingerprintCache

Outcome = Literal["database", "sidecar", "generated", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("database", "sidecar", "generated", "failed")

_EXTENSIONS = {
    "WAV": ("wav", "wave", "bwf"),
    "RF64": ("rf64",),
    "W64": ("w64",),
    "FLAC": ("flac",),
    "OGG": ("ogg", "oga", "opus"),
    "AIFF": ("aif", "aiff", "aifc"),
    "AU": ("au", "snd"),
    "CAF": ("caf",),
    "MP3": ("mp3",),
}
"""File extensions of the music formats, by libsndfile format; only the formats the installed
libsndfile reads count."""

BAR_WIDTH = 24
TICK_S = 0.1
"""Redraw interval of the progress bar on a terminal."""
LINE_S = 10.0
"""Interval of the plain progress lines when stderr is not a terminal."""
RATE_WINDOW_S = 20.0
"""The rate (and so the ETA) is measured over this recent stretch, so the quick cached files
at the start do not make the ETA of the files still to fingerprint look short."""
IN_FLIGHT_PER_JOB = 2
"""Files queued per worker: enough that no worker waits for the next file, few enough that a
dying worker pool strands few files."""


def audio_extensions() -> frozenset[str]:
    """The extensions a folder's audio files are recognised by, for this libsndfile."""
    formats = sf.available_formats()
    return frozenset(ext for fmt, exts in _EXTENSIONS.items() if fmt in formats for ext in exts)


def find_audio(paths: Iterable[str], problem: Callable[[str, str], None]) -> list[Path]:
    """The files to fingerprint, each once, in a stable order: a named file as is (whatever
    its extension), a folder's audio files recursively (by extension; hidden files and
    folders, such as AppleDouble ``._song.flac`` files, and symlinked folders skipped)."""
    extensions = audio_extensions()
    found: list[Path] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            found.append(path)

    def walk_error(exc: OSError) -> None:
        problem(str(exc.filename), exc.strerror or str(exc))

    for arg in paths:
        top = Path(arg)
        if not top.is_dir():
            add(top)
            continue
        for root, dirs, files in os.walk(top, onerror=walk_error):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and name.rpartition(".")[2].lower() in extensions:
                    add(Path(root) / name)
    return found


class Report:
    """Everything the command prints: JSON lines on stdout (``--json``), problems, the
    progress bar (a terminal) or a line every LINE_S (otherwise) and the summary on stderr."""

    def __init__(
        self,
        out: TextIO | None,
        err: TextIO,
        tty: bool,
        clock: Callable[[], float],
        fingerprinter: Fingerprinter | None = None,
    ) -> None:
        self._fingerprinter = fingerprinter
        self.out = out
        self.err = err
        self.tty = tty
        self.clock = clock
        self.total = 0
        self.invalid = 0
        """Stale or corrupt cache entries found (each replaced by a fresh copy)."""
        self.counts: collections.Counter[str] = collections.Counter(dict.fromkeys(OUTCOMES, 0))
        self.started = clock()
        self._samples = collections.deque([(self.started, 0)])
        self._drawn = -math.inf if tty else self.started
        self._bar = False

    @property
    def fingerprinter(self) -> Fingerprinter:
        """Whose value names and version the JSON lines carry: the one given, else the
        installed default fingerprinter (the one the cache and the workers use)."""
        if self._fingerprinter is None:
            from ..library.fingerprinter import default_spec

            self._fingerprinter = default_spec()
        return self._fingerprinter

    def start(self, files: int) -> None:
        """The number of files to go through is known: show the bar at once."""
        self.total = self.done + files
        if self.tty:
            self._draw(self.clock())

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def result(self, path: Path, outcome: Outcome, record: FingerprintRecord) -> None:
        self._line(
            {
                "path": str(path),
                "tier": outcome,
                "version": record.version,
                "names": list(self.fingerprinter.names),
                "values": list(record.values),
            }
        )
        self._count(outcome)

    def failed(self, path: Path | str, error: str) -> None:
        """A file (or folder) that could not be fingerprinted: named on stderr, counted."""
        self.problem(str(path), error)
        version = self.fingerprinter.version
        self._line({"path": str(path), "tier": "failed", "version": version, "error": error})
        self._count("failed")

    def problem(self, path: str, message: str) -> None:
        prefix = f"{path}: "
        self._message(f"legato: {message if message.startswith(prefix) else prefix + message}")

    def summary(self) -> str:
        counts = ", ".join(f"{self.counts[o]} {o}" for o in OUTCOMES)
        elapsed = _duration(self.clock() - self.started)
        invalid = (
            f" ({self.invalid} stale or corrupt cache entries replaced)" if self.invalid else ""
        )
        return f"legato: fingerprint: {self.done} files in {elapsed}: {counts}{invalid}"

    def finish(self) -> None:
        if self.tty:
            self._draw(self.clock())
            self.err.write("\n")
        self.err.write(self.summary() + "\n")
        self.err.flush()

    def _line(self, data: dict[str, Any]) -> None:
        if self.out is not None:
            self.out.write(json.dumps(data, allow_nan=False, separators=(",", ":")) + "\n")
            self.out.flush()

    def _count(self, outcome: Outcome) -> None:
        self.counts[outcome] += 1
        now = self.clock()
        if now - self._drawn >= (TICK_S if self.tty else LINE_S):
            self._draw(now)

    def _message(self, text: str) -> None:
        if self._bar:
            self.err.write("\r\033[K")
            self._bar = False
            self._drawn = -math.inf
        self.err.write(text + "\n")
        self.err.flush()

    def _rate(self, now: float) -> float | None:
        """Files per second over about the last RATE_WINDOW_S."""
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        then, done_then = self._samples[0]
        return (self.done - done_then) / (now - then) if now > then else None

    def _draw(self, now: float) -> None:
        self._drawn = now
        rate = self._rate(now)
        speed = "-- files/s" if rate is None else f"{rate:.1f} files/s"
        eta = _duration((self.total - self.done) / rate) if rate else "--"
        if self.tty:
            share = self.done / self.total if self.total else 1.0
            filled = round(BAR_WIDTH * share)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            line = (
                f"\r\033[K{self.done}/{self.total} [{bar}] {100 * share:5.1f}%  {speed}  ETA {eta}"
            )
            self._bar = True
        else:
            line = f"legato: fingerprint: {self.done}/{self.total} files, {speed}, ETA {eta}\n"
        self.err.write(line)
        self.err.flush()


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# ---- the worker pool --------------------------------------------------------------------------


def _quiet_worker() -> None:
    """Ctrl-C is the parent's to handle (workers finish their file and are shut down), and so
    is reporting: what decoders print about damaged files (libmpg123's resync notes) would
    garble the progress bar, and the error comes back with the result anyway."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


PoolResult = tuple[Path, FingerprintRecord | str]


def drive_pool(
    paths: Sequence[Path],
    jobs: int,
    deliver: Callable[[PoolResult], None],
    work: Callable[[str], FingerprintRecord] | None = None,
) -> None:
    """Fingerprint ``paths`` in ``jobs`` worker processes (blocking), handing each result or
    error message to ``deliver`` as it arrives; ``work`` fingerprints one file (default:
    ``legato.library.fingerprints.generate``). When a worker dies, the files in flight are
    retried one at a time in a new pool, so only the file that kills a worker alone fails."""
    if work is None:
        from ..library.fingerprints import generate

        work = generate
    queue = collections.deque(paths)
    suspects: collections.deque[Path] = collections.deque()
    context = multiprocessing.get_context("spawn")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(jobs, mp_context=context, initializer=_quiet_worker)

    pool = new_pool()
    running: dict[Future[FingerprintRecord], tuple[Path, bool]] = {}

    def submit(path: Path, alone: bool) -> None:
        running[pool.submit(work, str(path))] = (path, alone)

    try:
        while queue or suspects or running:
            broken = False
            try:
                if suspects and not running:
                    submit(suspects[0], True)
                    suspects.popleft()
                while not suspects and queue and len(running) < jobs * IN_FLIGHT_PER_JOB:
                    submit(queue[0], False)
                    queue.popleft()
            except BrokenProcessPool:  # a worker died before its future told us
                broken = True
            finished = () if broken else wait(running, return_when=FIRST_COMPLETED)[0]
            for future in finished:
                path, alone = running.pop(future)
                result: FingerprintRecord | str
                try:
                    result = future.result()
                except BrokenProcessPool:
                    broken = True
                    if not alone:
                        suspects.append(path)
                        continue
                    result = f"{path}: the worker process died reading this file"
                except LegatoError as exc:
                    result = str(exc)
                except Exception as exc:
                    result = f"{path}: {type(exc).__name__}: {exc}"
                deliver((path, result))
            if broken:
                suspects.extend(path for path, _ in running.values())
                running.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = new_pool()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# ---- the command ------------------------------------------------------------------------------


async def _check_cached(cache: FingerprintCache, path: Path, report: Report) -> bool:
    """Report the file if a tier has it (writing the copy the other tier lacks); False when it
    must be fingerprinted."""
    try:
        track = await cache.identify(path)
    except LegatoError as exc:
        report.failed(path, str(exc))
        return True
    stored, _ = await cache.from_database(track)
    sidecar, _ = await cache.from_sidecar(track)
    if stored is not None:
        if cache.sidecars and sidecar is None:
            await _store(cache, path, stored, report, database=False)
        report.result(path, "database", stored)
        return True
    if sidecar is not None:
        await _store(cache, path, sidecar, report, sidecar=False)
        report.result(path, "sidecar", sidecar)
        return True
    return False


async def _store(
    cache: FingerprintCache, path: Path, record: FingerprintRecord, report: Report, **where: bool
) -> None:
    for note in await cache.store(record, **where):
        report.problem(str(path), note)


async def fingerprint_paths(
    files: Sequence[Path], storage: Storage | None, jobs: int, sidecars: bool, report: Report
) -> None:
    """Check every file against the cache, then fingerprint the misses in the pool."""
    from ..library.fingerprints import open_fingerprint_cache

    report.start(len(files))
    missing: list[Path] = []
    async with open_fingerprint_cache(storage, sidecars=sidecars) as cache:
        try:
            for path in files:
                if not await _check_cached(cache, path, report):
                    missing.append(path)
            if missing:
                await _generate(cache, missing, jobs, report)
        finally:
            report.invalid = cache.counts["invalid"]


async def _generate(
    cache: FingerprintCache, missing: list[Path], jobs: int, report: Report
) -> None:
    """Fingerprint the files in the worker pool; store and report each as it arrives."""
    import trio

    send, receive = trio.open_memory_channel[PoolResult](0)

    async def produce() -> None:
        async with send:
            await trio.to_thread.run_sync(
                drive_pool,
                missing,
                min(jobs, len(missing)),
                lambda item: trio.from_thread.run(send.send, item),
                abandon_on_cancel=True,
            )

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async with receive:
                async for path, result in receive:
                    if isinstance(result, str):
                        report.failed(path, result)
                    else:
                        await _store(cache, path, result, report)
                        report.result(path, "generated", result)
    except BaseExceptionGroup as group:
        raise_single(group)


def default_jobs() -> int:
    """One worker per core this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def add_parser(subparsers: Subparsers) -> None:
    """Declare `legato fingerprint`."""
    p = subparsers.add_parser(
        "fingerprint",
        parents=[db_option(), config_option()],
        help="fingerprint audio files and folders into the database and .25d sidecars",
        description="Fingerprint audio files, and folders recursively, in parallel; files whose"
        " fingerprint is already in the database or a valid .25d sidecar are skipped, so an"
        " interrupted run resumes. Progress and a per-tier summary go to stderr. Exits 1 if some"
        " file could not be fingerprinted (each is named on stderr).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio file or folder")
    p.add_argument("--json", action="store_true", help="print one JSON line per file on stdout")
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes (default: one per available core)",
    )
    p.add_argument(
        "--no-sidecar",
        action="store_true",
        help="neither read nor write .25d sidecar files next to the audio",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """The command's body: returns the exit status (trio and the fingerprint cache load only
    here)."""
    import trio

    from ..library.fingerprinter import default_spec

    jobs = default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        raise LegatoError(f"--jobs must be at least 1, got {jobs}")
    spec = default_spec()  # no fingerprint stage installed: one error, not one per file
    out = sys.stdout if args.json else None
    report = Report(out, sys.stderr, sys.stderr.isatty(), time.monotonic, spec)
    files = find_audio(args.paths, report.failed)
    storage = open_storage_for(args)

    async def main() -> None:
        await storage.connect()
        try:
            await storage.migrate()
            await fingerprint_paths(files, storage, jobs, not args.no_sidecar, report)
        finally:
            await storage.close()

    try:
        trio.run(main)
    finally:
        report.finish()
    return 1 if report.counts["failed"] else 0
