"""Webhooks and notifications in the browser, over HTTP: the webhook's secret shown once,
the rules editor with errors next to the row at fault, deliveries posted to the real
inbound endpoint listed with their outcome, channels whose URL and secret are never
rendered, per-target channels, the record of sent notifications (MASTER+), buttons only
for those who may use them and forged requests refused anyway."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import select

from shipyard.config import Settings
from shipyard.integrations.notify import notifier_of
from shipyard.models import Notification, NotificationAttempt, Space
from shipyard.models.types import utcnow
from shipyard.services.context import Runtime
from shipyard.web import i18n
from tests.factories import Factory, World, git
from tests.integrations import payloads
from tests.integrations.receivers import Receiver
from tests.web.test_admin_pages import Browser

PUBLIC = "https://shipyard.example.com"
HOOK_PAGE = "/s/acme/projects/shop/webhook"
TEMPLATES = Path(i18n.__file__).parent / "templates" / "pages"
MY_TEMPLATES = [*TEMPLATES.glob("webhook*.html"), *TEMPLATES.glob("channel*.html"),
                TEMPLATES / "target_channels.html", TEMPLATES / "notifications.html"]
FLASHES = ("Webhook turned on.", "Webhook turned off.", "Rules saved.", "Channel added.",
           "Channel saved.", "Channel deleted.", "Notification channels saved.",
           "Test message queued: its delivery shows below.")
ROBOT_URL = "https://oapi.dingtalk.com/robot/send?access_token=tok-4f1e-very-secret"
SIGNING_SECRET = "SECsigning-d00d-secret"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "public_url": PUBLIC,
        "allow_private_webhook_urls": True,  # the test receiver listens on 127.0.0.1
        "notify_timeout": 2.0, "notify_backoff": 0.05, "notify_backoff_max": 0.1,
        "notify_max_attempts": 2})


@pytest.fixture
def runtime(runtime: Runtime) -> Iterator[Runtime]:
    yield runtime
    notifier = notifier_of(runtime)
    if notifier is not None:
        notifier.close(timeout=5)


@pytest.fixture
def world(factory: Factory) -> World:
    """Space ``acme`` (one member per role); project ``shop`` with target ``test``
    (one approval required, so nothing a webhook submits starts running)."""
    return factory.world()


@pytest.fixture
def login(app):  # type: ignore[no-untyped-def]
    return lambda username: Browser(app, username)


def ids_in(html: str) -> set[str]:
    return set(re.findall(r'data-testid="([^"]+)"', html))


def secret_in(html: str) -> str:
    match = re.search(r'data-testid="webhook-secret">([^<]+)<', html)
    assert match, "no secret on the page"
    return match.group(1)


def set_up_webhook(master: Browser) -> str:
    response = master.post(HOOK_PAGE, {"enabled": "true"})
    assert response.status_code == 200, response.text
    return secret_in(response.text)


def rule_rows(*rows: dict[str, str]) -> dict[str, str]:
    """The editor's fields for ``rows``, in order."""
    fields: dict[str, str] = {}
    for i, row in enumerate(rows):
        fields.update({f"rule-{i}-{key}": value for key, value in row.items()})
    return fields


def rule_names(html: str) -> list[str]:
    return re.findall(r'name="rule-\d+-name" value="([^"]*)"', html)


def deliver(client: Any, headers: dict[str, str], body: bytes) -> Any:
    return client.post("/api/v1/hooks/github/acme/shop", headers=headers, content=body)


# -- the webhook ----------------------------------------------------------------------------

