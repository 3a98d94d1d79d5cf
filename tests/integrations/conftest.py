"""Integration test fixtures: settings that let notifications reach loopback receivers
with a short back-off, receivers to start, and a space with a project whose repository
has ``main``, ``develop`` and a ``v1.2.0`` tag, and targets in test, staging and prod."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import update

from shipyard.app import build_runtime, create_app
from shipyard.auth import passwords
from shipyard.config import Settings
from shipyard.db.migrate import upgrade
from shipyard.integrations.notify import Notifier, notifier_of
from shipyard.models import Project
from shipyard.services.context import Runtime
from tests.conftest import SECRET_KEY
from tests.factories import Factory, commit, git
from tests.integrations.receivers import Mailbox, Receiver, self_signed, start_mailbox

CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
SPACE = "acme"
PROJECT = "shop"
BASE = f"/spaces/{SPACE}"
EXTERNAL_DB = os.environ.get("SHIPYARD_TEST_DATABASE_URL")


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # No test here is about the cost of password hashing; tokens are what they use.
    monkeypatch.setattr(passwords, "_hasher", CHEAP_HASHER)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", CHEAP_HASHER.hash("not-a-real-password"))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "allow_private_webhook_urls": True,  # the receivers listen on 127.0.0.1
        "notify_timeout": 2.0, "notify_backoff": 0.05, "notify_backoff_max": 0.2,
        "notify_max_attempts": 3, "public_url": "https://shipyard.example.com",
    })


@pytest.fixture
def runtime(runtime: Runtime) -> Iterator[Runtime]:
    yield runtime
    notifier = notifier_of(runtime)
    if notifier is not None:
        notifier.close(timeout=5)


@pytest.fixture
def notifier(runtime: Runtime) -> Notifier:
    found = notifier_of(runtime)
    assert found is not None, "build_runtime subscribes a Notifier"
    return found


class RecordingDispatcher:
    """Starting a task only has to dispatch it; these tests are about what triggers and
    announces deploys, not running them (tests/deploy and the fleet test do that)."""

    def __init__(self) -> None:
        self.task_ids: list[int] = []

    def dispatch_task(self, task_id: int, zone: str = "") -> None:
        self.task_ids.append(task_id)

    def shutdown(self) -> None:
        pass


@dataclass
class Hooked:
    """Space ``acme``: ``lead`` (master), ``boss`` (master), both with an email, ``dev``
    (developer), ``viewer`` (reporter); project ``shop`` with targets test and staging
    (no approval) and prod (one approval); ``shas`` of main, develop and v1.2.0."""

    repo: Path
    shas: dict[str, str]
    dispatched: RecordingDispatcher = field(default_factory=RecordingDispatcher)


def build_hooked(factory: Factory) -> Hooked:
    factory.user("root", is_super=True)
    factory.space(SPACE, {"lead": "master", "boss": "master", "dev": "developer",
                          "viewer": "reporter"})
    factory.api("root", "PATCH", "/users/boss", json={"email": "boss@example.com"})
    factory.api("root", "PATCH", "/users/lead", json={"email": "lead@example.com"})
    repo = factory.repo(PROJECT)
    git(repo, "checkout", "-q", "-b", "develop")
    develop = commit(repo, {"feature.txt": "new\n"}, "feature")
    git(repo, "checkout", "-q", "main")
    git(repo, "tag", "-a", "v1.2.0", "-m", "release 1.2.0")
    shas = {"main": git(repo, "rev-parse", "main"), "develop": develop,
            "v1.2.0": git(repo, "rev-parse", "v1.2.0^{commit}")}
    for env in ("test", "staging", "prod"):
        factory.api("root", "POST", f"{BASE}/environments", json={"name": env}, expect=201)
    factory.api("lead", "POST", f"{BASE}/servers", expect=201,
                json={"name": "web-1", "host": "127.0.0.9", "port": 22, "user": "deploy"})
    factory.api("lead", "POST", f"{BASE}/projects", expect=201,
                json={"name": PROJECT, "repo": str(repo), "default_branch": "main"})
    for env, approvals in (("test", 0), ("staging", 0), ("prod", 1)):
        factory.api("lead", "POST", f"{BASE}/projects/{PROJECT}/targets", expect=201,
                    json={"environment": env, "servers": ["web-1"],
                          "webroot": f"/srv/{env}/www", "releases": f"/srv/{env}/releases",
                          "approval": {"required": approvals}})
    return Hooked(repo=repo, shas=shas)


@dataclass(frozen=True)
class HookedTemplate:
    db: Path
    hooked: Hooked
    tokens: dict[str, str]


@pytest.fixture(scope="session")
def hooked_template(tmp_path_factory: pytest.TempPathFactory) -> HookedTemplate:
    """The ``hooked`` world built once per worker into a SQLite file (tests copy it):
    building it through the API for every test would dominate the run."""
    root = tmp_path_factory.mktemp("hooked-template")
    db = root / "hooked.db"
    upgrade(f"sqlite:///{db}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(passwords, "_hasher", CHEAP_HASHER)
        runtime = build_runtime(Settings(home=root / "home", database_url=f"sqlite:///{db}",
                                         secret_key=SECRET_KEY, allow_local_repos=True,
                                         admin_password="admin-password"))
        if runtime.dispatcher is not None:
            runtime.dispatcher.shutdown()
        runtime.dispatcher = None
        with TestClient(create_app(runtime=runtime), base_url="http://127.0.0.1") as client:
            factory = Factory(runtime, client, root)
            hooked = build_hooked(factory)
        runtime.sessions.kw["bind"].dispose()
    conn = sqlite3.connect(db)  # fold the WAL in, so that copying the file copies all
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return HookedTemplate(db, hooked, dict(factory.tokens))


@pytest.fixture
def database_url(database_url: str, request: pytest.FixtureRequest) -> str:
    if not EXTERNAL_DB and "hooked" in request.fixturenames:
        template: HookedTemplate = request.getfixturevalue("hooked_template")
        shutil.copy(template.db, database_url.removeprefix("sqlite:///"))
    return database_url


@pytest.fixture
def hooked(factory: Factory, runtime: Runtime, request: pytest.FixtureRequest) -> Hooked:
    """Tasks started here are only recorded as dispatched (see RecordingDispatcher)."""
    if runtime.dispatcher is not None:
        runtime.dispatcher.shutdown()
    dispatched = RecordingDispatcher()
    runtime.dispatcher = dispatched  # type: ignore[assignment]
    if EXTERNAL_DB:
        return replace(build_hooked(factory), dispatched=dispatched)
    template: HookedTemplate = request.getfixturevalue("hooked_template")
    repo = factory.tmp_path / "repos" / PROJECT  # a private copy: tests commit to it
    shutil.copytree(template.hooked.repo, repo, symlinks=True)
    with runtime.sessions.begin() as db:
        db.execute(update(Project).where(Project.name == PROJECT).values(repo_url=str(repo)))
    factory.tokens.update(template.tokens)
    return Hooked(repo=repo, shas=dict(template.hooked.shas), dispatched=dispatched)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """``receiver(handler)``: a new HTTP receiver on 127.0.0.1, closed after the test."""
    started: list[Receiver] = []

    def start(handler: Any = None) -> Receiver:
        server = Receiver(handler)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Callable[[str], Mailbox]]:
    """``mailbox(security)``: an SMTP server (none, starttls or tls) on 127.0.0.1."""
    boxes: list[Mailbox] = []
    cert = self_signed(tmp_path)

    def start(security: str) -> Mailbox:
        box = start_mailbox(security, cert)
        boxes.append(box)
        return box

    start.cert = cert[0]  # type: ignore[attr-defined]
    yield start
    for box in boxes:
        box.controller.stop()
