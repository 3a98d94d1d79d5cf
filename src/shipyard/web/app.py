"""Mounting the web UI on the application."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from shipyard.web.pages import (
    account,
    admin,
    audit,
    credentials,
    environments,
    integrations,
    members,
    projects,
    releases,
    servers,
    tasks,
)

STATIC = Path(__file__).parent / "static"
PAGE_ROUTERS = [account.router, servers.router, tasks.router, releases.router,
                admin.router, members.router, environments.router,
                credentials.router, projects.router, audit.router,
                integrations.router]


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in PAGE_ROUTERS:
        app.include_router(router)

    @app.get("/switch", include_in_schema=False)
    def switch(request: Request, space: str = "") -> Response:
        # The space switcher: the space page itself checks membership.
        from shipyard.services import validation

        return RedirectResponse(f"/s/{validation.name(space, 'space')}/", status_code=303)
