"""What every page handler receives: the logged-in user, their roles, the space in the
URL, the language and time zone to render in, and (for POSTs) a checked CSRF token.

Pages call the same services as the API, which check permissions; ``can()`` only decides
which buttons to show."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from starlette.datastructures import FormData

from shipyard.api.deps import SESSION_COOKIE, client_address, runtime_of
from shipyard.auth import rbac
from shipyard.errors import NotAuthenticated, PermissionDenied
from shipyard.models import BrowserSession, DeployTask, Project, Space, TaskState, User
from shipyard.services import accounts, lookup, spaces
from shipyard.services.context import Context, unit_of_work
from shipyard.web import i18n
from shipyard.web.render import render

LANG_COOKIE = "lang"
TZ_COOKIE = "tz"
FLASH_COOKIE = "flash"
PRE_CSRF_COOKIE = "csrf_pre"


async def read_form(request: Request) -> FormData:
    """The submitted form (empty for GET); read once, shared by guard and handler."""
    if request.method == "POST":
        return await request.form()
    return FormData()


Form = Annotated[FormData, Depends(read_form)]


@dataclass
class PageCall:
    request: Request
    ctx: Context
    user: User
    session: BrowserSession
    lang: str
    tz: str | None
    space: Space | None = None
    project: Project | None = None
    flash: str | None = None
    extra_cookies: dict[str, str] = field(default_factory=dict)

    @property
    def in_space(self) -> Space:
        assert self.space is not None
        return self.space

    def can(self, action: str, project_id: int | None = None) -> bool:
        space_id = self.space.id if self.space else None
        return rbac.allowed(self.ctx.principal, action, space_id, project_id)

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        response = render(self.request, template, status=status, lang=self.lang, tz=self.tz,
                          page=self, user=self.user, space=self.space,
                          csrf=self.session.csrf_token, flash=self.flash,
                          my_spaces=spaces.list_spaces(self.ctx),
                          pending=self._pending_approvals(), can=self.can, **context)
        if self.flash:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    def next_url(self, cursor: int | None) -> str | None:
        """This page's URL with ``cursor`` set (for "older" links), or None."""
        if cursor is None:
            return None
        return str(self.request.url.include_query_params(cursor=cursor).path) + "?" + str(
            self.request.url.include_query_params(cursor=cursor).query)

    def redirect(self, url: str, flash: str | None = None) -> RedirectResponse:
        response = RedirectResponse(url, status_code=303)
        if flash:
            response.set_cookie(FLASH_COOKIE, quote(flash[:300]), httponly=True,
                                samesite="lax", path="/", max_age=60)
        return response

    def _pending_approvals(self) -> int:
        if self.space is None or not self.can("task.approve"):
            return 0
        return self.ctx.db.scalar(select(func.count()).select_from(DeployTask).where(
            DeployTask.space_id == self.space.id,
            DeployTask.state == TaskState.PENDING_APPROVAL)) or 0


def language(request: Request, user: User | None = None) -> str:
    return i18n.negotiate(request.headers.get("accept-language"),
                          request.cookies.get(LANG_COOKIE), user.locale if user else None)


class PageGuard:
    """Log-in required (else a redirect to /login); the CSRF token checked on POST; the
    ``{space}`` in the path looked up within the caller's spaces."""

    def __call__(self, request: Request, form: Form) -> Iterator[PageCall]:
        with unit_of_work(runtime_of(request), address=client_address(request)) as ctx:
            cookie = request.cookies.get(SESSION_COOKIE)
            found = accounts.session_user(ctx, cookie) if cookie else None
            if found is None:
                raise NotAuthenticated()
            session, user = found
            if request.method == "POST" and not secrets.compare_digest(
                    str(form.get("csrf", "")), session.csrf_token):
                raise PermissionDenied("the form expired or did not come from this site; "
                                       "reload the page and try again")
            ctx.who = accounts.load_principal(ctx, user)
            call = PageCall(request, ctx, user, session, language(request, user),
                            user.timezone or request.cookies.get(TZ_COOKIE),
                            flash=unquote(request.cookies.get(FLASH_COOKIE, "")) or None)
            if "space" in request.path_params:
                call.space = lookup.space(ctx, request.path_params["space"])
                if session.space_id != call.space.id:
                    session.space_id = call.space.id  # the space you look at is current
            if "project" in request.path_params and call.space is not None:
                call.project = lookup.named(ctx, Project, call.space.id,
                                            request.path_params["project"])
            yield call


Page = Annotated[PageCall, Depends(PageGuard(), scope="function")]


def error_page(request: Request, status: int, message: str) -> Response:
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={target}", status_code=303)
    return render(request, "pages/error.html", status=status, lang=language(request),
                  tz=request.cookies.get(TZ_COOKIE), status_code=status, message=message,
                  user=None, space=None, page=None, csrf="", flash=None, my_spaces=[],
                  pending=0, can=lambda *a, **k: False)
