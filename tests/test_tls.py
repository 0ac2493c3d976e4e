"""TLS on the server's port ([server] tls_cert/tls_key), with a self-signed certificate:
sessions over wss:// give the same events as `legato run`, the page comes over https://,
clients that do not speak TLS or do not trust the certificate get nowhere and leave the
server serving, and an unusable certificate is one clear error."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from live import RATE, drain, legato_serve, phrase, receive
from trio_websocket import open_websocket_url

from legato.config.pipelines import load_config
from legato.engine.runner import run_file
from legato.errors import LegatoError
from legato.testing import registry, running_server


@pytest.fixture(scope="module")
def self_signed() -> tuple[bytes, bytes]:
    """A self-signed certificate for localhost and 127.0.0.1 and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def ca(self_signed: tuple[bytes, bytes]) -> bytes:
    """What a client must trust: the self-signed certificate itself."""
    return self_signed[0]


@pytest.fixture
def certificate(self_signed: tuple[bytes, bytes], tmp_path: Path) -> dict[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(self_signed[0])
    key.write_bytes(self_signed[1])
    return {"tls_cert": str(cert), "tls_key": str(key)}


def trusting(ca: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca.decode())


async def test_a_session_over_wss_matches_an_offline_run(
    ca: bytes, certificate: dict[str, str], tmp_path: Path
) -> None:
    import soundfile as sf

    audio = phrase(1.5)
    path = tmp_path / "take.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    expected: list[dict] = []
    run_file(load_config(None, registry()).pipeline("analyze"), path, expected.append)
    async with running_server(**certificate) as server:
        url = f"wss://127.0.0.1:{server.port}/"
        async with open_websocket_url(url, ssl_context=trusting(ca)) as ws:
            assert (await receive(ws))["type"] == "hello"
            await ws.send_message(
                json.dumps({"type": "start", "pipeline": "analyze", "sample_rate": RATE})
            )
            assert (await receive(ws))["type"] == "started"
            for block in np.array_split(audio, 7):
                await ws.send_message(block.tobytes())
            await ws.send_message('{"type": "end"}')
            events, _, summary = await drain(ws)
    assert summary is not None and summary["status"] == "completed"
    got = [{k: v for k, v in e.items() if k != "seq"} for e in events]
    order = lambda e: (e["stage"], e["sample"], e["kind"])  # noqa: E731 (blocks cut elsewhere)
    assert sorted(got, key=order) == sorted(expected, key=order)


async def test_the_page_over_https_and_clients_without_tls_get_nowhere(
    ca: bytes, certificate: dict[str, str]
) -> None:
    async with running_server(**certificate) as server:
        port = server.port
        page = await trio.to_thread.run_sync(https_get, port, trusting(ca))
        assert page.startswith(b"HTTP/1.1 200") and b"legato" in page
        plain = trio.socket.socket()  # a plain ws:// upgrade to the TLS port: closed, unanswered
        await plain.connect(("127.0.0.1", port))
        await plain.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n")
        with trio.fail_after(5):
            assert await plain.recv(100) == b""
        plain.close()
        with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust it
            await trio.to_thread.run_sync(https_get, port, ssl.create_default_context())
        async with open_websocket_url(f"wss://127.0.0.1:{port}/", ssl_context=trusting(ca)) as ws:
            assert (await receive(ws))["type"] == "hello"  # still serving


def https_get(port: int, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
        return reply


def test_an_unusable_certificate_is_one_clear_error(tmp_path: Path) -> None:
    from legato.server.tls import server_context

    with pytest.raises(LegatoError, match="no such file"):
        server_context(str(tmp_path / "missing.pem"), "")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(LegatoError, match="cannot load the certificate"):
        server_context(str(junk), "")


async def test_legato_serve_with_workers_over_tls(
    ca: bytes, certificate: dict[str, str], tmp_path: Path
) -> None:
    """`legato serve --workers 2 --tls-cert --tls-key`: the supervisor hands connections over
    and each worker decrypts its own; a bad certificate stops the command with one line."""
    flags = ["--tls-cert", certificate["tls_cert"], "--tls-key", certificate["tls_key"]]
    with legato_serve(tmp_path, "--workers", "2", *flags) as port:
        for _ in range(3):
            async with open_websocket_url(
                f"wss://127.0.0.1:{port}/", ssl_context=trusting(ca)
            ) as ws:
                assert (await receive(ws))["type"] == "hello"
    assert "on wss://127.0.0.1:" in (tmp_path / "serve.log").read_text()
    failed = subprocess.run(
        [sys.executable, "-m", "legato.cli", "serve", "--tls-cert", str(tmp_path / "nope.pem")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert failed.returncode != 0 and "tls_cert: no such file" in failed.stderr
    assert "Traceback" not in failed.stderr


async def test_the_client_says_when_it_does_not_trust_the_certificate(
    certificate: dict[str, str],
) -> None:
    from legato.client import ClientError, connect

    async with running_server(**certificate) as server:
        with pytest.raises(ClientError) as failed:
            async with connect(f"wss://localhost:{server.port}/", sample_rate=RATE):
                pass
    assert "TLS certificate is not trusted" in str(failed.value)
    assert "SSL_CERT_FILE" in str(failed.value)
