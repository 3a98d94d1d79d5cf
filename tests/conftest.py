"""Shared fixtures: a migrated database per test (SQLite by default, or the server named
by SHIPYARD_TEST_DATABASE_URL), the app, an HTTP client, and factories.

Any test that uses the ``runtime`` fixture is a database test (marker ``db``): CI runs
those again against PostgreSQL and MariaDB."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import make_url, text

from shipyard.app import build_runtime, create_app
from shipyard.config import Settings
from shipyard.db.engine import make_engine
from shipyard.db.migrate import upgrade
from shipyard.models import Base
from shipyard.services.context import Runtime
from tests.factories import Factory

pytest_plugins = ["tests.fleet.plugin"]

EXTERNAL_DB = os.environ.get("SHIPYARD_TEST_DATABASE_URL")
SECRET_KEY = Fernet.generate_key().decode()


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashing() -> Iterator[None]:
    """Argon2 at production cost takes ~0.1 s of CPU per hash; tests create hundreds of
    users. Same algorithm, lower cost (servers started as subprocesses keep the real one)."""
    from argon2 import PasswordHasher

    from shipyard.auth import passwords

    real = passwords._hasher
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    passwords._hasher = real


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "runtime" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


def worker_database(url: str, worker: str) -> str:
    """Each xdist worker gets its own database on the external server (created here),
    so PostgreSQL and MariaDB runs can be parallel too."""
    if worker == "master":
        return url
    parsed = make_url(url)
    name = f"{parsed.database}_{worker}"
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if parsed.get_backend_name() == "postgresql":
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": name}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        else:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` "
                              "CHARACTER SET utf8mb4"))
    admin.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file migrated once per worker, copied for each test; or the external
    database (one per worker), emptied and migrated once."""
    if EXTERNAL_DB:
        url = worker_database(EXTERNAL_DB, os.environ.get("PYTEST_XDIST_WORKER", "master"))
        engine = make_engine(url)
        with engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()
        upgrade(url)
        return url
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return str(path)


def empty_tables(url: str) -> None:
    """Empty every table between tests: TRUNCATE (fast however many rows a test made,
    e.g. 100,000 tasks), with foreign keys handled per backend."""
    engine = make_engine(url)
    names = [t.name for t in Base.metadata.sorted_tables]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names)
                              + " RESTART IDENTITY CASCADE"))
        elif engine.dialect.name == "mysql":
            conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
            for name in names:
                conn.execute(text(f"TRUNCATE TABLE `{name}`"))
            conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    engine.dispose()


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> Iterator[str]:
    if EXTERNAL_DB:
        yield migrated_template
        empty_tables(migrated_template)
        return
    path = tmp_path / "shipyard.db"
    shutil.copy(migrated_template, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=database_url, secret_key=SECRET_KEY,
                    allow_local_repos=True, admin_password="admin-password")


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = build_runtime(settings)
    yield runtime
    if runtime.dispatcher is not None:
        runtime.dispatcher.shutdown()
    runtime.sessions.kw["bind"].dispose()


@pytest.fixture
def app(runtime: Runtime):  # type: ignore[no-untyped-def]
    return create_app(runtime=runtime)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def factory(runtime: Runtime, client, tmp_path: Path) -> Factory:  # type: ignore[no-untyped-def]
    return Factory(runtime, client, tmp_path)
