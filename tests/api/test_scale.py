"""Task lists at scale: with 100,000 tasks, a page costs the same few SQL statements at
any depth and with any filter (no N+1), and the list query is answered from an index.
Nothing here measures time."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select

from shipyard.app import build_runtime, create_app
from shipyard.models import DeployTask, Project, Space, Target, TaskKind, TaskState, User
from shipyard.models.types import utcnow
from shipyard.services.context import Runtime
from tests.api.conftest import BASE_URL, WorldTemplate, template_settings
from tests.factories import Factory

TOTAL = 100_000
CHUNK = 10_000
TASKS = "/spaces/acme/tasks"
STATES = [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED,
          TaskState.PENDING_APPROVAL]


@dataclass
class Statements:
    """SQL statements the engine sent, with their parameters."""

    sent: list[tuple[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sent)


@contextmanager
def counting(engine: Engine) -> Iterator[Statements]:
    statements = Statements()

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
               _many: bool) -> None:
        statements.sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def engine_of(runtime: Runtime) -> Engine:
    return runtime.sessions.kw["bind"]  # type: ignore[no-any-return]


def insert_tasks(engine: Engine) -> None:
    """100,000 tasks of the world's shop/test target, in chunks through SQLite's
    executemany (the ORM's per-row work would dominate the run)."""
    with engine.begin() as conn:
        space_id = conn.scalar(select(Space.id).where(Space.name == "acme"))
        project_id = conn.scalar(select(Project.id).where(Project.name == "shop"))
        target_id, environment_id = conn.execute(
            select(Target.id, Target.environment_id)
            .where(Target.project_id == project_id)).one()
        users = list(conn.scalars(select(User.id).where(
            User.username.in_(["developer", "submitter"])).order_by(User.id)))
        now = f"{utcnow():%Y-%m-%d %H:%M:%S.%f}"  # as SQLAlchemy stores it in SQLite
        columns = ("space_id", "project_id", "target_id", "environment_id", "kind", "title",
                   "ref", "commit_sha", "state", "submitted_by_id", "version", "created_at",
                   "updated_at")
        sql = (f"INSERT INTO deploy_tasks ({', '.join(columns)}) "
               f"VALUES ({', '.join(['?'] * len(columns))})")
        for start in range(0, TOTAL, CHUNK):
            conn.exec_driver_sql(sql, [
                (space_id, project_id, target_id, environment_id, TaskKind.DEPLOY.value,
                 f"bulk {i}", "main", "a" * 40, STATES[i % len(STATES)].value,
                 users[i % 2], 1, now, now)
                for i in range(start, start + CHUNK)])


@dataclass
class Crowded:
    factory: Factory
    engine: Engine
    low: int  # the lowest task id
    high: int


@pytest.fixture(scope="module")
def crowded(world_template: WorldTemplate,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crowded]:
    """The world plus 100,000 finished and pending tasks, once per module; the tests only
    read. Always SQLite, even when SHIPYARD_TEST_DATABASE_URL names a server: counting
    statements does not depend on the backend, the plans read are SQLite's, and emptying
    100,000 tasks again is slow on PostgreSQL (see the report on parent_task_id)."""
    root = tmp_path_factory.mktemp("crowded")
    db = root / "crowded.db"
    shutil.copy(world_template.db, db)
    runtime = build_runtime(template_settings(db, root / "home"))
    if runtime.dispatcher is not None:
        runtime.dispatcher.shutdown()
    runtime.dispatcher = None
    engine = engine_of(runtime)
    insert_tasks(engine)
    with engine.connect() as conn:
        low, high = conn.execute(select(func.min(DeployTask.id),
                                        func.max(DeployTask.id))).one()
    assert high - low == TOTAL
    with TestClient(create_app(runtime=runtime), base_url=BASE_URL) as client:
        factory = Factory(runtime, client, root)
        factory.tokens.update(world_template.tokens)
        yield Crowded(factory, engine, low, high)
    engine.dispose()


def page(factory: Factory, **params: Any) -> dict[str, Any]:
    return factory.api("reporter", "GET", TASKS, params=params)  # type: ignore[no-any-return]


def test_a_page_of_tasks_costs_the_same_few_statements_at_any_depth(crowded: Crowded) -> None:
    factory, low = crowded.factory, crowded.low
    first = page(factory, limit=50)  # also settles the token's last-used time
    assert len(first["items"]) == 50
    requests: dict[str, dict[str, Any]] = {
        "first page": {"limit": 50},
        "second page": {"limit": 50, "cursor": first["next_cursor"]},
        "deep page": {"limit": 50, "cursor": low + 1_000},
        "full page": {"limit": 200},
        "by state": {"limit": 50, "state": "failed"},
        "by state, deep": {"limit": 50, "state": "failed", "cursor": low + 2_000},
        "by submitter": {"limit": 50, "submitted_by": "developer"},
        "by project and environment": {"limit": 50, "project": "shop",
                                       "environment": "test"},
    }
    counts = {}
    for name, params in requests.items():
        with counting(crowded.engine) as statements:
            answer = page(factory, **params)
        assert len(answer["items"]) == params["limit"], name
        assert answer["next_cursor"] is not None, name
        counts[name] = len(statements)
    assert len(set(counts.values())) == 1, counts  # the same whatever the page holds
    assert counts["first page"] <= 8, counts


def test_paging_walks_down_the_ids_without_gaps(crowded: Crowded) -> None:
    factory, low, high = crowded.factory, crowded.low, crowded.high
    seen: list[int] = []
    cursor = None
    for _ in range(5):
        answer = page(factory, limit=200, **({"cursor": cursor} if cursor else {}))
        seen += [t["id"] for t in answer["items"]]
        cursor = answer["next_cursor"]
    assert seen == list(range(high, high - 1000, -1))
    last = page(factory, limit=200, cursor=low + 2)
    assert ([t["id"] for t in last["items"]], last["next_cursor"]) == ([low + 1, low], None)


@pytest.mark.parametrize("params", [
    {"limit": 50}, {"limit": 50, "cursor": 1_000}, {"limit": 50, "state": "failed"},
    {"limit": 50, "submitted_by": "developer"}, {"limit": 50, "project": "shop"}])
def test_the_task_list_query_is_answered_from_an_index(crowded: Crowded,
                                                       params: dict[str, Any]) -> None:
    engine = crowded.engine
    page(crowded.factory, limit=1)
    with counting(engine) as statements:
        page(crowded.factory, **params)
    [(sql, parameters)] = [(s, p) for s, p in statements.sent
                           if "FROM deploy_tasks" in s and "LIMIT" in s]
    with engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}",
                                                       parameters)]
    on_tasks = [step for step in plan if "deploy_tasks" in step]
    assert on_tasks, plan
    assert all("USING" in step and "INDEX" in step or "PRIMARY KEY" in step
               for step in on_tasks), plan  # SEARCH ... USING INDEX, never a bare SCAN
    assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort of every row
