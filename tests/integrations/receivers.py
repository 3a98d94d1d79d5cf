"""Real receivers on loopback for notification tests: an HTTP server whose answer a test
chooses (and that records every request), and an SMTP server (aiosmtpd) with plain,
STARTTLS or implicit TLS, using a self-signed certificate made here."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, Any]  # (status, body: dict/list -> JSON, str/bytes -> as is)
Handler = Callable[[Received], Answer]


class Receiver:
    """An HTTP server on 127.0.0.1 answering with ``handler`` (default 200 ``ok``).
    ``hang()`` makes it hold every request until the test ends."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler: Handler = handler or (lambda r: (200, "ok"))
        self.requests: list[Received] = []
        self.released = threading.Event()
        self.hanging = False
        self.arrived = threading.Condition()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                received = Received(
                    method="POST", path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length))
                with outer.arrived:
                    outer.requests.append(received)
                    outer.arrived.notify_all()
                if outer.hanging:
                    outer.released.wait(30)
                    return
                status, body = outer.handler(received)
                data = (json.dumps(body).encode() if isinstance(body, dict | list)
                        else body.encode() if isinstance(body, str) else body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json"
                                 if isinstance(body, dict | list) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hang(self) -> None:
        self.hanging = True

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
        assert len(self.requests) >= count, f"{len(self.requests)} of {count} requests came"
        return self.requests

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key: (cert, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: Message
    tls: bool

    @property
    def text(self) -> str:
        payload = self.message.get_payload(decode=True)
        return payload.decode() if isinstance(payload, bytes) else str(payload)


@dataclass
class Mailbox:
    """An SMTP server on 127.0.0.1 that keeps what it is sent."""

    security: str  # none | starttls | tls
    port: int
    mails: list[Mail] = field(default_factory=list)
    controller: Any = None
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 10) -> list[Mail]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.mails) >= count, timeout)
        assert len(self.mails) >= count, f"{len(self.mails)} of {count} mails came"
        return self.mails


def start_mailbox(security: str, cert: tuple[Path, Path] | None) -> Mailbox:
    import ssl

    from aiosmtpd.controller import Controller

    box = Mailbox(security=security, port=free_port())

    class _Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            mail = Mail(envelope.mail_from, list(envelope.rcpt_tos),
                        message_from_bytes(envelope.content),
                        tls=server.transport.get_extra_info("ssl_object") is not None)
            with box.arrived:
                box.mails.append(mail)
                box.arrived.notify_all()
            return "250 Message accepted for delivery"

    kwargs: dict[str, Any] = {}
    if security != "none":
        assert cert is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert[0]), str(cert[1]))
        if security == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        else:
            kwargs.update(ssl_context=context)
    box.controller = Controller(_Handler(), hostname="127.0.0.1", port=box.port, **kwargs)
    box.controller.start()
    return box
