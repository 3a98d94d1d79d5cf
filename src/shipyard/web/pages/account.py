"""Logging in and out, switching language and space, the dashboard, API tokens."""

from __future__ import annotations

import secrets
from urllib.parse import urlparse

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from shipyard.api.deps import SESSION_COOKIE, client_address, runtime_of
from shipyard.errors import ShipyardError
from shipyard.services import accounts, spaces, tasks
from shipyard.services.accounts import Credentials, TokenSpec
from shipyard.services.context import unit_of_work
from shipyard.web import forms
from shipyard.web.i18n import LOCALES
from shipyard.web.render import render
from shipyard.web.session import (
    LANG_COOKIE,
    PRE_CSRF_COOKIE,
    TZ_COOKIE,
    Form,
    Page,
    language,
)

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") \
            or urlparse(target).netloc:
        return "/"
    return target


def _login_page(request: Request, *, error: str | None = None, username: str = "",
                status: int = 200) -> Response:
    token = request.cookies.get(PRE_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "pages/login.html", status=status, lang=language(request),
                      tz=request.cookies.get(TZ_COOKIE), error=error, username=username,
                      csrf=token, next=_safe_next(request.query_params.get("next")),
                      user=None, space=None, page=None, flash=None, my_spaces=[], pending=0,
                      can=lambda *a, **k: False)
    response.set_cookie(PRE_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login")
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
def login(request: Request, form: Form) -> Response:
    username = forms.text(form, "username")
    # Login CSRF: the form must echo the token set with the form (double submit).
    if not secrets.compare_digest(forms.text(form, "csrf"),
                                  request.cookies.get(PRE_CSRF_COOKIE, "-")):
        return _login_page(request, error="The form expired; please try again.",
                           username=username, status=403)
    try:
        with unit_of_work(runtime_of(request), address=client_address(request)) as ctx:
            result = accounts.authenticate(
                ctx, Credentials(username=username or "-", password=forms.text(form,
                                                                              "password") or "-"))
            new = accounts.open_session(ctx, result)
    except ShipyardError as exc:
        return _login_page(request, error=exc.message, username=username, status=exc.status)
    settings = runtime_of(request).settings
    response = RedirectResponse(_safe_next(forms.text(form, "next")), status_code=303)
    response.set_cookie(SESSION_COOKIE, new.cookie, httponly=True, samesite="lax",
                        secure=settings.cookie_secure, max_age=settings.session_hours * 3600,
                        path="/")
    response.delete_cookie(PRE_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(page: Page) -> Response:
    accounts.end_session(page.ctx, page.session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
def switch_language(lang: str, request: Request) -> Response:
    response = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    if lang in LOCALES:
        response.set_cookie(LANG_COOKIE, lang, samesite="lax", path="/",
                            max_age=365 * 24 * 3600)
    return response


@router.get("/")
def home(page: Page) -> Response:
    mine = spaces.list_spaces(page.ctx)
    if not mine:
        return page.render("pages/no_space.html")
    current = next((s for s in mine if s.id == page.session.space_id), mine[0])
    return page.redirect(f"/s/{current.name}/")


@router.get("/s/{space}/")
def dashboard(space: str, page: Page) -> Response:
    recent = tasks.list_tasks(page.ctx, page.in_space, limit=10).items
    running = tasks.list_tasks(page.ctx, page.in_space, state="running", limit=10).items
    return page.render("pages/dashboard.html", recent=recent, running=running)


@router.get("/me/tokens")
def token_list(page: Page) -> Response:
    return page.render("pages/tokens.html", tokens=accounts.list_tokens(page.ctx, page.user),
                       new_token=None, errors={}, values={})


@router.post("/me/tokens")
def token_create(page: Page, form: Form) -> Response:
    values = {"name": forms.text(form, "name"),
              "expires_in_days": forms.optional(form, "expires_in_days")}
    try:
        token, plain = accounts.create_token(page.ctx, page.user,
                                             forms.parse(TokenSpec, values))
    except (ValidationError, ShipyardError) as exc:
        return page.render("pages/tokens.html", status=422, errors=forms.FormErrors.of(exc),
                           values=values, new_token=None,
                           tokens=accounts.list_tokens(page.ctx, page.user))
    return page.render("pages/tokens.html", tokens=accounts.list_tokens(page.ctx, page.user),
                       new_token=plain, errors={}, values={})


@router.post("/me/tokens/{token_id}/revoke")
def token_revoke(token_id: int, page: Page) -> Response:
    accounts.revoke_token(page.ctx, page.user, token_id)
    return page.redirect("/me/tokens", flash="Token revoked.")
