"""Smoke test of bench/load.py: its --quick run streams through a real `legato serve` and a
real echo server and prints one JSON report; and its hand-rolled WebSocket framing agrees with
wsproto, the implementation both servers use. Speed itself is not tested here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.frame_protocol import CloseReason

BENCH = Path(__file__).resolve().parent.parent / "bench"
SECTIONS = {
    "config",
    "machine",
    "legato",
    "echo",
    "throughput",
    "targets",
    "targets_met",
    "elapsed_s",
}


@pytest.fixture(scope="module")
def load():
    sys.path.insert(0, str(BENCH))
    try:
        import load as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_quick_run_reports_every_section_and_drops_nothing() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "load.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout must be one JSON document
    assert set(report) == SECTIONS
    ours, echo = report["legato"]["2"], report["echo"]["2"]
    assert ours["sessions"] == 2 and ours["summaries"] == 2
    assert ours["client_errors"] == {} and echo["client_errors"] == {}
    assert ours["frames_dropped"] == 0
    expected = ours["frames_expected"]
    assert expected > 0
    assert ours["frames_sent"] == ours["frames_received"] == ours["frames_analysed"] == expected
    assert ours["frames_confirmed"] == expected  # every frame's latency was measured
    assert ours["events_received"] > 0
    assert echo["frames_sent"] == echo["frames_confirmed"] == expected
    for run in (ours, echo):
        assert run["latency_ms"]["p50"] > 0
        assert run["server"]["rss_peak_mb"] >= run["server"]["rss_idle_mb"] > 0
    assert "ceiling" not in report
    assert report["machine"]["cores"] >= 1
    targets = report["targets_met"]
    assert targets and all(v is None or isinstance(v, bool) for v in targets.values())


@pytest.mark.parametrize("size", [0, 5, 125, 126, 2048, 65535, 65536, 70000])
def test_client_frames_decode_in_wsproto(load, size: int) -> None:
    server = Connection(ConnectionType.SERVER)
    payload = bytes(i * 7 % 251 for i in range(size))
    server.receive_data(load.ws_frame(2, payload) + load.ws_frame(1, b'{"type":"end"}'))
    events = list(server.events())
    assert [type(e) for e in events] == [BytesMessage, TextMessage]
    assert bytes(events[0].data) == payload
    assert events[1].data == '{"type":"end"}'


def test_server_frames_parse_in_the_client_however_they_arrive(load) -> None:
    server = Connection(ConnectionType.SERVER)
    big = bytes(range(256)) * 300
    wire_bytes = (
        server.send(TextMessage(data='{"type":"hello"}'))
        + server.send(BytesMessage(data=big))
        + server.send(TextMessage(data="frag", message_finished=False))
        + server.send(TextMessage(data="mented", message_finished=True))
        + server.send(TextMessage(data="é" * 100))
    )
    wire = load.Wire(None)
    received: list[str | bytes] = []
    for start in range(0, len(wire_bytes), 997):  # split mid-header and mid-payload
        wire.buffer += wire_bytes[start : start + 997]
        received += wire._parse()
    assert received == ['{"type":"hello"}', big, "fragmented", "é" * 100]
    assert not wire.closed
    wire.buffer += server.send(CloseConnection(code=CloseReason.NORMAL_CLOSURE))
    assert wire._parse() == [] and wire.closed
