"""A thin client for the REST API, and where the CLI keeps its login.

The server and token come from ``SHIPYARD_URL`` / ``SHIPYARD_TOKEN`` when set, else from
the file ``shipyard login`` writes: ``$SHIPYARD_CLI_CONFIG``, or
``$XDG_CONFIG_HOME/shipyard/cli.json`` (default ``~/.config/shipyard/cli.json``), mode 0600.

Error responses (``{code, message, field}``) are mapped back into the one error tree
(``InvalidInput``, ``NotFound``, ``PermissionDenied``...) so commands handle server-side
and client-side errors alike; a server that cannot be reached is a plain ``ShipyardError``.

The test seam: every ``ApiClient`` the commands build gets its HTTP client from
``make_http(url)``. Tests replace it (``monkeypatch.setattr(client, "make_http", ...)``)
with anything that has httpx's ``request(method, url, *, json, params, headers)`` and
resolves relative URLs, such as the FastAPI ``TestClient`` of the real app.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from shipyard import __version__
from shipyard.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ShipyardError,
    StateConflict,
)

API_PREFIX = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8080"
_BY_CODE: dict[str, type[ShipyardError]] = {
    cls.code: cls for cls in (NotAuthenticated, PermissionDenied, NotFound, Conflict,
                              AlreadyExists, StateConflict, PayloadTooLarge)}


class Http(Protocol):
    """What ``ApiClient`` needs from an HTTP client (``httpx.Client`` has it)."""

    def request(self, method: str, url: str, *, json: Any = None, params: Any = None,
                headers: Any = None) -> httpx.Response: ...


def make_http(url: str) -> Http:
    """The HTTP client for a server URL. Tests replace this function."""
    return httpx.Client(base_url=url, timeout=30.0,
                        headers={"User-Agent": f"shipyard-cli/{__version__}"})


def path(template: str, *parts: object) -> str:
    """``path("/spaces/{}/tasks/{}", "acme", 3)``: each part quoted as one path segment."""
    return template.format(*(quote(str(p), safe="") for p in parts))


class ApiClient:
    """Calls ``/api/v1`` on one server as one user; returns decoded JSON or raises."""

    def __init__(self, url: str, token: str | None, http: Http | None = None) -> None:
        self.url = url
        self.token = token
        self.http = http if http is not None else make_http(url)

    def request(self, method: str, route: str, *, json: Any = None,
                params: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(method, API_PREFIX + route, json=json,
                                         params=query or None, headers=headers)
        except httpx.TransportError as exc:
            raise ShipyardError(f"cannot reach the Shipyard server at {self.url}: "
                                f"{exc or type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ShipyardError(f"{self.url} did not answer like a Shipyard server "
                                f"(HTTP {response.status_code}, not JSON)") from exc

    def get(self, route: str, **params: Any) -> Any:
        return self.request("GET", route, params=params)

    def post(self, route: str, body: Any = None) -> Any:
        return self.request("POST", route, json=body if body is not None else {})

    def patch(self, route: str, body: Any) -> Any:
        return self.request("PATCH", route, json=body)

    def delete(self, route: str) -> Any:
        return self.request("DELETE", route)

    def get_all(self, route: str, **params: Any) -> list[Any]:
        """Every item of a paginated list, following ``next_cursor``."""
        return list(self._pages(route, params))

    def _pages(self, route: str, params: dict[str, Any]) -> Iterator[Any]:
        cursor = None
        while True:
            page = self.get(route, **params, cursor=cursor, limit=200)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if cursor is None:
                return


def error_from(response: httpx.Response) -> ShipyardError:
    """The error tree's exception for an API error response."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    status = response.status_code
    code = str(body.get("code") or "")
    message = str(body.get("message") or f"HTTP {status} {response.reason_phrase}".strip())
    if code == "invalid" or status in (400, 422):
        return InvalidInput(message, field=body.get("field"))
    if code == "rate_limited":
        return RateLimited(message, retry_after=int(response.headers.get("retry-after", 60)))
    if code == "not_authenticated":
        return NotAuthenticated(f"{message} (log in with `shipyard login`)")
    if code in _BY_CODE:
        return _BY_CODE[code](message)
    error = ShipyardError(f"{message} (HTTP {status})")
    error.code = code or "http_error"
    error.status = status
    return error


# -- the login file ------------------------------------------------------------------------


@dataclass
class Login:
    """What ``shipyard login`` stores. ``token_id`` lets ``logout`` revoke the token."""

    url: str | None = None
    token: str | None = None
    username: str | None = None
    token_id: int | None = None


def config_path() -> Path:
    explicit = os.environ.get("SHIPYARD_CLI_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "shipyard" / "cli.json"


def load_login() -> Login:
    """The stored login, or an empty one if there is no file."""
    file = config_path()
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        return Login()
    except (OSError, ValueError) as exc:
        raise ShipyardError(f"cannot read {file}: {exc}; delete it and log in again") from exc
    known = Login.__dataclass_fields__
    return Login(**{k: v for k, v in data.items() if k in known})


def save_login(login: Login) -> Path:
    """Write the login file atomically, readable by its owner only (0600)."""
    file = config_path()
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".cli-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)  # mkstemp already does; say so explicitly
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(login), out, indent=2)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file


def forget_login() -> bool:
    """Delete the login file; whether there was one."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True


def server_url(explicit: str | None = None) -> str | None:
    """The server to talk to: explicit, else ``SHIPYARD_URL``, else the stored login."""
    return explicit or os.environ.get("SHIPYARD_URL") or load_login().url


def connect() -> ApiClient:
    """A client for the configured server and token, or NotAuthenticated saying how to
    configure one."""
    stored = load_login()
    url = os.environ.get("SHIPYARD_URL") or stored.url
    token = os.environ.get("SHIPYARD_TOKEN") or stored.token
    if not url or not token:
        raise NotAuthenticated("not logged in: run `shipyard login`, or set SHIPYARD_URL "
                               "and SHIPYARD_TOKEN")
    return ApiClient(url.rstrip("/"), token)