def test_setting_up_the_webhook_shows_the_secret_once_and_never_again(world, login):
    master = login("master")
    page = master.get(HOOK_PAGE)
    assert page.status_code == 200
    for provider in ("github", "gitlab", "gitee"):
        assert f"{PUBLIC}/api/v1/hooks/{provider}/acme/shop" in page.text
    assert 'data-testid="webhook-setup"' in page.text and "webhook-secret" not in page.text

    response = master.post(HOOK_PAGE, {"enabled": "true"})
    assert response.headers["cache-control"] == "no-store"
    secret = secret_in(response.text)
    assert len(secret) >= 32

    again = master.get(HOOK_PAGE)
    assert secret not in again.text and "webhook-secret" not in again.text
    assert {"webhook-rotate", "webhook-off"} <= ids_in(again.text)
    assert secret not in master.get("/s/acme/projects/shop").text

    rotated = secret_in(master.post(f"{HOOK_PAGE}/rotate").text)
    assert rotated != secret
    later = master.get(HOOK_PAGE).text
    assert rotated not in later and secret not in later

    off = master.post(HOOK_PAGE, {"enabled": "false"}, follow_redirects=True)
    assert "Webhook turned off." in off.text and 'data-testid="webhook-on"' in off.text
    assert "webhook-secret" not in off.text


def test_rules_are_edited_in_order_and_an_invalid_rule_shows_its_error_next_to_it(
        world, login, factory):
    master = login("master")
    added = master.post(f"{HOOK_PAGE}/rules", {"op": "add"})
    assert added.status_code == 200 and rule_names(added.text) == ["rule-1"]
    assert 'data-testid="unsaved"' in added.text

    main = {"name": "main-to-test", "event": "push", "pattern": "main",
            "environment": "test", "action": "submit", "enabled": "on"}
    tags = {"name": "tags", "event": "tag", "pattern": "v*", "environment": "test",
            "action": "deploy", "enabled": "on"}
    invalid = master.post(f"{HOOK_PAGE}/rules", {"op": "save", **rule_rows(
        main, {**tags, "name": "Tags!", "pattern": "v 1"})})
    assert invalid.status_code == 422
    assert re.search(r'data-error-for="rule-1-pattern">[^<]*branch or tag name', invalid.text)
    assert re.search(r'data-error-for="rule-1-name">[^<]*lowercase', invalid.text)
    assert "rule-0-" not in "".join(re.findall(r'data-error-for="([^"]+)"', invalid.text))
    assert rule_names(invalid.text) == ["main-to-test", "Tags!"]
    assert 'value="v 1"' in invalid.text  # what was typed is kept

    no_target = master.post(f"{HOOK_PAGE}/rules", {"op": "save", **rule_rows(
        main, {**tags, "environment": "prod"})})
    assert no_target.status_code == 422
    assert re.search(r'data-error-for="rule-1-environment">[^<]*no target in', no_target.text)
    assert factory.api("master", "GET", "/spaces/acme/projects/shop/webhook/rules") == []

    moved = master.post(f"{HOOK_PAGE}/rules", {"op": "up-1", **rule_rows(main, tags)})
    assert rule_names(moved.text) == ["tags", "main-to-test"]
    saved = master.post(f"{HOOK_PAGE}/rules", {"op": "save", **rule_rows(
        {**tags, "enabled": ""}, main)}, follow_redirects=True)
    assert "Rules saved." in saved.text and rule_names(saved.text) == ["tags", "main-to-test"]
    rules = factory.api("master", "GET", "/spaces/acme/projects/shop/webhook/rules")
    assert [(r["name"], r["enabled"], r["action"], r["run_as"]) for r in rules] == [
        ("tags", False, "deploy", "master"), ("main-to-test", True, "submit", "master")]

    removed = master.post(f"{HOOK_PAGE}/rules", {"op": "remove-0", **rule_rows(tags, main)})
    assert rule_names(removed.text) == ["main-to-test"]


