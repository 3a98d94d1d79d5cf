"""Pages stay usable with 100,000 tasks in the database: the lists page through them 50 at
a time. Nothing here measures time; Playwright's timeout is the bound."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_PASSWORD, UI, Stage

pytestmark = pytest.mark.e2e

TOTAL = 100_000
CHUNK = 10_000
PAGE = 50
STATES = ("succeeded", "failed", "cancelled", "pending_approval")
SPACE = "bulk"


def make_bulk_space(stage: Stage) -> None:
    """Space ``bulk`` with one project and target, never deployed: only rows to list."""
    api = stage.api
    api("admin", "POST", "/spaces", expect=201, json={"name": SPACE})
    api("admin", "POST", f"/spaces/{SPACE}/environments", expect=201, json={"name": "prod"})
    api("admin", "POST", f"/spaces/{SPACE}/servers", expect=201,
        json={"name": "web-1", "host": "127.0.0.1"})
    repo = stage.project_repo("bulk")
    api("admin", "POST", f"/spaces/{SPACE}/projects", expect=201,
        json={"name": "shop", "repo": str(repo), "default_branch": "main"})
    api("admin", "POST", f"/spaces/{SPACE}/projects/shop/targets", expect=201,
        json={"environment": "prod", "servers": ["web-1"], "webroot": "/srv/shop/www",
              "releases": "/srv/shop/releases"})


def insert_tasks(database: Path) -> None:
    """TOTAL tasks straight into the server's SQLite file (executemany in chunks: fast)."""
    columns = ("space_id", "project_id", "target_id", "environment_id", "kind", "title",
               "ref", "commit_sha", "state", "submitted_by_id", "version", "created_at",
               "updated_at")
    sql = (f"INSERT INTO deploy_tasks ({', '.join(columns)}) "
           f"VALUES ({', '.join('?' * len(columns))})")
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=TOTAL)
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db, db:
        space_id, project_id, target_id, environment_id = db.execute(
            "SELECT s.id, p.id, t.id, t.environment_id FROM spaces s "
            "JOIN projects p ON p.space_id = s.id JOIN targets t ON t.project_id = p.id "
            "WHERE s.name = ?", (SPACE,)).fetchone()
        (admin_id,) = db.execute("SELECT id FROM users WHERE username = 'admin'").fetchone()
        for first in range(0, TOTAL, CHUNK):
            rows = []
            for i in range(first, first + CHUNK):
                # As SQLAlchemy stores a UTC datetime in SQLite.
                at = f"{start + timedelta(seconds=i):%Y-%m-%d %H:%M:%S.%f}"
                sha = hashlib.sha1(b"%d" % i).hexdigest()
                rows.append((space_id, project_id, target_id, environment_id, "deploy",
                             f"bulk deploy {i}", "main", sha, STATES[i % len(STATES)],
                             admin_id, 1, at, at))
            db.executemany(sql, rows)


def task_ids(ui: UI, table: str = "tasks") -> list[int]:
    rows = ui.page.get_by_test_id(table).locator("tbody tr[data-task]")
    return [int(x) for x in rows.evaluate_all("rows => rows.map(r => r.dataset.task)")]


def test_task_pages_stay_responsive_with_100000_tasks(stage: Stage, ui: UI) -> None:
    make_bulk_space(stage)
    insert_tasks(stage.server.database)
    ui.login("admin", ADMIN_PASSWORD)
    page = ui.page

    ui.open(f"/s/{SPACE}/tasks")
    rows = page.get_by_test_id("tasks").locator("tbody tr[data-task]")
    expect(rows).to_have_count(PAGE)
    newest = task_ids(ui)
    assert newest == sorted(newest, reverse=True)
    ui.shot("tasks", full_page=False)  # the first screenful is enough

    with page.expect_navigation():
        page.get_by_test_id("older").click()
    expect(rows).to_have_count(PAGE)
    older = task_ids(ui)
    assert older == sorted(older, reverse=True) and older[0] < newest[-1]

    ui.open(f"/s/{SPACE}/tasks?state=failed")
    expect(rows).to_have_count(PAGE)
    expect(page.get_by_test_id("tasks").locator(".state-failed")).to_have_count(PAGE)

    ui.open(f"/s/{SPACE}/approvals")
    expect(page.get_by_test_id("approval-queue").locator("tbody tr[data-task]")).to_have_count(PAGE)
    expect(page.get_by_test_id("pending-count")).to_have_text(str(TOTAL // len(STATES)))

    ui.open(f"/s/{SPACE}/")
    expect(page.locator("table.list tbody tr")).to_have_count(10)  # the recent ones
    expect(page.locator("table.list tbody")).to_contain_text(f"bulk deploy {TOTAL - 1}")
