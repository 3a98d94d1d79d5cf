"""The outgoing URL guard. A notification URL is typed in by a space's MASTER; it must
not become a way to reach the services around the Shipyard server (SSRF).

A URL is checked by resolving its host and refusing every address that is not globally
routable (loopback, private, link-local, shared, reserved, multicast, unspecified, and
IPv4 addresses hidden in IPv6), unless the admin setting ``allow_private_webhook_urls``
allows them. The caller then connects to the address that was checked, never resolving
again: a second DNS answer cannot switch the connection to an internal address (DNS
rebinding).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from shipyard.errors import InvalidInput

Resolver = Callable[[str, int], list[str]]
MAX_URL = 2000
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class URLRefused(InvalidInput):
    """The URL may not be used for outgoing requests."""

    code = "url_refused"


@dataclass(frozen=True)
class Destination:
    """A checked URL: connect to ``address``, speak to ``host`` (Host header, TLS SNI and
    certificate name)."""

    url: str
    scheme: str
    host: str
    port: int
    address: str


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise URLRefused(f"cannot resolve {host!r}: {exc}", field="url") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: str) -> bool:
    """Whether ``address`` is a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public(str(embedded)):
            return False
    return ip.is_global and not ip.is_multicast


def _split(url: str) -> tuple[str, str, int]:
    if not isinstance(url, str) or not url or len(url) > MAX_URL or _CONTROL.search(url):
        raise URLRefused("url must be an http(s) URL without spaces, at most "
                         f"{MAX_URL} characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise URLRefused(f"url is not valid: {exc}", field="url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise URLRefused("url must start with https:// or http:// and name a host",
                         field="url")
    if parts.username is not None or parts.password is not None:
        raise URLRefused("url must not carry a user name or password", field="url")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _refuse_private(host: str, address: str) -> None:
    shown = host if host == address else f"{host} ({address})"
    raise URLRefused(f"{shown} is a loopback, private, link-local or reserved address; "
                     "outgoing requests may not go there (an admin can allow it with "
                     "SHIPYARD_ALLOW_PRIVATE_WEBHOOK_URLS)", field="url")


def precheck(url: str, *, allow_private: bool) -> str:
    """The checks that need no DNS, for when a URL is saved: shape, scheme, and literal
    or obviously local hosts. Names are resolved and checked again at each send."""
    _, host, _ = _split(url)
    if not allow_private:
        literal = _literal(host)
        if literal is not None and not is_public(literal):
            _refuse_private(host, literal)
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            _refuse_private(host, "127.0.0.1")
    return url


def check(url: str, *, allow_private: bool,
          resolver: Resolver = system_resolver) -> Destination:
    """Resolve ``url``'s host once and check every address it has; the destination to
    connect to, or URLRefused."""
    scheme, host, port = _split(url)
    literal = _literal(host)
    addresses = [literal] if literal is not None else resolver(host, port)
    if not addresses:
        raise URLRefused(f"{host!r} has no address", field="url")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                _refuse_private(host, address)
    return Destination(url=url, scheme=scheme, host=host, port=port, address=addresses[0])


def display_host(url: str) -> str:
    """What may be shown of a secret URL: its host."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""
