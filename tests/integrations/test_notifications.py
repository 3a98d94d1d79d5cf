"""Notifications out: each channel kind reaches a real receiver on loopback that checks
the request the way its provider documents it (signatures included); delivery runs in
the background, retries with back-off, records every attempt, and refuses private
addresses unless allowed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from shipyard.integrations.notify import Notifier
from shipyard.jobs.recovery import recover_interrupted
from shipyard.jobs.run import finish, run_task
from shipyard.models import DeployTask, TaskKind, TaskState
from shipyard.models.types import utcnow
from shipyard.services.context import Runtime
from tests.factories import Factory
from tests.integrations.conftest import BASE, PROJECT, Hooked
from tests.integrations.receivers import Mailbox, Received, Receiver

LINK = "https://shipyard.example.com/s/acme/tasks/"
FINAL = ("delivered", "failed")


def channel(factory: Factory, name: str, kind: str, *, targets: tuple[str, ...] = ("prod",),
            **fields: Any) -> dict[str, Any]:
    made = factory.api("lead", "POST", f"{BASE}/channels", expect=201,
                       json={"name": name, "kind": kind, **fields})
    for env in targets:
        current = factory.api("lead", "GET", f"{BASE}/projects/{PROJECT}/targets/{env}/channels")
        factory.api("lead", "PUT", f"{BASE}/projects/{PROJECT}/targets/{env}/channels",
                    json={"channels": [{"name": c["name"], "events": c["events"]}
                                       for c in current] + [{"name": name}]})
    return dict(made)


def submit(factory: Factory, environment: str = "prod", user: str = "dev") -> int:
    task = factory.api(user, "POST", f"{BASE}/tasks", expect=201,
                       json={"project": PROJECT, "environment": environment,
                             "title": "Ship the new checkout"})
    return int(task["id"])


def notifications(factory: Factory, name: str, count: int = 1,
                  timeout: float = 15) -> list[dict[str, Any]]:
    """The channel's first ``count`` notifications once each is delivered or failed."""
    deadline = time.monotonic() + timeout
    while True:
        items = factory.api("lead", "GET", f"{BASE}/notifications",
                            params={"channel": name})["items"]
        done = [n for n in items if n["status"] in FINAL]
        if len(done) >= count and len(items) == len(done):
            return list(reversed(items))  # oldest first
        assert time.monotonic() < deadline, f"notifications of {name}: {items}"
        time.sleep(0.05)


def expect_task_facts(text: str, task_id: int, hooked: Hooked) -> None:
    for fact in ("shop", "prod", hooked.shas["main"][:8], f"#{task_id}", "dev",
                 f"{LINK}{task_id}"):
        assert fact in text, (fact, text)


# -- each channel kind, checked by a receiver as its provider documents it -----------------


def test_dingtalk_gets_a_signed_markdown_message(hooked: Hooked, factory: Factory,
                                                 receiver: Callable[..., Receiver]) -> None:
    secret = "SEC0123456789abcdef"

    def dingtalk(r: Received) -> tuple[int, Any]:
        # 加签: sign = urlencode(base64(HmacSHA256(secret, timestamp + "\n" + secret)))
        timestamp = r.query.get("timestamp", "0")
        expected = base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                                             hashlib.sha256).digest()).decode()
        fresh = abs(time.time() * 1000 - int(timestamp)) < 3600_000
        if r.query.get("access_token") != "tok123" or r.query.get("sign") != expected \
                or not fresh:
            return 200, {"errcode": 310000, "errmsg": "sign not match"}
        if r.json["msgtype"] != "markdown" or not r.json["markdown"]["title"]:
            return 200, {"errcode": 40035, "errmsg": "missing parameter"}
        return 200, {"errcode": 0, "errmsg": "ok"}

    robot = receiver(dingtalk)
    made = channel(factory, "ding", "dingtalk", url=robot.url("/robot/send?access_token=tok123"),
                   secret=secret)
    assert (made["url_host"], made["has_signing_secret"]) == ("127.0.0.1", True)
    task_id = submit(factory)
    [sent] = notifications(factory, "ding")
    assert sent["status"] == "delivered", sent
    assert sent["attempts"][0]["response"] == '{"errcode": 0, "errmsg": "ok"}'
    text = robot.requests[0].json["markdown"]["text"]
    expect_task_facts(text, task_id, hooked)
    assert "waiting for approval" in text and "Can approve: @boss, @lead" in text


