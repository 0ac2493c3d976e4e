"""Python clients of `legato serve`: live sessions (``connect``, ``BlockingSession``,
``stream_file``) and the player of mastered library tracks (``open_player``)."""

from .player import Player, PlayerError, open_player
from .session import (
    INCOMPLETE,
    BlockingSession,
    ClientError,
    Session,
    connect,
    stream_file,
    to_s16le,
)

__all__ = [
    "INCOMPLETE",
    "BlockingSession",
    "ClientError",
    "Player",
    "PlayerError",
    "Session",
    "connect",
    "open_player",
    "stream_file",
    "to_s16le",
]
