"""What a REPORTER sees (everything, with nothing to press), that the server refuses what the
page does not offer, and the interface in Chinese."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import UI, Stage

pytestmark = pytest.mark.e2e

ACTIONS = ("approve", "reject", "start", "cancel", "retry", "continue", "rollback", "edit",
           "new-task", "check-all", "check-selected")


def expect_read_only(ui: UI) -> None:
    """No action buttons, no form that changes anything (logging out aside), no link to
    a form that adds or edits."""
    page = ui.page
    for action in ACTIONS:
        expect(page.get_by_test_id(action)).to_have_count(0)
    expect(page.locator("main form[method=post]")).to_have_count(0)
    expect(page.locator("main a[href$='/new'], main a[href*='/new?'], main a[href$='/edit'], "
                        "main a[href*='/rollback']")).to_have_count(0)


def test_a_reporter_reads_everything_and_can_change_nothing(stage: Stage, ui: UI) -> None:
    project = stage.project(approvals=1, hosts=stage.fleet.hosts[:1],
                            hooks={"post_release": "echo hello-reporters"})
    done = stage.submit(project, title="deployed for all to read")
    stage.api("lead", "POST", f"/spaces/e2e/tasks/{done['id']}/approve",
              json={"comment": "fine"})
    stage.api("dev", "POST", f"/spaces/e2e/tasks/{done['id']}/start")
    release = stage.wait(done["id"])["release"]
    waiting = stage.submit(project, title="waits for a MASTER")

    ui.login("viewer")
    page = ui.page
    ui.open(ui.space_path(f"tasks/{done['id']}"))
    expect(page.locator("#live")).to_have_attribute("data-ended", "1")
    expect(page.get_by_test_id("console")).to_be_visible()
    expect(page.get_by_test_id("console")).to_contain_text("hello-reporters")
    expect(page.get_by_test_id("task-state")).to_have_attribute("data-state", "succeeded")
    expect_read_only(ui)

    ui.open(ui.space_path(f"tasks/{waiting['id']}"))
    expect(page.get_by_test_id("task-state")).to_have_attribute("data-state",
                                                                "pending_approval")
    expect(page.get_by_test_id("console")).to_be_visible()
    expect_read_only(ui)

    ui.open(ui.space_path("approvals"))
    expect(page.get_by_test_id("pending-count")).to_have_count(0)  # not theirs to decide
    expect(page.locator(f"tr[data-task='{waiting['id']}']")).to_contain_text(
        "waits for a MASTER")
    expect_read_only(ui)

    ui.open(ui.space_path(f"projects/{project.name}/targets/{stage.environment}/releases"))
    expect(page.get_by_test_id("releases").locator(f"tr[data-release='{release}']")
           ).to_be_visible()
    expect_read_only(ui)

    for path in ("servers", "tasks", f"projects/{project.name}", "projects"):
        ui.open(ui.space_path(path))
        expect_read_only(ui)

    # What the page does not offer, the server refuses: a form post carrying a valid
    # CSRF token, and the API with the session cookie.
    csrf = ui.csrf()
    forged = {
        f"/s/e2e/tasks/{waiting['id']}/approve": {"csrf": csrf, "comment": "forged"},
        f"/s/e2e/tasks/{done['id']}/retry": {"csrf": csrf},
        f"/s/e2e/projects/{project.name}/targets/{stage.environment}/rollback":
            {"csrf": csrf, "release": release, "servers": project.hosts[0].name},
    }
    for path, form in forged.items():
        refused = page.request.post(path, form=form, max_redirects=0)
        assert refused.status == 403, (path, refused.status)
        assert "form expired" not in refused.text()  # refused for the role, not the token
    api = page.request.post(f"/api/v1/spaces/e2e/tasks/{waiting['id']}/approve",
                            headers={"X-CSRF-Token": csrf}, data={"comment": "forged"})
    assert api.status == 403, api.text()
    assert "CSRF" not in api.text()
    after = stage.api("owner", "GET", f"/spaces/e2e/tasks/{waiting['id']}")
    assert after["state"] == "pending_approval"
    assert not after.get("approvals")


def test_the_interface_speaks_chinese_to_a_chinese_browser(browse: Callable[..., UI]) -> None:
    ui = browse(locale="zh-CN")
    page = ui.page
    ui.open("/login")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("form[action='/login'] button")).to_have_text("登录")
    ui.login("dev")
    tasks = page.locator("nav.main a[href$='/tasks']")
    expect(tasks).to_have_text("上线单")
    expect(page.locator("nav.main a[href$='/approvals']")).to_have_text("审批")
    ui.shot("dashboard-zh")

    with page.expect_navigation():
        page.locator(".langs a", has_text="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(tasks).to_have_text("Tasks")
    ui.open(ui.space_path("tasks"))  # the choice sticks, whatever the browser asks for
    expect(tasks).to_have_text("Tasks")

    with page.expect_navigation():
        page.locator(".langs a", has_text="简体中文").click()
    expect(tasks).to_have_text("上线单")