def test_deliveries_show_what_they_triggered_or_why_they_were_ignored_or_refused(
        world, login, client):
    master = login("master")
    secret = set_up_webhook(master)
    master.post(f"{HOOK_PAGE}/rules", {"op": "save", **rule_rows({
        "name": "main-to-test", "event": "push", "pattern": "main", "environment": "test",
        "action": "deploy", "enabled": "on"})})
    sha = git(world.repo, "rev-parse", "main")

    body = payloads.github_push("refs/heads/main", sha)
    body["sender"]["login"] = "<img src=x>mona"
    answer = deliver(client, *payloads.github("push", body, secret)).json()
    assert answer["status"] == "triggered"
    [task_id] = answer["tasks"]
    ignored = deliver(client, *payloads.delivery("github", "push", "develop", sha, secret))
    assert ignored.json()["status"] == "ignored"
    assert deliver(client, *payloads.delivery("github", "push", "main", sha,
                                              "wrong-secret")).status_code == 403

    viewer = login("reporter")
    page = viewer.get(HOOK_PAGE)
    assert page.status_code == 200
    rows = re.findall(r'<tr data-delivery="\d+" data-status="(\w+)">(.*?)</tr>\s*'
                      r'(?=<tr data|</tbody>)', page.text, re.S)
    assert [status for status, _ in rows] == ["rejected", "ignored", "triggered"]
    refused, skipped, triggered = (row for _, row in rows)
    assert "HTTP 403" in refused
    assert ignored.json()["reason"] and ignored.json()["reason"] in html.unescape(skipped)
    assert f'href="/s/acme/tasks/{task_id}"' in triggered and "main-to-test" in triggered
    assert "<img src=x>" not in page.text and "&lt;img src=x&gt;mona" in page.text
    # A REPORTER reads the webhook but has no button to change it.
    assert not {"webhook-setup", "webhook-rotate", "webhook-off", "rules-form"} & \
        ids_in(page.text)

    only_ignored = viewer.get(HOOK_PAGE, params={"status": "ignored"}).text
    assert re.findall(r'data-delivery="\d+" data-status="(\w+)"', only_ignored) == ["ignored"]


# -- channels -------------------------------------------------------------------------------

def test_a_channel_is_created_and_edited_without_its_url_or_secret_ever_rendered(
        world, login, factory):
    master = login("master")
    assert master.get("/s/acme/channels/new").status_code == 200
    missing_url = master.post("/s/acme/channels/new", {
        "name": "ops-dingtalk", "kind": "dingtalk", "secret": SIGNING_SECRET,
        "enabled": "on"})
    assert missing_url.status_code == 422
    assert re.search(r'data-error-for="url">[^<]*needs its url', missing_url.text)
    assert 'value="ops-dingtalk"' in missing_url.text
    assert SIGNING_SECRET not in missing_url.text

    created = master.post("/s/acme/channels/new", {
        "name": "ops-dingtalk", "kind": "dingtalk", "url": ROBOT_URL,
        "secret": SIGNING_SECRET, "events": ["failed", "succeeded"], "enabled": "on"},
        follow_redirects=True)
    assert "Channel added." in created.text
    row = re.search(r'<tr data-channel="ops-dingtalk">(.*?)</tr>', created.text, re.S)
    assert row and "oapi.dingtalk.com" in row.group(1) and "signed" in row.group(1)
    edit = master.get("/s/acme/channels/ops-dingtalk")
    for text in (created.text, edit.text):
        assert "tok-4f1e" not in text and SIGNING_SECRET not in text
    assert re.search(r'name="events" value="failed" checked', edit.text)

    bad_url = master.post("/s/acme/channels/ops-dingtalk", {
        "url": "ftp://example.com/robot", "secret": "SECnew-one", "enabled": "on"})
    assert bad_url.status_code == 422
    assert re.search(r'data-error-for="url">[^<]*https://', bad_url.text)
    assert "SECnew-one" not in bad_url.text and "ftp://example.com" not in bad_url.text

    saved = master.post("/s/acme/channels/ops-dingtalk", {"events": ["failed"]},
                        follow_redirects=True)
    assert "Channel saved." in saved.text
    [channel] = factory.api("master", "GET", "/spaces/acme/channels")
    assert (channel["events"], channel["enabled"], channel["has_signing_secret"]) == \
        (["failed"], False, True)  # empty URL and secret fields kept what was stored

    gone = master.post("/s/acme/channels/ops-dingtalk/delete", follow_redirects=True)
    assert "Channel deleted." in gone.text and 'data-channel="ops-dingtalk"' not in gone.text


