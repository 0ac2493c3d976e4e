"""The Python client for playback pipelines: stream a library track's mastered PCM from
`legato serve`, with credit-based flow control and seeking done for the caller.

Flow control: the player keeps ``buffer_frames`` granted and not yet consumed: it grants that
many at the start, then as many as each block the caller takes (or that a seek discards). The
server therefore never has more than ``buffer_frames`` of audio on the way, however slowly the
caller plays. ``legato play`` is built on it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from ..engine import pcm
from ..errors import LegatoError, raise_single
from ..protocol.messages import PROTOCOL_VERSION, Credit, End, Seek, Start, encode
from .session import auth_headers

Message = dict[str, Any]

DEFAULT_BUFFER_S = 2.0
"""Audio granted ahead of the caller by default: rides out scheduling hiccups of a busy server
without holding much of the track in flight."""
REPLY_TIMEOUT_S = 60.0
"""Longest wait for ``started``/``track``: a cold fingerprint may be generated first."""


class PlayerError(LegatoError):
    """The server refused or ended the playback; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Player:
    """One playback session over an open connection (from ``open_player``). Iterate it for
    (frames, channels) float32 blocks until the track ends; ``seek`` moves the position."""

    def __init__(self, ws: WebSocketConnection, track: Message, buffer_s: float) -> None:
        self._ws = ws
        self.track = track
        """The server's ``track`` message: duration, fingerprint tier, class, measurements."""
        self.channels: int = track["channels"]
        self.sample_rate: int = track["sample_rate"]
        self._format: str = track["format"]
        if self._format not in pcm.SAMPLE_DTYPES:
            raise PlayerError("unsupported_format", f"server sends {self._format!r} PCM")
        self.buffer_frames = max(1, round(buffer_s * self.sample_rate))
        self._seeking = 0  # seeks sent and not yet answered: PCM until then is stale
        self.position = 0
        """The track frame the next block starts at."""
        self.events: list[Message] = []
        """Events of the pipeline's stages (``analysis`` messages), in order."""
        self.notices: list[Message] = []
        """``error`` messages that did not end the session."""
        self.summary: Message | None = None
        self.ended = False

    async def grant(self, frames: int) -> None:
        if frames > 0:
            await self._ws.send_message(encode(Credit(frames=frames)))

    async def seek(self, frame: int) -> None:
        """Continue from ``frame``; blocks already on the way are discarded (and re-granted)."""
        await self._ws.send_message(encode(Seek(frame=frame)))
        self._seeking += 1
        self.ended = False

    async def seek_seconds(self, seconds: float) -> None:
        await self.seek(round(seconds * self.sample_rate))

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._blocks()

    async def _blocks(self) -> AsyncIterator[np.ndarray]:
        while not self.ended:
            message = await self._ws.get_message()
            if isinstance(message, bytes):
                block = self._decode(message)
                await self.grant(len(block))  # consumed or discarded: keep the buffer full
                if self._seeking:
                    continue
                self.position += len(block)
                yield block
                continue
            self._handle(json.loads(message))

    def _decode(self, payload: bytes) -> np.ndarray:
        try:
            block, _ = pcm.decode(payload, self._format, self.channels)
        except ValueError:
            raise PlayerError(
                "misaligned_audio", f"server sent {len(payload)} bytes of PCM"
            ) from None
        return block

    def _handle(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "analysis":
            self.events.extend(message["events"])
        elif kind == "seeked":
            self._seeking -= 1
            if not self._seeking:
                self.position = message["frame"]
        elif kind == "track_end":
            if not self._seeking:
                self.ended = True
        elif kind == "error":
            if not message["continues"]:
                raise PlayerError(message["code"], message["message"])
            if message["code"] == "bad_seek" and self._seeking:
                self._seeking -= 1  # refused: playback goes on where it was
            self.notices.append(message)
        elif kind == "summary":
            self.summary = message
            self.ended = True

    async def end(self) -> Message | None:
        """Tell the server playback is over; the session's summary (None if the connection
        closed first)."""
        await self._ws.send_message(encode(End()))
        try:
            with trio.fail_after(REPLY_TIMEOUT_S):
                while self.summary is None:
                    message = await self._ws.get_message()
                    if isinstance(message, str):
                        self._handle(json.loads(message))
        except ConnectionClosed:
            pass
        return self.summary


async def _reply(ws: WebSocketConnection, wanted: str) -> Message:
    """The next text message, which must be ``wanted``; an ``error`` raises PlayerError."""
    with trio.fail_after(REPLY_TIMEOUT_S):
        while True:
            message = await ws.get_message()
            if isinstance(message, bytes):
                continue
            parsed = json.loads(message)
            if parsed.get("type") == "error":
                raise PlayerError(parsed["code"], parsed["message"])
            if parsed.get("type") == wanted:
                return parsed


@asynccontextmanager
async def open_player(
    url: str,
    track: str,
    *,
    pipeline: str = "playback",
    sample_format: str = "f32le",
    buffer_s: float = DEFAULT_BUFFER_S,
    start_frame: int = 0,
    token: str | None = None,
) -> AsyncIterator[Player]:
    """Connect (presenting ``token`` when the server requires one), start ``pipeline`` on
    ``track`` (its path in the server's library) and yield the ``Player`` once the server's
    ``track`` message is in; the session is ended on exit."""
    try:
        start = Start(pipeline=pipeline, track=track, format=sample_format)
    except (ValueError, TypeError) as exc:  # the server's answer, without asking it
        raise PlayerError("bad_message", f"invalid 'start' message: {exc}") from None
    try:
        headers = auth_headers(token)
        async with open_websocket_url(url, extra_headers=headers, max_message_size=64 << 20) as ws:
            hello = await _reply(ws, "hello")
            if hello["protocol"] != PROTOCOL_VERSION:
                raise PlayerError(
                    "protocol_mismatch",
                    f"server speaks protocol v{hello['protocol']}, not v{PROTOCOL_VERSION}",
                )
            await ws.send_message(encode(start))
            await _reply(ws, "started")
            player = Player(ws, await _reply(ws, "track"), buffer_s)
            if start_frame:
                await player.seek(start_frame)
            await player.grant(player.buffer_frames)
            yield player
            if player.summary is None:
                await player.end()
    except (OSError, HandshakeError, ConnectionClosed) as exc:
        raise PlayerError("connection_failed", f"{url}: {exc}") from None
    except BaseExceptionGroup as group:
        raise_single(group)