def test_dingtalk_refusing_the_signature_is_a_failed_attempt(
        hooked: Hooked, factory: Factory, receiver: Callable[..., Receiver]) -> None:
    robot = receiver(lambda r: (200, {"errcode": 310000, "errmsg": "sign not match"}))
    channel(factory, "ding", "dingtalk", url=robot.url("/robot/send?access_token=t"),
            secret="SECwrong")
    submit(factory)
    [sent] = notifications(factory, "ding")
    assert sent["status"] == "failed"
    assert len(sent["attempts"]) == 3  # notify_max_attempts in these tests
    assert "code 310000 sign not match" in sent["last_error"]


def test_wecom_gets_a_markdown_message(hooked: Hooked, factory: Factory,
                                       receiver: Callable[..., Receiver]) -> None:
    def wecom(r: Received) -> tuple[int, Any]:
        content = r.json.get("markdown", {}).get("content", "")
        if r.path != "/cgi-bin/webhook/send" or r.query.get("key") != "k-42" or \
                r.json.get("msgtype") != "markdown" or len(content.encode()) > 4096:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        return 200, {"errcode": 0, "errmsg": "ok"}

    robot = receiver(wecom)
    channel(factory, "wecom", "wecom", url=robot.url("/cgi-bin/webhook/send?key=k-42"))
    task_id = submit(factory)
    assert notifications(factory, "wecom")[0]["status"] == "delivered"
    expect_task_facts(robot.requests[0].json["markdown"]["content"], task_id, hooked)


def test_feishu_gets_a_signed_rich_text_message(hooked: Hooked, factory: Factory,
                                                receiver: Callable[..., Receiver]) -> None:
    secret = "feishu-signing-secret"

    def feishu(r: Received) -> tuple[int, Any]:
        # The key is timestamp + "\n" + secret; the message signed is empty.
        body = r.json
        key = f"{body.get('timestamp')}\n{secret}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        fresh = abs(time.time() - int(body.get("timestamp", 0))) < 3600
        if body.get("sign") != expected or not fresh:
            return 200, {"code": 19021, "msg": "sign match fail or timestamp is not within "
                                               "one hour from current time"}
        if body.get("msg_type") != "post":
            return 200, {"code": 9499, "msg": "Bad Request"}
        return 200, {"code": 0, "msg": "success", "data": {}}

    bot = receiver(feishu)
    channel(factory, "lark", "feishu", url=bot.url("/open-apis/bot/v2/hook/abc"),
            secret=secret)
    task_id = submit(factory)
    assert notifications(factory, "lark")[0]["status"] == "delivered"
    post = bot.requests[0].json["content"]["post"]["zh_cn"]
    text = post["title"] + json.dumps(post["content"])
    expect_task_facts(text, task_id, hooked)
    assert post["content"][-1] == [{"tag": "a", "text": "Open in Shipyard",
                                    "href": f"{LINK}{task_id}"}]


def test_slack_gets_text_and_blocks(hooked: Hooked, factory: Factory,
                                    receiver: Callable[..., Receiver]) -> None:
    def slack(r: Received) -> tuple[int, Any]:
        body = r.json
        if not body.get("text") or not isinstance(body.get("blocks"), list):
            return 400, "invalid_payload"
        return 200, "ok"

    hook = receiver(slack)
    channel(factory, "slack", "slack", url=hook.url("/services/T000/B000/XXXX"))
    task_id = submit(factory)
    assert notifications(factory, "slack")[0]["status"] == "delivered"
    blocks = hook.requests[0].json["blocks"]
    expect_task_facts(json.dumps(blocks), task_id, hooked)
    assert f"<{LINK}{task_id}|Open in Shipyard>" in json.dumps(blocks)


def test_slack_answering_an_error_is_recorded(hooked: Hooked, factory: Factory,
                                              receiver: Callable[..., Receiver]) -> None:
    hook = receiver(lambda r: (404, "no_service"))
    channel(factory, "slack", "slack", url=hook.url("/services/gone"))
    submit(factory)
    [sent] = notifications(factory, "slack")
    assert sent["status"] == "failed"
    assert [(a["http_status"], a["response"]) for a in sent["attempts"]] == \
        [(404, "no_service")] * 3


def verified_json(secret: str) -> Callable[[Received], tuple[int, Any]]:
    def check(r: Received) -> tuple[int, Any]:
        expected = "sha256=" + hmac.new(secret.encode(), r.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, r.headers.get("x-shipyard-signature-256", "")):
            return 401, {"error": "bad signature"}
        return 200, {"ok": True}

    return check