def test_a_target_chooses_its_channels_and_their_events(world, login, factory):
    for name in ("ops-mail", "team-slack"):
        factory.api("master", "POST", "/spaces/acme/channels", expect=201, json={
            "name": name, "kind": "email" if name == "ops-mail" else "slack",
            "to": ["ops@example.com"], "url": "https://hooks.slack.com/services/T/B/x"})
    master = login("master")
    project = master.get("/s/acme/projects/shop").text
    url = "/s/acme/projects/shop/targets/test/channels"
    assert f'href="{url}"' in project and 'href="/s/acme/projects/shop/webhook"' in project

    saved = master.post(url, {"channel": ["ops-mail", "team-slack"],
                              "events-ops-mail": ["failed", "rolled_back"]},
                        follow_redirects=True)
    assert "Notification channels saved." in saved.text
    assert re.search(r'name="channel" value="ops-mail"[^>]*checked', saved.text)
    assert re.search(r'name="events-ops-mail" value="rolled_back" checked', saved.text)
    chosen = factory.api("master", "GET", "/spaces/acme/projects/shop/targets/test/channels")
    assert [(c["name"], c["events"]) for c in chosen] == [
        ("ops-mail", ["failed", "rolled_back"]), ("team-slack", None)]

    viewer = login("reporter").get(url).text
    assert "save-target-channels" not in viewer and "disabled" in viewer


# -- who may do what ------------------------------------------------------------------------

def test_a_reporter_sees_no_manage_buttons_and_forged_posts_are_refused(
        world, login, factory):
    factory.api("master", "POST", "/spaces/acme/channels", expect=201, json={
        "name": "ops-slack", "kind": "slack", "url": "https://hooks.slack.com/services/T/B/x"})
    viewer = login("reporter")
    channels = viewer.get("/s/acme/channels")
    assert channels.status_code == 200 and 'data-channel="ops-slack"' in channels.text
    assert not {"add-channel", "test-ops-slack"} & ids_in(channels.text)
    assert "/channels/ops-slack/delete" not in channels.text
    assert "/s/acme/notifications" not in channels.text

    forged = {"/s/acme/channels/new": {"name": "mine", "kind": "slack",
                                       "url": "https://hooks.slack.com/services/T/B/y"},
              "/s/acme/channels/ops-slack/delete": {},
              "/s/acme/channels/ops-slack/test": {},
              HOOK_PAGE: {"enabled": "true"},
              f"{HOOK_PAGE}/rotate": {},
              f"{HOOK_PAGE}/rules": {"op": "save", **rule_rows({
                  "name": "x", "event": "push", "pattern": "*", "environment": "test",
                  "action": "deploy"})},
              "/s/acme/projects/shop/targets/test/channels": {"channel": ["ops-slack"]}}
    for url, data in forged.items():
        assert viewer.post(url, data).status_code == 403, url
    assert viewer.get("/s/acme/channels/new").status_code == 403
    assert [c["name"] for c in factory.api("master", "GET", "/spaces/acme/channels")] == \
        ["ops-slack"]
    hook = factory.api("master", "GET", "/spaces/acme/projects/shop/webhook")
    assert hook["configured"] is False
    assert factory.api("master", "GET", "/spaces/acme/notifications")["items"] == []


