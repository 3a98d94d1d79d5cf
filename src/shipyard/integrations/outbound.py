"""HTTP POST for notifications: to the address the URL guard checked (never resolved a
second time), within one deadline for the whole exchange, without following redirects or
reading more of the answer than an excerpt."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore

from shipyard import __version__
from shipyard.errors import ShipyardError
from shipyard.integrations import urls

EXCERPT = 1000
USER_AGENT = f"Shipyard/{__version__} (+notifications)"


class SendFailed(ShipyardError):
    """Delivering a notification failed."""

    code = "send_failed"

    def __init__(self, message: str, *, permanent: bool = False, http_status: int | None = None,
                 response: str = "") -> None:
        super().__init__(message, http_status=http_status)
        self.permanent = permanent
        self.http_status = http_status
        self.response = response


@dataclass(frozen=True)
class Answer:
    """What the receiver said: its status and the start of its body."""

    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Outbound:
    """How this server sends: the limits and trust the settings give."""

    timeout: float
    allow_private: bool
    ca_file: Path | None = None
    resolver: urls.Resolver = urls.system_resolver

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST ``body`` to ``url``; the answer, or SendFailed (permanent when the URL
        itself is refused)."""
        deadline = time.monotonic() + self.timeout
        try:
            dest = urls.check(url, allow_private=self.allow_private,
                              resolver=_bounded(self.resolver, self.timeout))
        except urls.URLRefused as exc:
            raise SendFailed(f"refused: {exc.message}", permanent=True) from exc
        pairs = [("User-Agent", USER_AGENT), *headers.items()]
        timeouts = {k: self.timeout for k in ("connect", "read", "write", "pool")}
        try:
            tls = self._tls() if dest.scheme == "https" else None
            with httpcore.ConnectionPool(ssl_context=tls,
                                         network_backend=_PinnedBackend(dest.address, deadline),
                                         max_connections=1) as pool, \
                    pool.stream("POST", url, headers=pairs, content=body,
                                extensions={"timeout": timeouts}) as response:
                data = _excerpt(response.iter_stream())  # type: ignore[arg-type]
                return Answer(response.status, data.decode("utf-8", "replace"))
        except httpcore.TimeoutException as exc:
            raise SendFailed(f"timed out after {self.timeout:g}s") from exc
        except httpcore.ConnectError as exc:
            raise SendFailed(f"cannot connect to {dest.host}: {exc or 'refused'}") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError, ssl.SSLError, OSError) as exc:
            raise SendFailed(f"{type(exc).__name__}: {exc}") from exc

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=str(self.ca_file))
        return context


def _bounded(resolver: urls.Resolver, seconds: float) -> urls.Resolver:
    """``resolver`` held to a deadline: the system resolver has none of its own."""

    def resolve(host: str, port: int) -> list[str]:
        outcome: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append(resolver(host, port))
            except Exception as exc:  # handed to the caller below
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name="shipyard-resolve", daemon=True).start()
        if not done.wait(seconds):
            raise SendFailed(f"resolving {host} timed out after {seconds:g}s")
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return list(outcome[0])

    return resolve


def _excerpt(chunks: Iterable[bytes]) -> bytes:
    data = b""
    for chunk in chunks:
        data += chunk
        if len(data) >= EXCERPT:
            break
    return data[:EXCERPT]


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the checked address whatever host the URL names (TLS still verifies
    the URL's host name), and holds every read and write to one deadline."""

    def __init__(self, address: str, deadline: float) -> None:
        self.address = address
        self.deadline = deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        stream = super().connect_tcp(self.address, port, _left(self.deadline, timeout),
                                     local_address, socket_options)
        return _DeadlineStream(stream, self.deadline)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self.inner = inner
        self.deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _left(self.deadline, timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _left(self.deadline, timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self.inner.start_tls(ssl_context, server_hostname,
                                     _left(self.deadline, timeout))
        return _DeadlineStream(inner, self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


def _left(deadline: float, timeout: float | None) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the delivery deadline passed")
    return left if timeout is None else min(timeout, left)
