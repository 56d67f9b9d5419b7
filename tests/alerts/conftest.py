"""Real local peers for the alert channels: an HTTP receiver (stdlib http.server in a thread) and an SMTP
server (aiosmtpd), both on 127.0.0.1 and a free port. Nothing of ours is faked."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from integration_assets.alerts.delivery import DeliveryRetry

# Retries with real backoff, scaled down so a test waits milliseconds, not seconds.
FAST_RETRY = DeliveryRetry(attempts=3, initial_wait=0.01, max_wait=0.05, jitter=0.01, max_elapsed=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    return free_port()


@pytest.fixture
def fast_retry() -> DeliveryRetry:
    return FAST_RETRY


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Records every POST; answers with the queued responses, then with ``default_status``."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    responses: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    default_status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.responses.append((status, headers, body))

    def next_response(self) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            return self.responses.pop(0) if self.responses else (self.default_status, {}, b"ok")


def _start_receiver() -> tuple[HttpReceiver, ThreadingHTTPServer, threading.Thread]:
    receiver = HttpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.requests.append(
                    Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            status, headers, payload = receiver.next_response()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return receiver, server, thread


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver, server, thread = _start_receiver()
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def slack_receiver() -> Iterator[HttpReceiver]:
    """A second receiver standing in for hooks.slack.com (Slack is the external SaaS here)."""
    receiver, server, thread = _start_receiver()
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join(5)


@dataclass
class SmtpSink:
    host: str
    port: int
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    @property
    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(e.original_content or b"", policy=email.policy.default)  # type: ignore[misc]
            for e in self.envelopes
        ]


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    sink = SmtpSink("127.0.0.1", free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    controller.stop()


@dataclass
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 (cryptography is in requirements.lock)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


class Authenticator:
    def __init__(self, login: str, password: str) -> None:
        self.login, self.password = login.encode(), password.encode()
        self.seen: list[str] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.login,
            self.password,
        )
        self.seen.append(mechanism)
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def starttls_smtp_server(tls_files: TlsFiles) -> Iterator[tuple[SmtpSink, Authenticator]]:
    """An SMTP server that requires STARTTLS before AUTH and mail (like a real submission port)."""
    sink = SmtpSink("127.0.0.1", free_port())
    auth = Authenticator("alerts", "s3cret-pass")
    controller = Controller(
        sink,
        hostname=sink.host,
        port=sink.port,
        tls_context=tls_files.server_context(),
        require_starttls=True,
        authenticator=auth,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    yield sink, auth
    controller.stop()
