"""The protocol under attack: hypothesis drives random interleavings of every client message
(valid, mistyped, out of order), garbage text and binary, random WebSocket frames and
requests, and abrupt disconnects against one `legato serve` process, while a healthy session
streams a file in real time through `legato stream`. The healthy session's events must equal
`legato run`'s, the server must answer every new connection after each attack, and its
memory must stay bounded."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live import RATE, legato_serve, phrase
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from legato.protocol import CLIENT_MESSAGES
from legato.server.auth import issue_token

DEFAULT_CONFIG = resources.files("legato.config").joinpath("default.toml")
PLAN_LIMIT_S = 5.0
"""Longest one attacking connection runs: a playback client that never reads has its own sends
stall once the server's frames fill the socket (the server keeps serving everyone else)."""
EXAMPLES = int(os.environ.get("LEGATO_FUZZ_EXAMPLES", "60"))
"""Attacks per run (LEGATO_FUZZ_EXAMPLES=500 for a longer hunt); the healthy session streams
for as long as they take."""

FIELDS = [
    "pipeline",
    "sample_rate",
    "format",
    "channels",
    "track",
    "user",
    "piece",
    "genre",
    "target_tempo",
    "token",
    "session_id",
    "resume_token",
    "last_seq",
    "access_token",
    "query",
    "id",
    "days",
    "limit",
    "after_seq",
    "period",
    "frames",
    "frame",
    "data",
]
"""Every field a client message can carry (and the fuzzer sends to every type)."""

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["analyze", "playback", "f32le", "s16le", "../etc/passwd", "stats"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from([*CLIENT_MESSAGES, "nope", ""])},
    optional={name: json_values for name in FIELDS},
)
valid_start = st.fixed_dictionaries(
    {
        "type": st.just("start"),
        "pipeline": st.sampled_from(["analyze", "playback"]),
        "sample_rate": st.sampled_from([8000, 44100, 48000]),
    },
    optional={
        "format": st.sampled_from(["f32le", "s16le"]),
        "channels": st.integers(1, 3),
        "user": st.sampled_from(["ana", "bo"]),
        "track": st.sampled_from(["tune.wav", "../tune.wav", "/etc/passwd", "a/../../b", "%2e"]),
    },
)
valid_playback = st.fixed_dictionaries(
    {
        "type": st.just("start"),
        "pipeline": st.just("playback"),
        "track": st.sampled_from(["tune.wav", "./tune.wav", "../tune.wav", "tune.wav/", "x.wav"]),
    },
    optional={"format": st.sampled_from(["f32le", "s16le", "u8"])},
)
valid_history = st.fixed_dictionaries(
    {"type": st.just("history"), "query": st.sampled_from(["stats", "sessions", "session"])},
    optional={
        "session_id": st.text(max_size=40),
        "user": st.sampled_from(["ana", "bo", "healthy"]),
        "after_seq": st.integers(0, 100),
    },
)
actions = st.one_of(
    st.tuples(st.just("text"), messages.map(json.dumps)),
    st.tuples(st.just("text"), valid_start.map(json.dumps)),
    st.tuples(st.just("text"), valid_history.map(json.dumps)),
    st.tuples(st.just("text"), valid_playback.map(json.dumps)),
    st.tuples(
        st.just("text"),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["credit", "seek"])},
            optional={"frames": st.integers(-5, 10**6), "frame": st.integers(-5, 10**7)},
        ).map(json.dumps),
    ),
    st.tuples(st.just("text"), st.text(max_size=200)),
    st.tuples(st.just("binary"), st.binary(max_size=4096)),
    st.tuples(st.just("audio"), st.integers(0, 4096)),
    st.tuples(st.just("end"), st.none()),
    st.tuples(st.just("drop"), st.none()),
)
connection_plans = st.tuples(
    st.sampled_from([None, "ana", "bo", "admin"]),  # whose token the upgrade carries, if any
    st.lists(actions, min_size=1, max_size=12),
)
raw_plans = st.tuples(st.booleans(), st.binary(max_size=600))


async def play(url: str, plan: list[tuple[str, Any]], token: str | None) -> None:
    """One connection doing ``plan``; whatever the server answers or however it closes."""
    headers = [] if token is None else [("Authorization", f"Bearer {token}")]
    with trio.move_on_after(PLAN_LIMIT_S):  # a client that stops reading may stall its sends
        await _play(url, plan, headers)


