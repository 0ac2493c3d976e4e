"""How a plugin author tests a stage with the fixtures legato ships (pytest picks them up)."""

import json

import numpy as np
import pytest
from trio_websocket import open_websocket_url

TONE = np.sin(2 * np.pi * 1000 * np.arange(44100) / 44100).astype(np.float32)


def test_chunk_invariance(legato_run) -> None:
    whole = legato_run("zero_crossings", TONE, 44100, hop=441)
    assert legato_run("zero_crossings", TONE, 44100, block_sizes=[1, 333, 4096], hop=441) == whole
    rates = [e["rate_hz"] for e in whole if e["kind"] == "zero_crossings"]
    assert rates and all(abs(r - 2000) <= 100 for r in rates)


@pytest.mark.legato_config(
    '[pipelines.zc.stages.zc]\ntype = "zero_crossings"\ninputs = ["audio"]\nhop = 441\n'
)
async def test_in_a_live_session(legato_server) -> None:
    async with open_websocket_url(legato_server.url) as ws:
        json.loads(await ws.get_message())  # hello
        await ws.send_message(json.dumps({"type": "start", "pipeline": "zc", "sample_rate": 44100}))
        assert json.loads(await ws.get_message())["type"] == "started"
        await ws.send_message(TONE.tobytes())
        await ws.send_message('{"type": "end"}')
        kinds = set()
        while (message := json.loads(await ws.get_message()))["type"] != "summary":
            kinds |= {e["kind"] for e in message.get("events", [])}
        assert kinds == {"zero_crossings", "summary"}
