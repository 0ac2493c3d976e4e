"""The browser page: served on the WebSocket port to plain HTTP requests, without getting in the
way of sessions; and its protocol client (host/server/web/legato.js) driven by Node's standard
WebSocket against a real server: playback with credit and seek, a refused track, a live
session."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import trio
from trio_websocket import open_websocket_url

from legato.testing import running_server, server_url

WEB = Path(__file__).resolve().parent.parent / "host" / "server" / "web"


async def http(port: int, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send raw bytes, read the reply until the server closes."""
    with trio.fail_after(timeout_s):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            reply = b""
            while chunk := await stream.receive_some(65536):
                reply += chunk
            return reply


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


async def test_the_page_and_its_script_are_served_beside_the_protocol() -> None:
    async with running_server() as server:
        assert server.port is not None
        page = await http(server.port, get("/"))
        head, _, body = page.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Content-Type: text/html" in head
        assert body == (WEB / "index.html").read_bytes()
        script = await http(server.port, get("/legato.js?v=1"))
        assert b"text/javascript" in script and script.endswith((WEB / "legato.js").read_bytes())
        assert (await http(server.port, get("/", "HEAD"))).endswith(b"\r\n\r\n")
        assert (await http(server.port, get("/", "POST"))).startswith(b"HTTP/1.1 405")
        assert (await http(server.port, get("/../etc/passwd"))).startswith(b"HTTP/1.1 404")
        assert (await http(server.port, b"hello\r\n\r\n")).startswith(b"HTTP/1.1 400")
        huge = b"GET / HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n"
        assert (await http(server.port, huge)).startswith(b"HTTP/1.1 431")
        # a client that connects and says nothing holds only its own connection
        silent = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with silent, open_websocket_url(server_url(server)) as ws:
            assert json.loads(await ws.get_message())["type"] == "hello"
            assert (await http(server.port, get("/"))).startswith(b"HTTP/1.1 200")


def test_every_element_the_page_script_uses_exists() -> None:
    html = (WEB / "index.html").read_text()
    ids = set(re.findall(r'id="([^"]+)"', html))
    used = set(re.findall(r'\$\("([^"]+)"\)', html))
    assert used and used <= ids, used - ids
    assert 'from "./legato.js"' in html


def node_with_websocket() -> list[str] | None:
    """The node command line that has a standard WebSocket (Node 22+, or 20 with the flag)."""
    node = shutil.which("node")
    if node is None:
        return None
    for command in ([node], [node, "--experimental-websocket"]):
        done = subprocess.run(
            [*command, "-e", "process.stdout.write(typeof WebSocket)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.stdout == "function":
            return command
    return None


async def test_the_page_client_plays_seeks_and_analyses_against_a_real_server(
    tmp_path: Path,
) -> None:
    node = node_with_websocket()
    if node is None:
        pytest.skip("needs Node.js with a standard WebSocket (22+, or 20 with a flag)")
    library = tmp_path / "music"
    library.mkdir()
    rate = 44100
    t = np.arange(3 * rate) / rate
    tone = np.clip(2.5 * np.sin(2 * np.pi * 220 * t), -1, 1) * 0.95  # loud and square-ish
    sf.write(library / "loud.wav", np.stack([tone, tone], 1).astype(np.float32), rate, "FLOAT")
    async with running_server(library=library) as server:
        done = await trio.run_process(
            [*node, str(Path(__file__).parent / "web" / "client.mjs"), server_url(server)]
            + ["loud.wav"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["hello"]["playback"] == ["playback"]
    assert report["track"]["class"] == "compressed_loud"
    frames = 3 * rate
    assert report["first_pass"]["frames"] == frames
    assert report["second_pass"] == {
        "first_frame": frames // 2,
        "frames": frames - frames // 2,
        "position": frames,
    }
    assert report["overdrawn"] == 0, "the server sent more than the page granted"
    assert report["notices"] == ["bad_seek"]
    assert report["events"][0] == "mastering"
    assert report["playback_summary"]["status"] == "completed"
    assert report["playback_closed"]["code"] == 1000
    assert report["refused"] == "track_refused"
    assert report["live"] == {"notes": ["A4"], "samples": rate, "status": "completed"}
    resumed = report["resumed"]
    assert resumed["resumes"] == 2 and resumed["status"] == "completed"
    assert resumed["events"] > 100 and resumed["seqs_in_order"], resumed
    assert resumed["events_equal"] and resumed["practice_equal"], resumed
