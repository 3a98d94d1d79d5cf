"""Wiring: build the runtime from settings and assemble the FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from shipyard import __version__
from shipyard.api import account, admin, errors, integrations, inventory, projects, runs, tasks
from shipyard.api.limits import BodyLimit
from shipyard.config import Settings
from shipyard.db.engine import make_engine, make_sessionmaker
from shipyard.integrations.notify import Notifier, notifier_of
from shipyard.jobs.dispatch import InProcessDispatcher
from shipyard.jobs.recovery import Reaper
from shipyard.services.context import Runtime
from shipyard.vault import Vault
from shipyard.web import app as web

API_PREFIX = "/api/v1"
ROUTERS = (account.router, admin.router, inventory.router, projects.router, tasks.router,
           runs.router, integrations.router)


def build_runtime(settings: Settings) -> Runtime:
    settings.ensure_home()
    engine = make_engine(settings.resolved_database_url)
    runtime = Runtime(settings=settings, sessions=make_sessionmaker(engine),
                      vault=Vault(settings.load_secret_key()))
    if settings.dispatcher == "inprocess":
        runtime.dispatcher = InProcessDispatcher(runtime)
    else:
        from shipyard.jobs.celery import CeleryDispatcher

        runtime.dispatcher = CeleryDispatcher(settings)
    runtime.listeners.append(Notifier(runtime))
    return runtime


def create_app(settings: Settings | None = None, runtime: Runtime | None = None, *,
               reap: bool = False) -> FastAPI:
    """The app. ``reap`` runs the recovery pass periodically (``shipyard serve`` does)."""
    runtime = runtime or build_runtime(settings or Settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reaper = Reaper(runtime).start() if reap else None
        notifier = notifier_of(runtime)
        if reap and notifier is not None:
            notifier.resume()
        yield
        if reaper is not None:
            reaper.stop()
        if notifier is not None:
            notifier.close()
        if runtime.dispatcher is not None:
            runtime.dispatcher.shutdown()

    app = FastAPI(title="Shipyard", version=__version__, lifespan=lifespan,
                  description="Self-hosted deployments: git to servers, with approvals, "
                              "live consoles and instant rollback.")
    app.state.runtime = runtime
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)

    web.install(app)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_body_bytes)
    return app


def api_routes() -> list[APIRoute]:
    """Every API route with its full path (the route table the permission test walks)."""
    out = []
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                out.append(route)
    return out
