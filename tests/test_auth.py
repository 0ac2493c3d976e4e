"""Trust, tested as an attack: tokens (forged, expired, missing, another user's), every history
query as an impostor, resume of someone else's session, and pages from other origins, against a
real server with a real SQLite database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import soundfile as sf
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from live import RATE, drain, history, legato_serve, phrase, receive
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from legato.config.settings import AuthSettings
from legato.server.auth import Authenticator, AuthError, issue_token
from legato.storage import open_storage
from legato.testing import registry, running_server, server_url

SECRET = b"a test key of more than thirty-two bytes, for HS256"
AUTH = Authenticator(SECRET, ["HS256"])


def token(user: str, *scopes: str, ttl: float = 600.0, secret: bytes = SECRET) -> str:
    return issue_token(secret, user, scopes, ttl)


def bearer(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {value}".encode())]


# ---- tokens on their own -------------------------------------------------------------------


def test_tokens_prove_their_user_and_scopes_and_nothing_else() -> None:
    student = AUTH.verify(token("alice"))
    assert student.user == "alice" and student.verified
    assert student.allows("practice") and student.allows("history") and not student.admin
    admin = AUTH.verify(token("root", "admin"))
    assert admin.admin and admin.allows("playback")
    listener = AUTH.verify(token("bob", "playback"))
    assert listener.allows("playback") and not listener.allows("practice")
    now = int(time.time())
    cases = {
        jwt.encode({"sub": "a", "exp": now - 100}, SECRET, "HS256"): "expired",
        token("alice", secret=b"another key, also more than thirty-two bytes"): "signature",
        jwt.encode({"sub": "a"}, SECRET, "HS256"): "'exp'",
        jwt.encode({"exp": now + 60}, SECRET, "HS256"): "'sub'",
        jwt.encode({"sub": "a", "exp": now + 60}, None, "none"): "algorithm",
        "not.a.token": "not valid",
        "": "malformed",
    }
    for bad, why in cases.items():
        with pytest.raises(AuthError, match=why):
            AUTH.verify(bad)


def hs256_by_hand(claims: dict, key: bytes) -> str:
    """An HS256 JWT made without PyJWT (which refuses a PEM key as an HMAC secret)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(signature)}"


def test_an_identity_providers_public_key_checks_es256_tokens(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "idp.pem").write_bytes(pem)
    auth = Authenticator.from_settings(AuthSettings(public_key_file="idp.pem"), tmp_path)
    assert auth is not None
    signed = jwt.encode({"sub": "carol", "exp": int(time.time()) + 60}, private, "ES256")
    assert auth.verify(signed).user == "carol"
    # the classic confusion: an HS256 token "signed" with the public key itself
    forged = hs256_by_hand({"sub": "carol", "exp": int(time.time()) + 60}, pem)
    with pytest.raises(AuthError, match="algorithm"):
        auth.verify(forged)


# ---- a server with auth on -----------------------------------------------------------------


async def started(ws: Any, **fields: Any) -> dict:
    hello = await receive(ws)
    assert hello["type"] == "hello"
    await ws.send_message(json.dumps({"type": "start", "pipeline": "analyze"} | fields))
    return await receive(ws)


async def refused_with_4003(ws: Any) -> str:
    """The error the server sends before closing 4003; fails unless it closes so."""
    message = await receive(ws)
    while message["type"] == "hello":
        message = await receive(ws)
    assert message["type"] == "error" and message["code"] == "unauthorized", message
    with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
        await ws.get_message()
    assert closed.value.reason.code == 4003
    return message["message"]


async def test_without_a_valid_token_no_session_starts() -> None:
    async with running_server(auth=AUTH) as server:
        url = server_url(server)
        async with open_websocket_url(url) as ws:  # no token anywhere
            await receive(ws)
            await ws.send_message(
                json.dumps({"type": "start", "pipeline": "analyze", "sample_rate": RATE})
            )
            assert "requires an access token" in await refused_with_4003(ws)
        expired = jwt.encode({"sub": "a", "exp": int(time.time()) - 120}, SECRET, "HS256")
        forged = token("alice", secret=b"guessed key guessed key guessed key!!")
        for bad, why in ((expired, "expired"), (forged, "signature")):
            async with open_websocket_url(url, extra_headers=bearer(bad)) as ws:
                assert why in await refused_with_4003(ws)  # before hello, before any session
        async with open_websocket_url(url) as ws:  # in start instead of the upgrade
            reply = await started(ws, sample_rate=RATE, token=forged)
            assert reply["code"] == "unauthorized"
        assert server.sessions == {}


async def test_the_token_is_the_user(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'legato.db'}"
    async with running_server(auth=AUTH, storage_url=db, spool_dir=str(tmp_path / "s")) as server:
        url = server_url(server)
        async with open_websocket_url(url, extra_headers=bearer(token("alice"))) as ws:
            reply = await started(ws, sample_rate=RATE, user="bob")  # claims to be bob
            assert reply["type"] == "error" and reply["code"] == "forbidden"
            assert reply["continues"]
            await ws.send_message(
                json.dumps({"type": "start", "pipeline": "analyze", "sample_rate": RATE})
            )
            session_id = (await receive(ws))["session_id"]
            await ws.send_message(phrase(0.5).tobytes())
            await ws.send_message('{"type": "end"}')
            await drain(ws)
        listener = token("dan", "playback")
        async with open_websocket_url(f"{url}?token={listener}") as ws:  # query parameter
            reply = await started(ws, sample_rate=RATE)
            assert reply["code"] == "forbidden" and "practice" in reply["message"]
    storage = open_storage(db, registry())
    await storage.connect()
    try:
        assert (await storage.get_session(session_id))["user"] == "alice"
    finally:
        await storage.close()


