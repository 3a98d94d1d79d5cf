"""The deploy workflow in the browser, over HTTP: submitting through the form, the list
with filters and paging, the approval queue, role-aware buttons, the live task page of a
real deploy, releases and the rollback confirm flow."""

from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import insert, select

from shipyard.models import DeployTask, TaskState
from shipyard.services.context import unit_of_work
from tests.factories import PASSWORD, commit
from tests.web.test_pages import csrf_of


def log_in(client, username: str) -> None:  # type: ignore[no-untyped-def]
    client.cookies.clear()
    page = client.get("/login")
    response = client.post("/login", data={"username": username, "password": PASSWORD,
                                           "csrf": csrf_of(page.text), "next": "/"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text


def post_form(client, page_url: str, action: str, data: dict, **kwargs):  # type: ignore[no-untyped-def]
    """Post ``data`` to ``action`` with the CSRF token of the page at ``page_url``."""
    token = csrf_of(client.get(page_url).text)
    return client.post(action, data={"csrf": token, **data}, **kwargs)


def ids_in(html: str) -> set[str]:
    return set(re.findall(r'data-testid="([^"]+)"', html))


def task_state(runtime, task_id: int) -> str:  # type: ignore[no-untyped-def]
    with runtime.sessions() as db:
        return db.get_one(DeployTask, task_id).state.value


@pytest.fixture
def world(factory):  # type: ignore[no-untyped-def]
    """Space ``acme``: project ``shop`` with target ``test`` (two servers, one approval
    required) and task ``first`` by ``submitter``, pending approval."""
    return factory.world()


# -- submitting ----------------------------------------------------------------------------

def test_the_submit_form_keeps_values_on_an_unknown_ref_and_lands_on_the_new_task(
        world, client, runtime):
    log_in(client, "developer")
    form = client.get("/s/acme/tasks/new?project=shop&environment=test")
    assert form.status_code == 200
    assert {"commits", "task-form", "servers"} <= ids_in(form.text)
    assert 'name="ref" value="main"' in form.text  # the default branch, not "master"
    assert 'value="web-1"' in form.text and 'value="web-2"' in form.text
    typo = client.post("/s/acme/tasks/new", data={
        "csrf": csrf_of(form.text), "project": "shop", "environment": "test",
        "title": "Ship the cart", "ref": "no-such-branch", "servers_mode": "some",
        "servers": ["web-2"]})
    assert typo.status_code == 422
    assert re.search(r'data-error-for="ref">[^<]*no-such-branch[^<]*not a branch', typo.text)
    assert 'value="Ship the cart"' in typo.text and 'value="no-such-branch"' in typo.text
    assert re.search(r'value="some" checked', typo.text)
    assert re.search(r'value="web-2" checked', typo.text)

    response = client.post("/s/acme/tasks/new", data={
        "csrf": csrf_of(form.text), "project": "shop", "environment": "test",
        "title": "Ship the cart", "ref": "main", "servers_mode": "some",
        "servers": ["web-2"]}, follow_redirects=False)
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert "Ship the cart" in page.text
    assert 'data-testid="task-state" data-state="pending_approval"' in page.text
    assert "web-2" in page.text and "a subset" in page.text
    task_id = int(response.headers["location"].rsplit("/", 1)[1])
    with runtime.sessions() as db:
        task = db.get_one(DeployTask, task_id)
        assert task.ref == "main" and len(task.commit_sha or "") == 40
        assert task.server_ids is not None and len(task.server_ids) == 1


# -- approvals -----------------------------------------------------------------------------

def test_the_approval_queue_shows_pending_work_and_reject_needs_a_reason(
        world, client, runtime, factory):
    second = factory.api("submitter", "POST", "/spaces/acme/tasks", expect=201,
                         json={"project": "shop", "environment": "test",
                               "title": "second"})["id"]
    log_in(client, "master")
    queue = client.get("/s/acme/approvals")
    assert f'data-task="{world.task_id}"' in queue.text and f'data-task="{second}"' in queue.text
    assert re.search(r'data-testid="pending-count">2<', queue.text)
    assert {"approve", "reject"} <= ids_in(queue.text)

    blank = client.post(f"/s/acme/tasks/{world.task_id}/reject", data={
        "csrf": csrf_of(queue.text), "reason": "  ", "back": "approvals"})
    assert blank.status_code == 422
    assert f'data-error-for="reason-{world.task_id}"' in blank.text
    assert task_state(runtime, world.task_id) == "pending_approval"

    rejected = client.post(f"/s/acme/tasks/{world.task_id}/reject", data={
        "csrf": csrf_of(queue.text), "reason": "tests are red", "back": "approvals"},
        follow_redirects=False)
    assert rejected.status_code == 303 and rejected.headers["location"] == "/s/acme/approvals"
    assert task_state(runtime, world.task_id) == "rejected"
    page = client.get(f"/s/acme/tasks/{world.task_id}")
    assert "tests are red" in page.text and 'data-state="rejected"' in page.text

    approved = client.post(f"/s/acme/tasks/{second}/approve", data={
        "csrf": csrf_of(queue.text), "comment": "go"}, follow_redirects=True)
    assert approved.status_code == 200 and 'data-state="approved"' in approved.text
    assert "start" in ids_in(approved.text)  # MASTER may start it now
    assert "Nothing waits for approval." in client.get("/s/acme/approvals").text


# -- roles ---------------------------------------------------------------------------------

def test_a_reporter_sees_no_buttons_that_would_fail_and_forged_posts_change_nothing(
        world, client, runtime):
    log_in(client, "reporter")
    page = client.get(f"/s/acme/tasks/{world.task_id}")
    assert page.status_code == 200
    assert {"matrix", "console", "progress", "task-state"} <= ids_in(page.text)
    buttons = {"approve", "reject", "start", "cancel", "retry", "continue", "rollback", "edit"}
    assert not ids_in(page.text) & buttons
    assert not ids_in(client.get("/s/acme/approvals").text) & buttons
    assert "new-task" not in ids_in(client.get("/s/acme/tasks").text)
    assert client.get("/s/acme/tasks/new").status_code == 403
    rollback = "/s/acme/projects/shop/targets/test/rollback?release=20261122T101500-1"
    assert client.get(rollback).status_code == 403
    token = csrf_of(page.text)
    for action in ("approve", "start", "cancel"):
        forged = client.post(f"/s/acme/tasks/{world.task_id}/{action}", data={"csrf": token})
        assert forged.status_code == 403, action
    assert task_state(runtime, world.task_id) == "pending_approval"


def test_the_submitter_may_edit_and_cancel_but_not_approve_their_own_task(world, client,
                                                                          runtime):
    log_in(client, "submitter")
    page = client.get(f"/s/acme/tasks/{world.task_id}")
    assert {"edit", "cancel"} <= ids_in(page.text)
    assert not {"approve", "reject", "start"} & ids_in(page.text)
    edit = client.get(f"/s/acme/tasks/{world.task_id}/edit")
    saved = client.post(f"/s/acme/tasks/{world.task_id}/edit", data={
        "csrf": csrf_of(edit.text), "title": "first, renamed", "ref": "main",
        "servers_mode": "all"}, follow_redirects=True)
    assert saved.status_code == 200 and "first, renamed" in saved.text
    cancelled = client.post(f"/s/acme/tasks/{world.task_id}/cancel",
                            data={"csrf": csrf_of(saved.text)}, follow_redirects=True)
    assert 'data-state="cancelled"' in cancelled.text
    assert "retry" in ids_in(cancelled.text)


# -- the list ------------------------------------------------------------------------------

def test_the_task_list_filters_pages_with_older_and_speaks_chinese(world, client, runtime):
    with unit_of_work(runtime) as ctx:
        first = ctx.db.get_one(DeployTask, world.task_id)
        columns = {c: getattr(first, c) for c in (
            "space_id", "project_id", "target_id", "environment_id", "kind", "ref",
            "commit_sha", "submitted_by_id")}
        ctx.db.execute(insert(DeployTask), [
            {**columns, "title": f"bulk {i}", "version": 1,
             "state": TaskState.SUCCEEDED if i % 2 else TaskState.FAILED}
            for i in range(60)])
        newest = ctx.db.scalar(select(DeployTask.id).order_by(DeployTask.id.desc()).limit(1))
    log_in(client, "reporter")
    listing = client.get("/s/acme/tasks")
    assert listing.text.count("<tr data-task=") == 50
    assert f'data-task="{newest}"' in listing.text
    older = re.search(r'href="([^"]+)" rel="next" data-testid="older"', listing.text)
    assert older
    rest = client.get(older.group(1).replace("&amp;", "&"))
    assert rest.text.count("<tr data-task=") == 11  # 61 in all
    assert f'data-task="{world.task_id}"' in rest.text and 'data-testid="older"' not in rest.text

    failed = client.get("/s/acme/tasks?state=failed&project=shop&environment=test"
                        "&submitted_by=submitter")
    assert failed.text.count("<tr data-task=") == 30
    assert 'data-testid="older"' not in failed.text
    succeeded = client.get("/s/acme/tasks?state=succeeded")
    assert succeeded.text.count("<tr data-task=") == 30
    assert '<option value="succeeded" selected>' in succeeded.text
    assert client.get("/s/acme/tasks?submitted_by=nobody").text.count("<tr data-task=") == 0

    chinese = client.get("/s/acme/tasks?state=pending_approval",
                         headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "<h1>上线单</h1>" in chinese.text and "待审批" in chinese.text
    assert "提交人" in chinese.text and "Submitted by" not in chinese.text


# -- a real deploy, releases and rollback --------------------------------------------------

def test_a_finished_deploy_shows_its_matrix_and_can_be_rolled_back_from_the_releases_page(
        factory, fleet, client, runtime):
    world = factory.deploy_world(list(fleet)[:2])
    first = factory.deploy(world)
    commit(world.repo, {"index.html": "<h1>v2</h1>\n"}, "second version")
    second = factory.deploy(world)
    hosts = [h.name for h in world.hosts]
    log_in(client, "lead")

    page = client.get(f"/s/ops/tasks/{second['id']}")
    assert 'data-testid="task-state" data-state="succeeded"' in page.text
    assert re.search(r'data-host="" data-stage="build" data-status="succeeded"', page.text)
    for host in hosts:
        for stage in ("connect", "transfer", "switch", "post_release"):
            assert f'data-host="{host}" data-stage="{stage}" data-status="succeeded"' \
                in page.text, (host, stage)
    progress = re.search(r'data-testid="progress" max="(\d+)" value="(\d+)"', page.text)
    assert progress and progress.group(1) == progress.group(2) == str(1 + 6 * len(hosts))
    assert "rollback" in ids_in(page.text) and "retry" not in ids_in(page.text)
    assert "succeeded" in client.get(f"/s/ops/tasks/{second['id']}/log").text

    base = f"/s/ops/projects/{world.project}/targets/test"
    releases = client.get(f"{base}/releases")
    assert releases.status_code == 200
    for task in (first, second):
        assert f'data-release="{task["release"]}"' in releases.text
    assert f'rollback?release={first["release"]}' in releases.text
    assert f'rollback?release={second["release"]}' not in releases.text  # live everywhere

    confirm = client.get(f"{base}/rollback?release={first['release']}")
    assert confirm.status_code == 200 and first["commit"][:12] in confirm.text
    response = client.post(f"{base}/rollback", data={
        "csrf": csrf_of(confirm.text), "release": first["release"], "servers": hosts},
        follow_redirects=False)
    assert response.status_code == 303
    rollback_id = int(response.headers["location"].rsplit("/", 1)[1])
    done = factory.wait("ops", rollback_id)
    assert done["kind"] == "rollback"
    for host in world.hosts:
        live = os.readlink(world.path_on(host, world.webroot))
        assert live == f"{world.releases}/{first['release']}"
    watch = client.get(response.headers["location"])
    assert 'data-stage="build"' not in watch.text  # no rebuild
    assert 'data-stage="switch" data-status="succeeded"' in watch.text