async def _play(url: str, plan: list[tuple[str, Any]], headers: list[tuple[str, str]]) -> None:
    try:
        async with open_websocket_url(
            url, extra_headers=headers, connect_timeout=10, disconnect_timeout=2
        ) as ws:
            for kind, value in plan:
                if kind == "text" or kind == "binary":
                    await ws.send_message(value)
                elif kind == "audio":
                    await ws.send_message(phrase(0.1)[: value // 4 * 4].tobytes())
                elif kind == "end":
                    await ws.send_message('{"type": "end"}')
                else:  # drop: leave without a close handshake
                    ws._stream.socket.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    await ws._stream.aclose()
                    return
                with trio.move_on_after(0.01):
                    await ws.get_message()
    except (ConnectionClosed, HandshakeError, trio.BrokenResourceError, OSError):
        pass


def raw_attack(port: int, upgrade: bool, garbage: bytes) -> None:
    """A TCP client sending ``garbage`` as its request, or as frames after a real upgrade."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if upgrade:
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


async def answers(url: str) -> bool:
    with trio.fail_after(10):
        async with open_websocket_url(url) as ws:
            return json.loads(await ws.get_message())["type"] == "hello"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
@pytest.mark.parametrize(
    ("secured", "workers"),
    [(False, 1), (True, 1), (True, 2)],
    ids=["open", "auth-and-library", "auth-and-library-2-workers"],
)
def test_attacks_leave_a_healthy_session_and_the_server_intact(
    tmp_path: Path, secured: bool, workers: int
) -> None:
    """``secured``: tokens required (attackers hold their own valid ones, or none) and a
    library to play from (and to escape from). With 2 workers the attacks go through the
    supervisor's hand-over (the memory bound is then the supervisor's)."""
    take = tmp_path / "take.wav"
    sf.write(take, phrase(max(12.0, EXAMPLES * 0.12)), RATE, subtype="FLOAT")
    legato = [sys.executable, "-m", "legato.cli"]
    expected = subprocess.run(
        [*legato, "run", str(take)], capture_output=True, text=True, check=True
    ).stdout
    pids: list[int] = []
    db = f"sqlite:///{tmp_path / 'legato.db'}"
    config = tmp_path / "legato.toml"  # the built-in pipelines; abandoned sessions end soon
    config.write_text(DEFAULT_CONFIG.read_text() + "\n[server]\nresume_grace_s = 1.0\n")
    served = ["--workers", str(workers), "--db", db, "--config", str(config)]
    tokens: dict[str | None, str | None] = dict.fromkeys([None, "ana", "bo", "admin", "healthy"])
    if secured:
        secret = tmp_path / "secret"
        subprocess.run([*legato, "token", "secret", str(secret)], check=True, capture_output=True)
        key = secret.read_bytes().strip()
        for user in ("ana", "bo", "healthy"):
            tokens[user] = issue_token(key, user)
        tokens["admin"] = issue_token(key, "root", ["admin"])
        library = tmp_path / "library"
        library.mkdir()
        sf.write(library / "tune.wav", phrase(1.0), RATE, subtype="PCM_16")
        served += ["--auth-secret-file", str(secret), "--library", str(library)]
    with legato_serve(tmp_path, *served, pids=pids) as port:
        url = f"ws://127.0.0.1:{port}/"
        pid = pids[0]
        healthy = subprocess.Popen(
            [*legato, "stream", "--url", url, "--realtime", str(take)]
            + (["--token", tokens["healthy"]] if secured else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        trio.run(answers, url)
        before = rss_mb(pid)
        started = time.monotonic()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(connection_plans, min_size=1, max_size=3), raw_plans)
        def attack(
            plans: list[tuple[str | None, list[tuple[str, Any]]]], raw: tuple[bool, bytes]
        ) -> None:
            async def main() -> None:
                async with trio.open_nursery() as nursery:
                    for user, plan in plans:
                        nursery.start_soon(play, url, plan, tokens[user])
                    nursery.start_soon(trio.to_thread.run_sync, raw_attack, port, *raw)
                assert await answers(url), "the server stopped answering"

            trio.run(main)

        attack()
        out, err = healthy.communicate(timeout=60)
        time.sleep(2.0)  # the attackers' sessions past their grace period
        after = rss_mb(pid)
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log and "internal" not in log, log[-4000:]
    assert healthy.returncode == 0, err[-2000:]
    assert out == expected, "the healthy session's events differ from legato run"
    assert after - before < 48, f"RSS grew from {before:.0f} MB to {after:.0f} MB"
    assert time.monotonic() - started < 120 + EXAMPLES * 0.2
