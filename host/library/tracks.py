"""The track library that playback pipelines read from: one folder, tracks named by their path
relative to it. A track id is checked before any file is opened: absolute paths, ``..`` and
anything that resolves (through symlinks too) outside the folder are refused, so a client can
read nothing but the library's own files."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ..errors import LegatoError
from ..protocol.messages import MAX_TRACK_ID


class TrackRefused(LegatoError):
    """A track id that names something outside the library."""


class UnknownTrack(LegatoError):
    """A track id inside the library that names no readable file."""


class Library:
    """A library folder; ``resolve`` turns a client's track id into a file inside it."""

    def __init__(self, folder: str | Path) -> None:
        try:
            self.root = Path(folder).expanduser().resolve(strict=True)
        except OSError as exc:
            raise LegatoError(f"library {folder}: {exc.strerror or exc}") from None
        if not self.root.is_dir():
            raise LegatoError(f"library {folder}: not a folder")

    def resolve(self, track_id: str) -> Path:
        """The file ``track_id`` names. TrackRefused for ids that are not plain relative paths
        or that lead outside the folder; UnknownTrack for ids naming no regular file."""
        problem = _id_problem(track_id)
        if problem is not None:
            raise TrackRefused(f"track {track_id[:200]!r} refused: {problem}")
        candidate = self.root / track_id
        try:
            resolved = candidate.resolve(strict=True)
        except FileNotFoundError:
            raise UnknownTrack(f"track {track_id!r}: no such file in the library") from None
        except RuntimeError:
            raise UnknownTrack(f"track {track_id!r}: a symlink loop") from None
        except OSError as exc:  # the reason only: the message must not show server paths
            raise UnknownTrack(f"track {track_id!r}: {exc.strerror or 'unreadable'}") from None
        if not resolved.is_relative_to(self.root):
            raise TrackRefused(
                f"track {track_id!r} refused: it leads outside the library (through a symlink)"
            )
        if not resolved.is_file():
            raise UnknownTrack(f"track {track_id!r}: not a file")
        return resolved


def _id_problem(track_id: str) -> str | None:
    """Why ``track_id`` is not a plain relative path, or None."""
    if not track_id:
        return "empty"
    if len(track_id) > MAX_TRACK_ID:
        return f"longer than {MAX_TRACK_ID} characters"
    if "\x00" in track_id:
        return "contains a NUL character"
    if "\\" in track_id:
        return "contains a backslash (separate folders with /)"
    path = PurePosixPath(track_id)
    if path.is_absolute():
        return "absolute path (track ids are relative to the library)"
    if ".." in path.parts:
        return "contains '..'"
    return None
