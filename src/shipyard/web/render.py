"""Rendering pages: the Jinja2 environment (autoescaping, i18n, time zones) and the
security headers every page carries."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from shipyard.web import i18n

TEMPLATES = Path(__file__).parent / "templates"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}



@cache
def environment(lang: str) -> Environment:
    """One Jinja2 environment per language, its gettext installed (``_()`` and
    ``{% trans %}`` both work, new-style: ``_("%(n)s hosts", n=3)``)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(),
                      extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(i18n.translations(lang),  # type: ignore[attr-defined]
                                     newstyle=True)
    return env


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def render(request: Request, template: str, *, status: int = 200, lang: str = "en",
           tz: str | None = None, **context: Any) -> HTMLResponse:
    tzinfo = zone(tz)

    def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        return value.astimezone(tzinfo).strftime(fmt) if value else ""

    html = environment(lang).get_template(template).render(
        request=request, lang=lang, locales=i18n.LOCALES, tz=tzinfo.key, when=when, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
