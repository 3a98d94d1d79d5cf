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
from sqlalchemy import text

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "runtime" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file migrated once per worker, copied for each test; or the external
    database, emptied and migrated once."""
    if EXTERNAL_DB:
        engine = make_engine(EXTERNAL_DB)
        with engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()
        upgrade(EXTERNAL_DB)
        return EXTERNAL_DB
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return str(path)


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> Iterator[str]:
    if EXTERNAL_DB:
        yield EXTERNAL_DB
        engine = make_engine(EXTERNAL_DB)
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        engine.dispose()
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
