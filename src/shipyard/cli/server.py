"""Commands that act on the server's own database: serve, migrate, admin."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from shipyard.config import Settings, generate_password
from shipyard.db.migrate import upgrade
from shipyard.errors import ShipyardError
from shipyard.services import accounts, lookup, users
from shipyard.services.accounts import TokenSpec
from shipyard.services.context import unit_of_work

console = Console(stderr=True)
admin = typer.Typer(help="Administer users and tokens directly in the database.",
                    no_args_is_help=True)


def migrate() -> None:
    """Apply database migrations (SQLite in SHIPYARD_HOME unless SHIPYARD_DATABASE_URL)."""
    settings = Settings()
    settings.ensure_home()
    upgrade(settings.resolved_database_url)
    console.print(f"[green]database is up to date[/] ({_safe_url(settings)})")


def serve(
    host: str = typer.Option(None, help="address to listen on (SHIPYARD_HOST)"),
    port: int = typer.Option(None, help="port (SHIPYARD_PORT)"),
    no_migrate: bool = typer.Option(False, help="do not apply migrations first"),
) -> None:
    """Migrate, create the first admin if there is no user, and serve the API and UI."""
    import uvicorn

    from shipyard.app import build_runtime, create_app

    settings = Settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    settings.ensure_home()
    if not no_migrate:
        upgrade(settings.resolved_database_url)
    runtime = build_runtime(settings)
    password = settings.admin_password or generate_password()
    with unit_of_work(runtime) as ctx:
        created = users.bootstrap_admin(ctx, settings.admin_user, password)
    if created:
        console.rule("[bold]first run")
        console.print(f"created the admin user [bold]{created.username}[/]")
        if not settings.admin_password:
            console.print(f"password (shown once): [bold yellow]{password}[/]")
    from shipyard.jobs.recovery import recover_interrupted

    recover_interrupted(runtime)
    console.print(f"Shipyard is at [bold]http://{settings.host}:{settings.port}/[/] "
                  f"(API docs: /docs, data: {settings.home.resolve()})")
    uvicorn.run(create_app(runtime=runtime, reap=True), host=settings.host, port=settings.port,
                log_level="info", proxy_headers=settings.trust_proxy_headers)


@admin.command("create-user")
def create_user(
    username: str,
    password: str = typer.Option(None, help="default: generated and printed"),
    email: str = typer.Option(None),
    super_user: bool = typer.Option(False, "--super", help="make a SUPER user"),
) -> None:
    """Create a user directly in the database."""
    from shipyard.app import build_runtime

    runtime = build_runtime(Settings())
    plain = password or generate_password()
    with _fail_clearly(), unit_of_work(runtime) as ctx:
        ctx.who = _system_principal()
        users.create_user(ctx, users.UserSpec(username=username, password=plain, email=email,
                                              is_super=super_user))
    console.print(f"created user [bold]{username}[/]")
    if not password:
        console.print(f"password: [bold yellow]{plain}[/]")


@admin.command("create-token")
def create_token(username: str, name: str = typer.Option("cli", help="token name"),
                 days: int = typer.Option(None, help="expire after this many days")) -> None:
    """Create an API token for a user and print it (once) on stdout."""
    from shipyard.app import build_runtime

    runtime = build_runtime(Settings())
    with _fail_clearly(), unit_of_work(runtime) as ctx:
        ctx.who = _system_principal()
        user = lookup.user(ctx, username)
        _, plain = accounts.create_token(ctx, user, TokenSpec(name=name, expires_in_days=days))
    print(plain)


def _system_principal() -> accounts.Principal:
    return accounts.Principal(user_id=0, username="cli-admin", is_super=True)


@contextmanager
def _fail_clearly() -> Iterator[None]:
    try:
        yield
    except ShipyardError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        sys.exit(1)


def _safe_url(settings: Settings) -> str:
    url = settings.resolved_database_url
    return url.split("@")[-1] if "@" in url else url


def worker(
    queues: str = typer.Option("shipyard", "-Q", "--queues",
                               help="comma-separated queues (network zones) to serve"),
    concurrency: int = typer.Option(4, help="deploys run at once by this worker"),
) -> None:
    """Distributed mode: run deploy jobs from the broker (SHIPYARD_BROKER_URL)."""
    from shipyard.jobs.celery import make_celery

    settings = Settings()
    console.print(f"worker for queues [bold]{queues}[/] on {settings.broker_url}")
    make_celery(settings).worker_main(["worker", "-Q", queues, "--concurrency",
                                       str(concurrency), "--pool", "threads",
                                       "--loglevel", "INFO", "--without-gossip",
                                       "--without-mingle"])
