"""Audio files in and out. Reading: any format libsndfile reads (WAV, FLAC, OGG, ...), streamed
in float32 blocks so long files never sit in memory whole. Writing (`legato master`, `legato
play`): the format chosen by the file's extension, into a temporary file that replaces the
target only once it is complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import LegatoError
from ..stage import StreamFormat

BLOCK_FRAMES = 4096
"""Frames per block for offline runs: the block size `legato stream` sends too, so both print
events in the same order (the events themselves do not depend on block size)."""


class AudioFile:
    """An opened audio file; use as a context manager and iterate ``blocks()``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise LegatoError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise LegatoError(f"{self.path}: is a directory, not an audio file")
        try:
            self._file = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise LegatoError(
                f"{self.path}: not a readable audio file (WAV, FLAC, OGG, ...): {exc}"
            ) from None
        if self._file.frames == 0:
            self._file.close()
            raise LegatoError(f"{self.path}: contains no audio samples")
        self.format = StreamFormat(sample_rate=self._file.samplerate, channels=self._file.channels)
        self.frames = self._file.frames

    def blocks(self, frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Yield (n, channels) float32 blocks until the end of the file."""
        while True:
            block = self.read(frames)
            if block.shape[0] == 0:
                return
            yield block

    def read(self, frames: int = BLOCK_FRAMES) -> np.ndarray:
        """The next (n <= frames, channels) float32 block; n is 0 at the end of the file."""
        try:
            return self._file.read(frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise LegatoError(f"{self.path}: read error: {exc}") from None

    def seek(self, frame: int) -> None:
        """Continue reading at ``frame`` (0 to ``frames``)."""
        try:
            self._file.seek(frame)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise LegatoError(f"{self.path}: cannot seek to frame {frame}: {exc}") from None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "FLOAT"),
    "wave": ("WAV", "FLOAT"),
    "w64": ("W64", "FLOAT"),
    "rf64": ("RF64", "FLOAT"),
    "aif": ("AIFF", "FLOAT"),
    "aiff": ("AIFF", "FLOAT"),
    "caf": ("CAF", "FLOAT"),
    "flac": ("FLAC", "PCM_24"),
    "ogg": ("OGG", "VORBIS"),
    "oga": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
"""Container and sample format by OUTPUT's extension. Float where the container has it, so the
limiter's output is stored exactly (no requantisation that could move the true peak); FLAC has
no float samples, and 24-bit PCM keeps the noise floor ~144 dB down; lossy formats (Vorbis,
Opus, MP3) can raise the true peak above the ceiling, which the reported output peak shows."""


def output_format(path: Path) -> tuple[str, str]:
    """The (format, subtype) soundfile writes ``path`` with, by its extension."""
    ext = path.suffix.lower().lstrip(".")
    chosen = FORMATS.get(ext)
    if chosen is None or chosen[0] not in sf.available_formats():
        names = ", ".join(e for e, (f, _) in FORMATS.items() if f in sf.available_formats())
        raise LegatoError(f"{path}: unknown output extension {path.suffix!r} (use one of {names})")
    if chosen[1] not in sf.available_subtypes(chosen[0]):
        raise LegatoError(f"{path}: this libsndfile cannot write {chosen[1]} {chosen[0]} files")
    return chosen


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write to; it replaces ``path`` when the block ends
    without an error and is removed otherwise, so ``path`` is never left half-written. OS and
    libsndfile errors become LegatoError naming ``path``."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)
    except OSError as exc:
        raise LegatoError(f"{path}: cannot write: {exc.strerror or exc}") from None
    temp = Path(name)
    try:
        yield temp
        os.replace(temp, path)
    except (OSError, sf.LibsndfileError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise LegatoError(f"{path}: cannot write: {reason}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def open_sink(temp: Path, path: Path, sample_rate: int, channels: int) -> sf.SoundFile:
    """``temp`` opened for writing audio in the format ``path``'s extension names."""
    fmt_name, subtype = output_format(path)
    try:
        return sf.SoundFile(
            str(temp),
            "w",
            samplerate=sample_rate,
            channels=channels,
            format=fmt_name,
            subtype=subtype,
        )
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise LegatoError(f"{path}: cannot write: {exc}") from None
