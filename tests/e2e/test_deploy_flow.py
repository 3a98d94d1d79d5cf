"""A deploy as people do it in the browser: a developer submits, a MASTER approves, the
developer starts it and watches the console live, and a bad release is rolled back."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import DEPLOY_TIMEOUT, UI, Stage
from tests.factories import git

pytestmark = pytest.mark.e2e

DEPLOYED = DEPLOY_TIMEOUT * 1000  # Playwright counts milliseconds


def task_id_of(ui: UI) -> int:
    match = re.search(r"/tasks/(\d+)$", ui.page.url)
    assert match, ui.page.url
    return int(match.group(1))


def expect_every_host_succeeded(ui: UI, hosts: list[str]) -> None:
    """Every cell of the matrix reaches "succeeded", and so does the task."""
    matrix = ui.page.get_by_test_id("matrix")
    for host in ["", *hosts]:  # "" is the build host's row
        cells = matrix.locator(f"td[data-host='{host}'][data-stage]")
        expect(cells.first).to_be_attached()
        expect(matrix.locator(f"td[data-host='{host}'][data-stage]"
                              ":not([data-status='succeeded'])")).to_have_count(
            0, timeout=DEPLOYED)
    expect(ui.page.get_by_test_id("task-state")).to_have_attribute(
        "data-state", "succeeded", timeout=DEPLOYED)


def test_a_new_developer_deploys_from_login_to_live_servers(
        stage: Stage, browse: Callable[..., UI]) -> None:
    project = stage.project(approvals=1, hooks={
        "prev_release": "echo warming-$SERVER; sleep 2",
        "post_release": "echo deployed-on-$SERVER; echo careful-on-$SERVER >&2"})
    hosts = [h.name for h in project.hosts]
    newest = git(project.repo, "rev-parse", "HEAD")
    ui = browse()
    page = ui.page

    # A developer logs in through the form and lands on the space's dashboard.
    ui.open("/login")
    ui.shot("login")
    ui.login("dev")
    expect(page).to_have_url(re.compile(r"/s/e2e/$"))
    expect(page.locator("h1")).to_have_text("Web team")

    # New deploy: project and environment, then branch main and its newest commit.
    with page.expect_navigation():
        page.locator(".page-head a", has_text="New deploy").click()
    with page.expect_navigation():
        page.select_option("#c-project", project.name)
    with page.expect_navigation():
        page.select_option("#c-environment", stage.environment)
    expect(page.locator("#ref-name option[value='main']")).to_have_count(1)
    page.select_option("#ref-name", "main")
    commits = page.get_by_test_id("commits").locator("label.commit")
    expect(commits).to_have_count(2)
    latest = commits.first
    short = latest.locator("code").inner_text()
    assert len(short) >= 7 and newest.startswith(short)
    expect(latest.locator(".message")).to_have_text("Add the about page")
    expect(latest.locator(".author")).to_have_text("Ada")
    expect(commits.nth(1).locator(".message")).to_have_text("first commit")
    commits.nth(1).locator("input[type=radio]").check()  # an older commit deploys by SHA
    expect(page.locator("#f-ref")).not_to_have_value("main")
    latest.locator("input[type=radio]").check()
    expect(page.locator("#f-ref")).to_have_value("main")
    page.fill("#f-title", "Ship the about page")
    ui.shot("new-deploy")
    with page.expect_navigation():
        page.get_by_test_id("submit").click()

    # The task waits for approval; its submitter may not approve it.
    task_id = task_id_of(ui)
    expect(page.get_by_test_id("task-state")).to_have_attribute("data-state",
                                                                "pending_approval")
    expect(page.get_by_test_id("commit")).to_have_attribute("title", newest)
    expect(page.get_by_test_id("approve")).to_have_count(0)
    expect(page.get_by_test_id("start")).to_have_count(0)
    ui.logout()

    # A MASTER sees the waiting task in the nav badge and approves it from the queue.
    ui.login("lead")
    expect(page.get_by_test_id("pending-count")).to_have_text(str(stage.pending_approvals()))
    with page.expect_navigation():
        page.locator("nav.main a", has_text="Approvals").click()
    row = page.locator(f"tr[data-task='{task_id}']")
    expect(row).to_contain_text("Ship the about page")
    ui.shot("approvals")
    with page.expect_navigation():
        row.get_by_test_id("approve").click()
    expect(page.locator(".flash")).to_have_text("Approved.")
    expect(page.locator(f"tr[data-task='{task_id}']")).to_have_count(0)
    ui.logout()

    # The developer starts it and watches: lines arrive while the task runs.
    ui.login("dev")
    ui.open(ui.space_path(f"tasks/{task_id}"))
    expect(page.get_by_test_id("task-state")).to_have_attribute("data-state", "approved")
    with page.expect_navigation():
        page.get_by_test_id("start").click()
    console = page.get_by_test_id("console")
    expect(console).to_contain_text("warming-", timeout=DEPLOYED)
    expect(page.get_by_test_id("task-state")).to_have_attribute("data-state", "running")
    ui.shot("task-live")

    # A reload mid-deploy replays what was printed, then follows the rest live.
    page.reload()
    expect(console.locator(".ln", has_text="warming-").first).to_be_visible()
    expect_every_host_succeeded(ui, hosts)
    for host in hosts:
        expect(console.locator(".ln", has_text=f"deployed-on-{host}")).to_have_class(
            re.compile(r"\bstdout\b"))
        expect(console.locator(".ln", has_text=f"careful-on-{host}")).to_have_class(
            re.compile(r"\bstderr\b"))
    expect(page.get_by_test_id("progress-text")).to_have_text(
        re.compile(r"^(\d+) / \1$"))  # every step finished

    # After the end, a reload shows the whole story and the final state again.
    page.reload()
    expect(page.get_by_test_id("task-state")).to_have_attribute("data-state", "succeeded")
    expect(page.get_by_test_id("start")).to_have_count(0)
    for host in hosts:
        expect(console.locator(".ln", has_text=f"deployed-on-{host}")).to_have_count(1)
    expect(page.locator("#live")).to_have_attribute("data-ended", "1")
    ui.shot("task-final")
    assert {project.live_release_on(h) for h in project.hosts} == {
        stage.api("dev", "GET", f"/spaces/e2e/tasks/{task_id}")["release"]}

    ui.open(ui.space_path())
    expect(page.locator(f"a[href$='/tasks/{task_id}']").first).to_be_visible()
    ui.shot("dashboard")
    ui.logout()

    # The OWNER reads who did what in the audit log, and sees the servers.
    ui.login("owner")
    ui.open(ui.space_path("audit?action=task."))
    audit = page.get_by_test_id("audit")
    for action, actor in (("task.submit", "dev"), ("task.approve", "lead"),
                          ("task.start", "dev")):
        expect(audit.locator(f"tr[data-action='{action}']",
                             has_text=re.compile(rf"task: {task_id}\b"))
               .first).to_contain_text(actor)
    ui.shot("audit")

    # Each server's host key was recorded on first contact.
    ui.open(ui.space_path("servers"))
    servers = page.get_by_test_id("servers")
    expect(servers.locator("tbody tr")).to_have_count(len(hosts))
    expect(servers).not_to_contain_text("on first contact")
    ui.shot("servers")


def test_the_console_streams_while_the_task_runs(stage: Stage, ui: UI) -> None:
    project = stage.project(hosts=stage.fleet.hosts[:1], hooks={
        "prev_release": "echo first-line; sleep 3; echo second-line"})
    task = stage.submit(project, title="slow hook")
    ui.login("dev")
    ui.open(ui.space_path(f"tasks/{task['id']}"))
    with ui.page.expect_navigation():
        ui.page.get_by_test_id("start").click()

    # What the page showed at the moment the first line arrived.
    seen = ui.page.wait_for_function("""() => {
        const text = document.querySelector("[data-testid=console]").textContent;
        if (!text.includes("first-line")) { return null; }
        return {state: document.querySelector("[data-testid=task-state]").dataset.state,
                second: text.includes("second-line")};
    }""", timeout=DEPLOYED).json_value()
    assert seen == {"state": "running", "second": False}

    expect(ui.page.get_by_test_id("console")).to_contain_text("second-line",
                                                              timeout=DEPLOYED)
    expect_every_host_succeeded(ui, [project.hosts[0].name])


def test_rollback_from_the_releases_page_switches_back_to_the_older_release(
        stage: Stage, ui: UI) -> None:
    project = stage.project()
    older = stage.deploy(project, ref=git(project.repo, "rev-parse", "HEAD~1"),
                         title="first release")
    newer = stage.deploy(project, title="second release")
    assert {project.live_release_on(h) for h in project.hosts} == {newer["release"]}

    ui.login("dev")
    ui.open(ui.space_path(f"projects/{project.name}/targets/{stage.environment}/releases"))
    releases = ui.page.get_by_test_id("releases")
    expect(releases.locator("tr[data-release]")).to_have_count(2)
    newest_row = releases.locator(f"tr[data-release='{newer['release']}']")
    expect(newest_row.get_by_test_id("rollback")).to_have_count(0)  # live everywhere
    ui.shot("releases")

    with ui.page.expect_navigation():
        releases.locator(f"tr[data-release='{older['release']}']").get_by_test_id(
            "rollback").click()
    expect(ui.page.get_by_test_id("rollback-summary")).to_contain_text(older["release"])
    with ui.page.expect_navigation():
        ui.page.get_by_test_id("confirm-rollback").click()

    expect(ui.page.locator("h1 .kind-rollback")).to_be_visible()
    matrix = ui.page.get_by_test_id("matrix")
    for host in project.hosts:
        expect(matrix.locator(f"td[data-host='{host.name}'][data-stage]"
                              ":not([data-status='succeeded'])")).to_have_count(
            0, timeout=DEPLOYED)
    expect(ui.page.get_by_test_id("task-state")).to_have_attribute(
        "data-state", "succeeded", timeout=DEPLOYED)
    assert {project.live_release_on(h) for h in project.hosts} == {older["release"]}