def test_a_json_webhook_gets_signed_fields(hooked: Hooked, factory: Factory,
                                           receiver: Callable[..., Receiver]) -> None:
    hook = receiver(verified_json("whsec"))
    channel(factory, "json", "webhook", url=hook.url("/shipyard"), secret="whsec")
    task_id = submit(factory)
    [sent] = notifications(factory, "json")
    assert sent["status"] == "delivered"
    request = hook.requests[0]
    assert request.headers["x-shipyard-event"] == "submitted"
    assert request.headers["x-shipyard-delivery"] == str(sent["id"])
    body = request.json
    assert {k: body[k] for k in ("event", "task_id", "project", "environment", "commit",
                                 "short_commit", "submitted_by", "actor", "result",
                                 "task_url", "approvers")} == {
        "event": "submitted", "task_id": task_id, "project": "shop", "environment": "prod",
        "commit": hooked.shas["main"], "short_commit": hooked.shas["main"][:8],
        "submitted_by": "dev", "actor": "dev", "result": "pending_approval",
        "task_url": f"{LINK}{task_id}", "approvers": ["boss", "lead"]}


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_email_reaches_the_list_and_the_approvers(
        security: str, hooked: Hooked, factory: Factory, runtime: Runtime,
        mailbox: Callable[[str], Mailbox]) -> None:
    box = mailbox(security)
    runtime.settings.smtp_host = "127.0.0.1"
    runtime.settings.smtp_port = box.port
    runtime.settings.smtp_security = security  # type: ignore[assignment]
    runtime.settings.smtp_from = "shipyard@example.com"
    runtime.settings.notify_ca_file = mailbox.cert  # type: ignore[attr-defined]
    channel(factory, "mail", "email", to=["ops@example.com"])
    task_id = submit(factory)
    [sent] = notifications(factory, "mail")
    assert sent["status"] == "delivered", sent
    [mail] = box.wait_for(1)
    assert sorted(mail.recipients) == ["boss@example.com", "lead@example.com",
                                       "ops@example.com"]
    assert mail.sender == "shipyard@example.com"
    assert mail.tls is (security != "none")
    assert f"Deploy #{task_id} is waiting for approval" in mail.message["Subject"]
    expect_task_facts(mail.text, task_id, hooked)


def test_email_without_an_smtp_server_fails_once_and_says_why(
        hooked: Hooked, factory: Factory) -> None:
    channel(factory, "mail", "email", to=["ops@example.com"])
    submit(factory)
    [sent] = notifications(factory, "mail")
    assert sent["status"] == "failed" and len(sent["attempts"]) == 1
    assert "SHIPYARD_SMTP_HOST" in sent["last_error"]


# -- what is announced ------------------------------------------------------------------------


