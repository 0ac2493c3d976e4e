"""Reading audio files for offline runs: any format libsndfile reads (WAV, FLAC, OGG, ...),
streamed in float32 blocks so long files never sit in memory whole."""

from __future__ import annotations

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
