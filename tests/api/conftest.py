"""API test fixtures: the standard world, built once per worker and copied per test, and
browsers (clients with their own cookie jar and address).

``factory.world()`` goes through the API and hashes seven passwords; doing that for every
test would dominate the run. On SQLite the world is built once into a file and each test
that asks for ``world`` starts from a copy of it (its own database, repository and data
dir). With ``SHIPYARD_TEST_DATABASE_URL`` set the world is built the ordinary way.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from shipyard.app import build_runtime, create_app
from shipyard.auth import passwords
from shipyard.config import Settings
from shipyard.db.migrate import upgrade
from shipyard.models import Project
from shipyard.services.context import Runtime
from tests.conftest import SECRET_KEY
from tests.factories import PASSWORD, Factory, World

EXTERNAL_DB = os.environ.get("SHIPYARD_TEST_DATABASE_URL")
BASE_URL = "http://127.0.0.1"
# Hashes made with these parameters verify like any other argon2id hash; only the cost is
# lower (the default costs ~0.3 s per hash on the test machines). No API test is about
# the cost.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
CHEAP_DUMMY_HASH = CHEAP_HASHER.hash("not-a-real-password")


def _cheap_hashing(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(passwords, "_hasher", CHEAP_HASHER)
    mp.setattr(passwords, "_DUMMY_HASH", CHEAP_DUMMY_HASH)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    _cheap_hashing(monkeypatch)


class RecordingDispatcher:
    """Stands in for the job runner. Starting a task only has to dispatch it; running the
    deploy is tests/deploy's business (the real runner would try to reach the world's
    servers)."""

    def __init__(self) -> None:
        self.task_ids: list[int] = []

    def dispatch_task(self, task_id: int, *args: object, **kwargs: object) -> None:
        self.task_ids.append(task_id)  # (and whatever routing the real one takes)

    def shutdown(self) -> None:
        pass


@dataclass(frozen=True)
class WorldTemplate:
    db: Path
    home: Path
    world: World
    tokens: dict[str, str]


def template_settings(db: Path, home: Path) -> Settings:
    return Settings(home=home, database_url=f"sqlite:///{db}", secret_key=SECRET_KEY,
                    allow_local_repos=True, admin_password="admin-password")


def checkpoint(db: Path) -> None:
    """Fold the WAL into the main file so that copying the file copies everything."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> WorldTemplate:
    """``factory.world()`` built once per worker into a SQLite file (always SQLite)."""
    root = tmp_path_factory.mktemp("world-template")
    db = root / "world.db"
    upgrade(f"sqlite:///{db}")
    with pytest.MonkeyPatch.context() as mp:
        _cheap_hashing(mp)
        runtime = build_runtime(template_settings(db, root / "home"))
        if runtime.dispatcher is not None:
            runtime.dispatcher.shutdown()
        runtime.dispatcher = None
        with TestClient(create_app(runtime=runtime), base_url=BASE_URL) as client:
            factory = Factory(runtime, client, root)
            world = factory.world()
        runtime.sessions.kw["bind"].dispose()
    checkpoint(db)
    return WorldTemplate(db, root / "home", world, dict(factory.tokens))


@pytest.fixture
def database_url(database_url: str, request: pytest.FixtureRequest) -> str:
    """The test's own database; for a test that uses ``world`` on SQLite, a copy of the
    world template."""
    if not EXTERNAL_DB and "world" in request.fixturenames:
        template: WorldTemplate = request.getfixturevalue("world_template")
        shutil.copy(template.db, database_url.removeprefix("sqlite:///"))
    return database_url


@pytest.fixture
def world(factory: Factory, runtime: Runtime, request: pytest.FixtureRequest) -> World:
    """Space ``acme`` with one member per role, ``submitter``'s pending task, SUPER
    ``root`` and ``outsider`` (see ``Factory.world``); tasks started here are dispatched
    to a ``RecordingDispatcher``."""
    if runtime.dispatcher is not None:
        runtime.dispatcher.shutdown()
    runtime.dispatcher = RecordingDispatcher()
    if EXTERNAL_DB:
        return factory.world()
    template: WorldTemplate = request.getfixturevalue("world_template")
    assert template.world.repo is not None
    # A private copy of the repository: tests commit to it.
    repo = factory.tmp_path / "repos" / "shop"
    shutil.copytree(template.world.repo, repo, symlinks=True)
    with runtime.sessions.begin() as db:
        db.execute(update(Project).where(Project.name == "shop").values(repo_url=str(repo)))
    factory.tokens.update(template.tokens)
    return replace(template.world, repo=repo, users=dict(template.world.users))


@pytest.fixture
def dispatched(world: World, runtime: Runtime) -> RecordingDispatcher:
    """The ids of the tasks dispatched to run, in order."""
    assert isinstance(runtime.dispatcher, RecordingDispatcher)
    return runtime.dispatcher


Browser = Callable[..., TestClient]


@pytest.fixture
def browser(app: FastAPI) -> Iterator[Browser]:
    """``browser(address)``: a client with its own cookie jar, calling from ``address``.
    (Not entered as a context manager: that would run the app's lifespan again.)"""
    opened: list[TestClient] = []

    def open_browser(address: str = "192.0.2.10") -> TestClient:
        client = TestClient(app, base_url=BASE_URL, client=(address, 40000))
        opened.append(client)
        return client

    yield open_browser
    for client in opened:
        client.close()


def login(client: TestClient, username: str, password: str = PASSWORD) -> httpx.Response:
    """POST /auth/login from ``client``; returns the response."""
    return client.post("/api/v1/auth/login", json={"username": username,
                                                    "password": password})