def test_every_kind_of_task_event_is_announced_with_who_and_why(
        hooked: Hooked, factory: Factory, runtime: Runtime,
        receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    channel(factory, "json", "webhook", url=hook.url("/events"), targets=("prod", "test"))
    rejected = submit(factory)
    factory.api("boss", "POST", f"{BASE}/tasks/{rejected}/reject",
                json={"reason": "freeze until Monday"})
    cancelled = submit(factory)
    factory.api("dev", "POST", f"{BASE}/tasks/{cancelled}/cancel")
    failed = submit(factory, "test")  # no approval needed: approved at once
    factory.api("dev", "POST", f"{BASE}/tasks/{failed}/start")
    run_task(runtime, failed)  # web-1 has no SSH key: the deploy fails
    with runtime.sessions.begin() as db:
        stale = utcnow() - timedelta(minutes=5)
        interrupted, rolled_back = submit(factory, "test"), submit(factory, "test")
        db.execute(update(DeployTask).where(DeployTask.id == interrupted)
                   .values(state=TaskState.RUNNING, heartbeat_at=stale, runner="gone:1:1"))
        db.execute(update(DeployTask).where(DeployTask.id == rolled_back)
                   .values(state=TaskState.RUNNING, kind=TaskKind.ROLLBACK,
                           rollback_to="20261122T101500-42", heartbeat_at=utcnow()))
    recover_interrupted(runtime, redispatch_queued=False)
    finish(runtime, rolled_back, TaskState.SUCCEEDED)
    sent = notifications(factory, "json", 11)
    assert all(n["status"] == "delivered" for n in sent)
    events = {(body["task_id"], body["event"]): body
              for body in (r.json for r in hook.requests)}
    assert set(events) == {
        (rejected, "submitted"), (rejected, "rejected"), (cancelled, "submitted"),
        (cancelled, "cancelled"), (failed, "approved"), (failed, "started"),
        (failed, "failed"), (interrupted, "approved"), (interrupted, "interrupted"),
        (rolled_back, "approved"), (rolled_back, "rolled_back")}
    assert (events[rejected, "rejected"]["actor"],
            events[rejected, "rejected"]["reason"]) == ("boss", "freeze until Monday")
    assert "Reason: freeze until Monday" in events[rejected, "rejected"]["text"]
    assert events[cancelled, "cancelled"]["actor"] == "dev"
    assert "no SSH key" in events[failed, "failed"]["reason"]
    assert events[failed, "failed"]["result"] == "failed"
    assert "Error: " in events[failed, "failed"]["text"]
    assert events[interrupted, "interrupted"]["reason"] == "the runner stopped"
    assert "rolled back to 20261122T101500-42" in events[rolled_back, "rolled_back"]["text"]


def test_a_target_can_narrow_a_channels_events(hooked: Hooked, factory: Factory,
                                               receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    channel(factory, "json", "webhook", url=hook.url("/"), targets=())
    factory.api("lead", "PUT", f"{BASE}/projects/{PROJECT}/targets/prod/channels",
                json={"channels": [{"name": "json", "events": ["rejected"]}]})
    task_id = submit(factory)
    factory.api("boss", "POST", f"{BASE}/tasks/{task_id}/reject", json={"reason": "no"})
    [sent] = notifications(factory, "json")
    assert sent["event"] == "rejected"
    assert [r.json["event"] for r in hook.requests] == ["rejected"]


def test_a_channel_can_be_tested(hooked: Hooked, factory: Factory,
                                 receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    channel(factory, "slack", "slack", url=hook.url("/t"), targets=())
    queued = factory.api("lead", "POST", f"{BASE}/channels/slack/test", expect=202)
    assert queued["event"] == "test"
    assert notifications(factory, "slack")[0]["status"] == "delivered"
    assert "Test message for channel slack" in hook.requests[0].json["text"]


# -- delivery: retries, timeouts, the URL guard, who sees it --------------------------------


def test_a_failing_receiver_is_retried_with_back_off_and_every_attempt_recorded(
        hooked: Hooked, factory: Factory, receiver: Callable[..., Receiver]) -> None:
    answers = iter([(500, "boom"), (502, "bad gateway"), (200, "ok")])
    hook = receiver(lambda r: next(answers))
    channel(factory, "slack", "slack", url=hook.url("/flaky"))
    submit(factory)
    [sent] = notifications(factory, "slack")
    assert sent["status"] == "delivered"
    attempts = sent["attempts"]
    assert [(a["number"], a["ok"], a["http_status"]) for a in attempts] == \
        [(1, False, 500), (2, False, 502), (3, True, 200)]
    assert "HTTP 500" in attempts[0]["error"] and attempts[0]["response"] == "boom"
    # The waits double (0.05 s, then 0.1 s in these settings).
    gaps = [(b["started_at"], a["started_at"]) for a, b in zip(attempts, attempts[1:],
                                                                strict=False)]
    from datetime import datetime
    seconds = [(datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
               for b, a in gaps]
    assert seconds[0] >= 0.05 and seconds[1] >= 0.1


def test_a_hanging_receiver_times_out_without_holding_anything_up(
        hooked: Hooked, factory: Factory, runtime: Runtime,
        receiver: Callable[..., Receiver]) -> None:
    runtime.settings.notify_timeout = 0.3
    runtime.settings.notify_max_attempts = 1
    stuck = receiver()
    stuck.hang()
    channel(factory, "stuck", "slack", url=stuck.url("/hang"))
    task_id = submit(factory)
    # The task's life goes on while the receiver holds the connection.
    factory.api("boss", "POST", f"{BASE}/tasks/{task_id}/approve", json={})
    factory.api("dev", "POST", f"{BASE}/tasks/{task_id}/cancel")
    sent = notifications(factory, "stuck", 3)
    assert [(n["event"], n["status"]) for n in sent] == [
        ("submitted", "failed"), ("approved", "failed"), ("cancelled", "failed")]
    assert all(n["attempts"][0]["error"] == "timed out after 0.3s" for n in sent)


def test_private_addresses_are_refused_unless_an_admin_allows_them(
        hooked: Hooked, factory: Factory, runtime: Runtime,
        receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    channel(factory, "local", "slack", url=hook.url("/x"))  # allowed in these tests
    runtime.settings.allow_private_webhook_urls = False
    for url in (hook.url("/x"), "http://10.0.0.8/hook", "http://169.254.169.254/latest",
                "http://[::1]:8080/", "http://localhost/x", "http://192.168.1.1/",
                "http://[::ffff:127.0.0.1]/", "ftp://example.com/x",
                "https://user:pw@example.com/"):
        refused = factory.api("lead", "POST", f"{BASE}/channels", expect=422,
                              json={"name": "evil", "kind": "webhook", "url": url})
        assert refused["code"] == "url_refused", (url, refused)
    # A URL saved while allowed is checked again at every send.
    submit(factory)
    [sent] = notifications(factory, "local")
    assert sent["status"] == "failed"
    assert len(sent["attempts"]) == 1  # no retry can make it allowed
    assert "refused: 127.0.0.1 is a loopback, private" in sent["attempts"][0]["error"]
    assert hook.requests == []


def test_notifications_and_attempts_are_for_masters(hooked: Hooked, factory: Factory) -> None:
    factory.api("lead", "GET", f"{BASE}/notifications")
    factory.api("dev", "GET", f"{BASE}/notifications", expect=403)
    factory.api("viewer", "GET", f"{BASE}/notifications", expect=403)
    factory.api("dev", "POST", f"{BASE}/channels", expect=403,
                json={"name": "x", "kind": "slack", "url": "https://hooks.slack.com/x"})


def test_channel_urls_and_secrets_are_never_shown(hooked: Hooked, factory: Factory,
                                                  receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    channel(factory, "ding", "dingtalk", url=hook.url("/robot/send?access_token=TOKEN-1"),
            secret="SEC-SECRET-1", targets=())
    factory.api("lead", "PATCH", f"{BASE}/channels/ding",
                json={"url": hook.url("/robot/send?access_token=TOKEN-2"),
                      "secret": "SEC-SECRET-2"})
    shown = json.dumps([factory.api("viewer", "GET", f"{BASE}/channels"),
                        factory.api("root", "GET", f"{BASE}/audit")])
    for secret in ("TOKEN-1", "TOKEN-2", "SEC-SECRET-1", "SEC-SECRET-2"):
        assert secret not in shown
    [listed] = factory.api("viewer", "GET", f"{BASE}/channels")
    assert (listed["url_host"], listed["has_url"], listed["has_signing_secret"]) == \
        ("127.0.0.1", True, True)
    factory.api("lead", "PATCH", f"{BASE}/channels/ding", json={"secret": ""})
    assert factory.api("viewer", "GET", f"{BASE}/channels")[0]["has_signing_secret"] is False


def test_channels_are_validated_per_kind(hooked: Hooked, factory: Factory) -> None:
    def refused(**body: Any) -> str:
        return str(factory.api("lead", "POST", f"{BASE}/channels", expect=422,
                               json={"name": "x", **body})["message"])

    assert "needs its url" in refused(kind="slack")
    assert "takes no signing secret" in refused(kind="slack", url="https://a.example/x",
                                                secret="s")
    assert "email" in refused(kind="email", to=["not-an-address"])
    assert "unknown events" in refused(kind="slack", url="https://a.example/x",
                                       events=["exploded"])
    factory.api("lead", "POST", f"{BASE}/channels", expect=201,
                json={"name": "x", "kind": "slack", "url": "https://a.example/x"})
    assert factory.api("lead", "POST", f"{BASE}/channels", expect=409,
                       json={"name": "x", "kind": "slack",
                             "url": "https://a.example/y"})["code"] == "already_exists"
    factory.api("lead", "PUT", f"{BASE}/projects/{PROJECT}/targets/prod/channels",
                json={"channels": [{"name": "nope"}]}, expect=422)


def test_pending_notifications_are_resumed_by_a_new_server(
        hooked: Hooked, factory: Factory, runtime: Runtime, notifier: Notifier,
        receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    channel(factory, "slack", "slack", url=hook.url("/later"), targets=())
    notifier.close()  # this server stops before it sends
    factory.api("lead", "POST", f"{BASE}/channels/slack/test", expect=202)
    assert factory.api("lead", "GET", f"{BASE}/notifications")["items"][0]["status"] == \
        "pending"
    successor = Notifier(runtime)
    try:
        successor.resume()
        assert notifications(factory, "slack")[0]["status"] == "delivered"
    finally:
        successor.close()
    assert len(hook.requests) == 1
