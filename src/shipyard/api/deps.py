"""Request plumbing: who is calling (token or cookie), the route's permission guard, and
the unit of work each request runs in.

Every route declares exactly one ``Guard(action)`` (or ``Public``); a test walks the route
table and fails for a route without one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from shipyard.auth import rbac
from shipyard.errors import NotAuthenticated, PermissionDenied
from shipyard.models import BrowserSession, Project, Space, User
from shipyard.services import accounts, lookup
from shipyard.services.context import Context, Runtime, unit_of_work

SESSION_COOKIE = "shipyard_session"
CSRF_HEADER = "x-csrf-token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Call:
    """What a guarded route handler receives."""

    ctx: Context
    user: User
    space: Space | None = None
    project: Project | None = None
    session: BrowserSession | None = None

    @property
    def in_space(self) -> Space:
        assert self.space is not None, "route has no {space} parameter"
        return self.space

    @property
    def in_project(self) -> Project:
        assert self.project is not None, "route has no {project} parameter"
        return self.project


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def client_address(request: Request) -> str | None:
    runtime = runtime_of(request)
    if runtime.settings.trust_proxy_headers:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else None


def identify(ctx: Context, request: Request) -> tuple[User, BrowserSession | None]:
    """The caller, from a bearer token or a session cookie; cookie-authenticated writes
    must carry the session's CSRF token."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = accounts.token_user(ctx, header[7:].strip())
        if user is None:
            raise NotAuthenticated("invalid, expired or revoked API token")
        return user, None
    cookie = request.cookies.get(SESSION_COOKIE)
    found = accounts.session_user(ctx, cookie) if cookie else None
    if found is None:
        raise NotAuthenticated()
    session, user = found
    if request.method in UNSAFE and request.headers.get(CSRF_HEADER) != session.csrf_token:
        raise PermissionDenied("missing or wrong CSRF token")
    return user, session


class Guard:
    """Authenticate, find ``{space}`` and ``{project}`` within the caller's reach, and
    check ``action`` in the permission table before the handler runs."""

    def __init__(self, action: str) -> None:
        rbac.rule_for(action)  # fail at import time for an unknown action
        self.action = action

    def __call__(self, request: Request) -> Iterator[Call]:
        with unit_of_work(runtime_of(request), address=client_address(request)) as ctx:
            user, session = identify(ctx, request)
            ctx.who = accounts.load_principal(ctx, user)
            call = Call(ctx, user, session=session)
            params = request.path_params
            if "space" in params:
                call.space = lookup.space(ctx, params["space"])
            if "project" in params and call.space is not None:
                call.project = lookup.named(ctx, Project, call.space.id, params["project"])
            rbac.require(ctx.who, self.action, call.space.id if call.space else None,
                         call.project.id if call.project else None)
            yield call


class PublicGuard:
    """For the few routes anyone may call (logging in): a unit of work, no caller."""

    action = "public"

    def __call__(self, request: Request) -> Iterator[Context]:
        with unit_of_work(runtime_of(request), address=client_address(request)) as ctx:
            yield ctx


def guard(action: str) -> type[Call]:
    """``call: guard("server.manage")`` in a handler's signature."""
    return Annotated[Call, Depends(Guard(action), scope="function")]  # type: ignore[return-value]


Public = Annotated[Context, Depends(PublicGuard(), scope="function")]
