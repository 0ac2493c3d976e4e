"""The ``.25d`` sidecar: a track's fingerprint in a small JSON file next to the audio
(``song.flac`` -> ``song.flac.25d``), so a library keeps its fingerprints when the database is
new, lost or elsewhere.

A sidecar names the exact file it describes (size and mtime in nanoseconds) and the algorithm
version; one that does not match the audio on disk, or that is not well formed down to its 25
finite values, is rejected with the reason (``SidecarInvalid``) and never used. It is written
atomically: a temporary file in the same folder, fsynced, then renamed over the old one, so a
reader sees the old sidecar or the new one, never half of one. Blocking I/O: call from a
worker thread.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Final

from ..stage import Fingerprinter
from ..storage import FingerprintRecord
from .fingerprinter import default_spec

SUFFIX: Final = ".25d"
FORMAT: Final = "legato-25d"
FORMAT_VERSION: Final = 1
"""Version of the file layout (the keys below), independent of the algorithm's version."""
MAX_BYTES: Final = 64 * 1024
"""A real sidecar is under 2 KiB; anything much larger is not one and is not read whole."""


class SidecarInvalid(Exception):
    """A sidecar exists but cannot be trusted; the message says why."""


def sidecar_path(audio: Path) -> Path:
    return audio.with_name(audio.name + SUFFIX)


def encode(record: FingerprintRecord, spec: Fingerprinter | None = None) -> bytes:
    """The sidecar's bytes: one JSON object on one line; the values are named by ``spec``'s
    names (the fingerprinter that made them; None: the installed default)."""
    spec = spec or default_spec()
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "size": record.size,
        "mtime_ns": record.mtime_ns,
        "duration_s": record.duration_s,
        "sample_rate": record.sample_rate,
        "channels": record.channels,
        "version": record.version,
        "names": list(spec.names),
        "values": list(record.values),
    }
    return (json.dumps(data, allow_nan=False, separators=(",", ":")) + "\n").encode()


def _whole(data: dict[str, Any], key: str, low: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SidecarInvalid(f"{key} is {value!r}, not a whole number >= {low}")
    return value


def decode(
    raw: bytes, audio: Path, size: int, mtime_ns: int, spec: Fingerprinter | None = None
) -> FingerprintRecord:
    """The record in a sidecar's bytes if it describes the audio file of this size and mtime
    with the current version of the fingerprinter ``spec`` declares (None: the installed
    default); ``SidecarInvalid`` otherwise."""
    spec = spec or default_spec()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SidecarInvalid(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SidecarInvalid(f"not a {FORMAT} file")
    if data.get("format_version") != FORMAT_VERSION or isinstance(data["format_version"], bool):
        raise SidecarInvalid(
            f"format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    version = data.get("version")
    if version != spec.version or isinstance(version, bool):
        raise SidecarInvalid(f"algorithm version {version!r}, current {spec.version}")
    if _whole(data, "size", 0) != size or _whole(data, "mtime_ns", 0) != mtime_ns:
        raise SidecarInvalid("stale: the audio file's size or mtime changed since it was written")
    duration_s = data.get("duration_s")
    if (
        isinstance(duration_s, bool)
        or not isinstance(duration_s, int | float)
        or not math.isfinite(duration_s)
        or duration_s < 0
    ):
        raise SidecarInvalid(f"duration_s is {duration_s!r}, not a finite number >= 0")
    values = data.get("values")
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise SidecarInvalid("values must be a list of numbers")
    names = data.get("names")
    if names is not None and (not isinstance(names, list) or tuple(names) != spec.names):
        raise SidecarInvalid("fingerprint names do not match this algorithm version")
    if len(values) != len(spec.names):
        raise SidecarInvalid(f"a fingerprint has {len(spec.names)} values, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise SidecarInvalid("fingerprint values must be finite")
    return FingerprintRecord(
        path=str(audio),
        size=size,
        mtime_ns=mtime_ns,
        version=spec.version,
        values=tuple(float(v) for v in values),
        duration_s=float(duration_s),
        sample_rate=_whole(data, "sample_rate", 1),
        channels=_whole(data, "channels", 1),
    )


def read_sidecar(
    audio: Path, size: int, mtime_ns: int, spec: Fingerprinter | None = None
) -> FingerprintRecord | None:
    """The sidecar's record (see ``decode``), or None when the audio file has no sidecar."""
    try:
        with sidecar_path(audio).open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SidecarInvalid(f"unreadable ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise SidecarInvalid(f"larger than {MAX_BYTES} bytes")
    return decode(raw, audio, size, mtime_ns, spec)


def write_sidecar(
    audio: Path, record: FingerprintRecord, spec: Fingerprinter | None = None
) -> Path:
    """Write (or replace) the audio file's sidecar atomically and durably; it gets the audio's
    read/write permission bits. Raises OSError (e.g. a read-only folder)."""
    target = sidecar_path(audio)
    data = encode(record, spec)
    mode = stat.S_IMODE(os.stat(audio).st_mode) & 0o666
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(target.parent)
    return target


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (where the platform can fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
