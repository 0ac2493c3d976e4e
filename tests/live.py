"""What the tests of live sessions share: a test phrase and the client side of the protocol
over a real WebSocket connection."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from legato.stage import Event

RATE = 44100


def phrase(seconds: float = 2.0, f0: float = 220.0, seed: int = 0) -> np.ndarray:
    """Plucked harmonic notes every 0.4 s, mono float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    out = np.zeros_like(t)
    for k, start in enumerate(np.arange(0.1, seconds - 0.2, 0.4)):
        tau = t[t >= start] - start
        f = f0 * 2 ** (k % 5 / 12)
        note = sum(np.sin(2 * np.pi * f * h * tau) / h for h in range(1, 5))
        out[t >= start] += 0.3 * note * np.exp(-4 * tau)
    return (out + 1e-4 * rng.standard_normal(t.size)).astype(np.float32)


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(10):
        return json.loads(await ws.get_message())


async def drain(
    ws: WebSocketConnection, timeout_s: float = 20.0
) -> tuple[list[Event], list[dict], dict | None]:
    """Read until the server closes: events (with seq), other messages, the summary."""
    events: list[Event] = []
    others: list[dict] = []
    summary = None
    with trio.fail_after(timeout_s):
        while True:
            try:
                message = json.loads(await ws.get_message())
            except ConnectionClosed:
                return events, others, summary
            if message["type"] == "analysis":
                events.extend(message["events"])
            elif message["type"] == "summary":
                summary = message
            else:
                others.append(message)