async def test_an_impostor_reads_nothing_of_another_user(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'legato.db'}"
    async with running_server(auth=AUTH, storage_url=db, spool_dir=str(tmp_path / "s")) as server:
        url = server_url(server)
        async with open_websocket_url(url, extra_headers=bearer(token("alice"))) as ws:
            hello = await receive(ws)
            await ws.send_message(
                json.dumps(
                    {"type": "start", "pipeline": "analyze", "sample_rate": RATE, "user": "alice"}
                )
            )
            alice_session = (await receive(ws))["session_id"]
            await ws.send_message(phrase(0.5).tobytes())
            with trio.fail_after(10):
                while not (await history(ws, query="sessions"))["result"]:
                    await trio.sleep(0.1)
            alice_token = hello["resume_token"]
            mallory = bearer(token("mallory"))
            async with open_websocket_url(url, extra_headers=mallory) as evil:
                await started(evil, sample_rate=RATE)
                for query in ({"query": "stats"}, {"query": "sessions"}, {"query": "progress"}):
                    reply = await history(evil, **query, user="alice")
                    assert reply["code"] == "forbidden", reply
                    own = await history(evil, **query)
                    assert "alice" not in json.dumps(own)
                stolen = await history(evil, query="session", session_id=alice_session)
                assert stolen["code"] == "unknown_session"
            # even holding alice's session id and resume token, mallory cannot take it over
            async with open_websocket_url(url, extra_headers=mallory) as evil:
                await receive(evil)
                await evil.send_message(
                    json.dumps(
                        {
                            "type": "resume",
                            "session_id": alice_session,
                            "token": alice_token,
                            "last_seq": 0,
                        }
                    )
                )
                failed = await receive(evil)
                assert failed["code"] == "resume_failed"
            admin = bearer(token("root", "admin"))
            async with open_websocket_url(url, extra_headers=admin) as ops:
                await started(ops, sample_rate=RATE)
                sessions = await history(ops, query="sessions", user="alice")
                assert [s["id"] for s in sessions["result"]] == [alice_session]
                read = await history(ops, query="session", session_id=alice_session)
                assert read["type"] == "history" and read["result"]["user"] == "alice"
            no_history = bearer(token("erin", "practice"))
            async with open_websocket_url(url, extra_headers=no_history) as ws2:
                await started(ws2, sample_rate=RATE)
                assert (await history(ws2, query="stats"))["code"] == "forbidden"
        assert server.sessions[alice_session].start.user == "alice"


# ---- origins and hosts ---------------------------------------------------------------------


async def upgrade_status(port: int, **headers: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    head = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    } | headers
    await stream.send_all(
        ("GET / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode()
    )
    reply = b""
    with trio.fail_after(5):
        while b"\r\n" not in reply and (chunk := await stream.receive_some()):
            reply += chunk
    await stream.aclose()
    return reply.split(b"\r\n", 1)[0]


async def test_other_pages_and_rebound_names_cannot_open_sessions() -> None:
    async with running_server() as server:
        port = server.port
        assert b" 101 " in await upgrade_status(port)  # a non-browser client
        assert b" 101 " in await upgrade_status(port, Origin=f"http://127.0.0.1:{port}")
        assert b" 403 " in await upgrade_status(port, Origin="https://evil.example")
        assert b" 403 " in await upgrade_status(port, Origin="null")
        rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        assert b" 403 " in await upgrade_status(port, **rebound)
        assert b" 101 " in await upgrade_status(port, Host=f"localhost:{port}")
    app = "https://practice.example.org"
    async with running_server(allowed_origins=(app,), hosts=("legato.example.org",)) as server:
        port = server.port
        named = {"Host": "legato.example.org"}
        assert b" 101 " in await upgrade_status(server.port, Origin=app, **named)
        assert b" 403 " in await upgrade_status(port, Origin="https://evil.example", **named)
        assert b" 403 " in await upgrade_status(port, Origin=app)  # Host 127.0.0.1: not listed
    async with running_server() as server:  # what a client library sees: a reason
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(
                server_url(server), extra_headers=[(b"Origin", b"https://evil.example")]
            ):
                pass
        assert rejected.value.status_code == 403 and b"allowed_origins" in rejected.value.body


# ---- the operator's commands ---------------------------------------------------------------


def test_operator_issues_tokens_and_serves_with_them(tmp_path: Path) -> None:
    legato = [sys.executable, "-m", "legato.cli"]
    key = tmp_path / "legato.key"
    subprocess.run([*legato, "token", "secret", str(key)], check=True, capture_output=True)
    assert key.stat().st_mode & 0o077 == 0, "the key is readable by its owner only"
    issued = subprocess.run(
        [*legato, "token", "issue", "--secret-file", str(key), "--user", "ana", "--ttl", "600"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    audio = tmp_path / "a.wav"
    sf.write(audio, phrase(1.0), RATE, subtype="FLOAT")
    with legato_serve(tmp_path, "--auth-secret-file", str(key), "--workers", "1") as port:
        url = f"ws://127.0.0.1:{port}/"
        stream = [*legato, "stream", str(audio), "--url", url]
        ok = subprocess.run([*stream, "--token", issued], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stderr.strip().splitlines()[-1])["status"] == "completed"
        denied = subprocess.run(stream, capture_output=True, text=True)
        assert denied.returncode != 0 and "access token" in denied.stderr