def test_sent_notifications_are_for_masters_with_every_attempt_and_paging(
        world, login, runtime):
    with runtime.sessions.begin() as db:
        space_id = db.scalar(select(Space.id).where(Space.name == "acme"))
        now = utcnow()
        for i in range(33):
            db.add(Notification(space_id=space_id, channel_name="ops-mail", task_id=None,
                                event="failed", message={"headline": f"note {i}"},
                                status="delivered", attempts=1,
                                created_at=now - timedelta(minutes=40 - i)))
        failing = Notification(space_id=space_id, channel_name="ops-robot", event="started",
                               message={"headline": "robot down"}, status="failed",
                               attempts=2, created_at=now - timedelta(minutes=1))
        db.add(failing)
        db.flush()
        db.add_all([NotificationAttempt(notification_id=failing.id, number=1, ok=False,
                                        http_status=502, error="HTTP 502 Bad Gateway",
                                        duration_ms=41),
                    NotificationAttempt(notification_id=failing.id, number=2, ok=False,
                                        http_status=None, error="timed out after 2s",
                                        duration_ms=2003)])

    assert login("developer").get("/s/acme/notifications").status_code == 403
    master = login("master")
    page = master.get("/s/acme/notifications")
    assert page.status_code == 200
    first = re.findall(r'data-notification="(\d+)" data-status="(\w+)"', page.text)
    assert len(first) == 30 and first[0][1] == "failed"
    newest = re.search(r'data-notification="\d+" data-status="failed">(.*?)</table>',
                       page.text, re.S)
    assert newest
    for shown in ("502", "HTTP 502 Bad Gateway", "41 ms", "timed out after 2s", "2003 ms"):
        assert shown in newest.group(1)
    older = re.search(r'href="([^"]+)" rel="next"', page.text)
    assert older
    rest = master.get(older.group(1).replace("&amp;", "&"))
    assert len(re.findall(r'data-notification="\d+"', rest.text)) == 4
    robot = master.get("/s/acme/notifications", params={"channel": "ops-robot"}).text
    assert re.findall(r'data-notification="\d+"', robot) == [f'data-notification="{failing.id}"']


def test_send_test_queues_a_message_whose_delivery_the_notifications_page_shows(
        world, login, runtime):
    receiver = Receiver()
    try:
        master = login("master")
        master.post("/s/acme/channels/new", {"name": "ops-hook", "kind": "webhook",
                                             "url": receiver.url("/in"), "enabled": "on"})
        sent = master.post("/s/acme/channels/ops-hook/test", follow_redirects=False)
        assert sent.status_code == 303
        assert sent.headers["location"] == "/s/acme/notifications?channel=ops-hook"
        [request] = receiver.wait_for(1)
        assert request.headers["x-shipyard-event"] == "test"
        notifier = notifier_of(runtime)
        assert notifier is not None and notifier.wait_idle(10)
        page = master.get(sent.headers["location"]).text
        row = re.search(r'data-notification="\d+" data-status="(\w+)">(.*?)</table>',
                        page, re.S)
        assert row and row.group(1) == "delivered"
        assert re.search(r"<td>200</td>", row.group(2)) and "Test message" in row.group(2)
    finally:
        receiver.close()


# -- language -------------------------------------------------------------------------------

def test_the_pages_speak_chinese(world, login):
    master = login("master")
    zh = {"Accept-Language": "zh-CN,zh;q=0.9"}
    assert "通知渠道" in master.get("/s/acme/channels", headers=zh).text
    assert "最近的推送" in master.get(HOOK_PAGE, headers=zh).text


def test_every_string_on_these_pages_has_a_chinese_translation():
    catalog: dict[str, str] = {}
    for po in (i18n.LOCALE_DIR / "zh_CN").glob("*.po"):
        with po.open("rb") as f:
            catalog.update({m.id: m.string for m in read_po(f) if m.id and m.string})
    single = re.compile(r"""\b_\(\s*(?:"([^"]*)"|'([^']*)')""")
    missing = [(t.name, m) for t in MY_TEMPLATES
               for m in (a or b for a, b in single.findall(t.read_text()))
               if m not in catalog]
    missing += [("flash", m) for m in FLASHES if m not in catalog]
    assert not missing
