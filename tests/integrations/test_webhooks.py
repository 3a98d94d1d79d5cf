"""Webhooks in: each provider's documented deliveries, posted for real to the public
endpoint, create tasks through the ordinary path; everything else is refused or ignored,
recorded, and never processed twice."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from shipyard.services.context import Runtime
from tests.factories import Factory, commit
from tests.integrations import payloads
from tests.integrations.conftest import BASE, PROJECT, Hooked

HOOK = f"{BASE}/projects/{PROJECT}/webhook"
RULES = [
    {"name": "develop-to-test", "event": "push", "pattern": "develop",
     "environment": "test", "action": "deploy"},
    {"name": "tags-to-prod", "event": "tag", "pattern": "v*", "environment": "prod",
     "action": "submit"},
    {"name": "merged-to-staging", "event": "merge", "pattern": "main",
     "environment": "staging", "action": "deploy"},
]
PROVIDERS = ("github", "gitlab", "gitee")


def set_up(factory: Factory, rules: list[dict[str, Any]] = RULES) -> str:
    """The project's webhook secret, with ``rules`` saved by ``lead``."""
    hook = factory.api("lead", "PUT", HOOK, json={})
    factory.api("lead", "PUT", f"{HOOK}/rules", json={"rules": rules})
    assert hook["secret"]
    return str(hook["secret"])


def post(factory: Factory, provider: str, headers: dict[str, str], body: bytes, *,
         project: str = PROJECT, expect: int = 200) -> dict[str, Any]:
    response = factory.client.post(f"/api/v1/hooks/{provider}/acme/{project}",
                                   headers=headers, content=body)
    assert response.status_code == expect, response.text
    return dict(response.json())


def task(factory: Factory, task_id: int) -> dict[str, Any]:
    return dict(factory.api("root", "GET", f"{BASE}/tasks/{task_id}"))


def deliveries(factory: Factory, **query: Any) -> list[dict[str, Any]]:
    return list(factory.api("viewer", "GET", f"{HOOK}/deliveries", params=query)["items"])


def tasks_in(factory: Factory) -> list[dict[str, Any]]:
    return list(factory.api("root", "GET", f"{BASE}/tasks")["items"])


# -- what triggers what ------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_pushes_tags_and_merges_trigger_the_rules_they_match(
        provider: str, hooked: Hooked, factory: Factory) -> None:
    secret = set_up(factory)

    # develop pushed: deployed to test at once (no approval there).
    answer = post(factory, provider,
                  *payloads.delivery(provider, "push", "develop", hooked.shas["develop"],
                                     secret))
    assert answer["status"] == "triggered", answer
    [pushed] = answer["tasks"]
    made = task(factory, pushed)
    assert (made["environment"], made["ref"], made["commit"], made["state"]) == \
        ("test", "develop", hooked.shas["develop"], "queued")
    assert made["submitted_by"] == "lead"  # the rules' author
    assert hooked.dispatched.task_ids == [pushed]

    # A version tag: a prod task that waits for approval like any other.
    answer = post(factory, provider,
                  *payloads.delivery(provider, "tag", "v1.2.0", hooked.shas["v1.2.0"], secret))
    [tagged] = answer["tasks"]
    made = task(factory, tagged)
    assert (made["environment"], made["ref"], made["commit"], made["state"]) == \
        ("prod", "v1.2.0", hooked.shas["v1.2.0"], "pending_approval")
    assert hooked.dispatched.task_ids == [pushed]
    assert factory.api("boss", "POST", f"{BASE}/tasks/{tagged}/approve",
                       json={})["state"] == "approved"

    # A merge into main: deployed to staging.
    answer = post(factory, provider,
                  *payloads.delivery(provider, "merge", "main", hooked.shas["main"], secret))
    [merged] = answer["tasks"]
    made = task(factory, merged)
    assert (made["environment"], made["ref"], made["commit"], made["state"]) == \
        ("staging", "main", hooked.shas["main"], "queued")
    assert "merged into main" in made["title"]
    assert hooked.dispatched.task_ids == [pushed, merged]

    recorded = deliveries(factory)  # newest first
    assert [(d["status"], d["kind"], d["ref"], d["tasks"]) for d in recorded] == [
        ("triggered", "merge", "main", [merged]), ("triggered", "tag", "v1.2.0", [tagged]),
        ("triggered", "push", "develop", [pushed])]
    assert [d["results"][0]["rule"] for d in recorded] == \
        ["merged-to-staging", "tags-to-prod", "develop-to-test"]
    trail = factory.api("root", "GET", f"{BASE}/audit", params={"action": "webhook.trigger"})
    assert sorted(int(e["object_id"]) for e in trail["items"]) == [pushed, tagged, merged]


def test_every_matching_rule_fires(hooked: Hooked, factory: Factory) -> None:
    secret = set_up(factory, [
        {"name": "main-staging", "event": "push", "pattern": "main", "environment": "staging"},
        {"name": "main-prod", "event": "push", "pattern": "ma*", "environment": "prod",
         "action": "submit"},
        {"name": "off", "event": "push", "pattern": "*", "environment": "test",
         "enabled": False}])
    answer = post(factory, "github",
                  *payloads.delivery("github", "push", "main", hooked.shas["main"], secret))
    states = sorted((task(factory, t)["environment"], task(factory, t)["state"])
                    for t in answer["tasks"])
    assert states == [("prod", "pending_approval"), ("staging", "queued")]


def test_a_push_no_rule_wants_is_recorded_as_ignored_with_the_reason(
        hooked: Hooked, factory: Factory) -> None:
    secret = set_up(factory)
    feature = commit(hooked.repo, {"wip.txt": "x\n"}, "wip")
    answer = post(factory, "github",
                  *payloads.delivery("github", "push", "feature/login", feature, secret))
    assert answer["status"] == "ignored"
    assert answer["tasks"] == []
    assert "no rule matches push to 'feature/login'" in answer["reason"]
    assert "develop-to-test (push to develop)" in answer["reason"]
    [delivery] = deliveries(factory, status="ignored")
    assert delivery["reason"] == answer["reason"]
    assert tasks_in(factory) == []


@pytest.mark.parametrize(("provider", "event", "body", "why"), [
    ("github", "ping", {"zen": "Keep it logically awesome.", "hook_id": 1}, "ping"),
    ("github", "push", payloads.github_push("refs/heads/develop", "", deleted=True),
     "branch 'develop' was deleted"),
    ("github", "pull_request", payloads.github_pull_request("closed", "main", None, False),
     "closed without merging"),
    ("github", "issues", {"action": "opened"}, "'issues' is not one Shipyard acts on"),
    ("gitlab", "Merge Request Hook", payloads.gitlab_merge_request("open", "main", None),
     "merge request !12 open"),
    ("gitlab", "Push Hook", payloads.gitlab_push("refs/heads/develop", "", deleted=True),
     "branch 'develop' was deleted"),
    ("gitee", "Merge Request Hook", payloads.gitee_pull_request("open", "main", None),
     "pull request #3 open"),
])
def test_events_that_deploy_nothing_are_ignored_with_the_reason(
        provider: str, event: str, body: dict[str, Any], why: str, hooked: Hooked,
        factory: Factory) -> None:
    secret = set_up(factory)
    signed = {"github": payloads.github, "gitlab": payloads.gitlab,
              "gitee": payloads.gitee}[provider](event, body, secret)
    answer = post(factory, provider, *signed)
    assert answer["status"] == "ignored"
    assert why in answer["reason"]
    assert tasks_in(factory) == []


def test_a_rule_acts_only_while_its_author_may(hooked: Hooked, factory: Factory) -> None:
    secret = set_up(factory)
    factory.api("root", "DELETE", f"{BASE}/members/lead", expect=204)
    answer = post(factory, "github",
                  *payloads.delivery("github", "push", "develop", hooked.shas["develop"],
                                     secret))
    assert answer["status"] == "failed"
    assert answer["tasks"] == []
    assert "develop-to-test: acting as the rule's author" in answer["reason"]
    assert deliveries(factory)[0]["status"] == "failed"


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unsigned_and_wrongly_signed_deliveries_are_refused_and_recorded(
        provider: str, hooked: Hooked, factory: Factory) -> None:
    set_up(factory)
    unsigned = post(factory, provider,
                    *payloads.delivery(provider, "push", "develop", hooked.shas["develop"],
                                       None), expect=401)
    assert unsigned["code"] == "not_authenticated"
    wrong = post(factory, provider,
                 *payloads.delivery(provider, "push", "develop", hooked.shas["develop"],
                                    "not-the-secret"), expect=403)
    assert wrong["code"] == "forbidden"
    recorded = deliveries(factory, status="rejected")
    assert [d["http_status"] for d in recorded] == [403, 401]
    assert tasks_in(factory) == []


def test_a_body_changed_after_signing_is_refused(hooked: Hooked, factory: Factory) -> None:
    secret = set_up(factory)
    headers, body = payloads.delivery("github", "push", "develop", hooked.shas["develop"],
                                      secret)
    tampered = body.replace(b"refs/heads/develop", b"refs/heads/main!!")
    post(factory, "github", headers, tampered, expect=403)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_replayed_delivery_is_refused_and_processed_once(
        provider: str, hooked: Hooked, factory: Factory) -> None:
    secret = set_up(factory)
    headers, body = payloads.delivery(provider, "push", "develop", hooked.shas["develop"],
                                      secret)
    first = post(factory, provider, headers, body)
    again = post(factory, provider, headers, body, expect=409)
    assert again["code"] == "conflict"
    assert "processed only once" in again["message"]
    assert [t["id"] for t in tasks_in(factory)] == first["tasks"]
    assert [d["status"] for d in deliveries(factory)] == ["rejected", "triggered"]


def test_a_github_delivery_resent_under_a_new_delivery_id_is_still_a_replay(
        hooked: Hooked, factory: Factory) -> None:
    """The signature covers the body only: a captured delivery with a fresh
    X-GitHub-Delivery header is the same delivery."""
    secret = set_up(factory)
    headers, body = payloads.delivery("github", "push", "develop", hooked.shas["develop"],
                                      secret)
    post(factory, "github", headers, body)
    post(factory, "github", {**headers, "X-GitHub-Delivery": "another-guid"}, body,
         expect=409)
    assert len(tasks_in(factory)) == 1


def test_a_refused_delivery_does_not_block_the_genuine_one(hooked: Hooked,
                                                           factory: Factory) -> None:
    """Someone who saw a delivery id cannot spend it with a forged signature."""
    secret = set_up(factory)
    headers, body = payloads.delivery("github", "push", "develop", hooked.shas["develop"],
                                      secret)
    forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    post(factory, "github", forged, body, expect=403)
    assert post(factory, "github", headers, body)["status"] == "triggered"


def test_a_stale_gitee_signature_is_refused(hooked: Hooked, factory: Factory) -> None:
    secret = set_up(factory)
    two_hours_ago = int((time.time() - 7200) * 1000)
    headers, body = payloads.gitee("Push Hook", payloads.gitee_push(
        "refs/heads/develop", hooked.shas["develop"]), secret, timestamp_ms=two_hours_ago)
    refused = post(factory, "gitee", headers, body, expect=403)
    assert "stale or replayed" in refused["message"]


def test_gitee_password_mode_is_accepted(hooked: Hooked, factory: Factory) -> None:
    secret = set_up(factory)
    headers, body = payloads.gitee("Push Hook", payloads.gitee_push(
        "refs/heads/develop", hooked.shas["develop"]), secret, mode="password")
    assert post(factory, "gitee", headers, body)["status"] == "triggered"


def test_an_oversized_delivery_is_refused_and_recorded(hooked: Hooked, factory: Factory,
                                                       runtime: Runtime) -> None:
    secret = set_up(factory)
    runtime.settings.webhook_max_body_bytes = 4096
    body = payloads.github_push("refs/heads/develop", hooked.shas["develop"])
    body["padding"] = "x" * 5000
    headers, raw = payloads.github("push", body, secret)
    refused = post(factory, "github", headers, raw, expect=413)
    assert refused["code"] == "payload_too_large"
    [delivery] = deliveries(factory)
    assert (delivery["status"], delivery["http_status"]) == ("rejected", 413)


def test_an_unknown_project_is_answered_like_a_wrong_signature(
        hooked: Hooked, factory: Factory) -> None:
    secret = set_up(factory)
    headers, body = payloads.delivery("github", "push", "develop", hooked.shas["develop"],
                                      "not-the-secret")
    wrong = post(factory, "github", headers, body, expect=403)
    headers, body = payloads.delivery("github", "push", "develop", hooked.shas["develop"],
                                      secret)
    missing = post(factory, "github", headers, body, project="no-such-project", expect=403)
    assert missing == wrong
    unsigned = payloads.delivery("github", "push", "develop", hooked.shas["develop"], None)
    post(factory, "github", *unsigned, project="no-such-project", expect=401)
    post(factory, "bitbucket", headers, body, expect=404)


def test_a_project_without_a_webhook_refuses_and_records(hooked: Hooked,
                                                         factory: Factory) -> None:
    headers, body = payloads.delivery("gitlab", "push", "develop", hooked.shas["develop"],
                                      "guess")
    post(factory, "gitlab", headers, body, expect=403)
    [delivery] = deliveries(factory)
    assert delivery["reason"] == "no webhook is set up for this project"


def test_a_turned_off_webhook_refuses_signed_deliveries(hooked: Hooked,
                                                        factory: Factory) -> None:
    secret = set_up(factory)
    assert factory.api("lead", "PUT", HOOK, json={"enabled": False})["secret"] is None
    refused = post(factory, "github",
                   *payloads.delivery("github", "push", "develop", hooked.shas["develop"],
                                      secret), expect=403)
    assert "turned off" in refused["message"]


def test_refused_deliveries_are_kept_within_a_bound(hooked: Hooked, factory: Factory,
                                                    runtime: Runtime) -> None:
    set_up(factory)
    runtime.settings.webhook_keep_rejected = 3
    for _ in range(5):
        post(factory, "github",
             *payloads.delivery("github", "push", "develop", hooked.shas["develop"], "x"),
             expect=403)
    assert len(deliveries(factory, status="rejected")) == 3


# -- the secret and the rules ---------------------------------------------------------------


def test_the_secret_is_shown_once_and_rotating_replaces_it(hooked: Hooked,
                                                           factory: Factory) -> None:
    secret = set_up(factory)
    shown = factory.api("viewer", "GET", HOOK)
    assert shown["secret"] is None and shown["configured"] and shown["enabled"]
    assert shown["urls"]["github"] == \
        "https://shipyard.example.com/api/v1/hooks/github/acme/shop"
    assert factory.api("lead", "PUT", HOOK, json={"enabled": True})["secret"] is None
    rotated = factory.api("lead", "POST", f"{HOOK}/rotate")["secret"]
    assert rotated and rotated != secret
    old = payloads.delivery("github", "push", "develop", hooked.shas["develop"], secret)
    post(factory, "github", *old, expect=403)
    new = payloads.delivery("github", "push", "develop", hooked.shas["develop"], rotated)
    assert post(factory, "github", *new)["status"] == "triggered"
    trail = json.dumps(factory.api("root", "GET", f"{BASE}/audit",
                                   params={"action": "webhook"}))
    assert secret not in trail and rotated not in trail
    assert "webhook.rotate" in trail


def test_the_urls_shown_are_where_deliveries_are_received(hooked: Hooked,
                                                          factory: Factory) -> None:
    secret = set_up(factory)
    url = factory.api("lead", "GET", HOOK)["urls"]["gitlab"]
    path = url.removeprefix("https://shipyard.example.com")
    headers, body = payloads.delivery("gitlab", "push", "develop", hooked.shas["develop"],
                                      secret)
    response = factory.client.post(path, headers=headers, content=body)
    assert response.status_code == 200, response.text


def test_rules_are_validated_and_listed_in_order(hooked: Hooked, factory: Factory) -> None:
    set_up(factory)
    listed = factory.api("viewer", "GET", f"{HOOK}/rules")
    assert [(r["name"], r["run_as"]) for r in listed] == [
        ("develop-to-test", "lead"), ("tags-to-prod", "lead"), ("merged-to-staging", "lead")]
    no_target = factory.api("lead", "PUT", f"{HOOK}/rules", expect=422, json={"rules": [
        {"name": "x", "event": "push", "pattern": "main", "environment": "nowhere"}]})
    assert "no target in 'nowhere'" in no_target["message"]
    factory.api("lead", "PUT", f"{HOOK}/rules", expect=422, json={"rules": [
        {"name": "x", "event": "push", "pattern": "two words", "environment": "test"}]})
    factory.api("lead", "PUT", f"{HOOK}/rules", expect=422, json={"rules": [
        {"name": "x", "event": "comment", "pattern": "main", "environment": "test"}]})
    factory.api("lead", "PUT", f"{HOOK}/rules", expect=422, json={"rules": [
        {"name": "x", "event": "push", "pattern": "a", "environment": "test"},
        {"name": "x", "event": "push", "pattern": "b", "environment": "test"}]})
    # Refusals changed nothing.
    assert len(factory.api("viewer", "GET", f"{HOOK}/rules")) == 3


def test_only_masters_set_up_webhooks_but_reporters_see_deliveries(
        hooked: Hooked, factory: Factory) -> None:
    factory.api("dev", "PUT", HOOK, json={}, expect=403)
    factory.api("dev", "POST", f"{HOOK}/rotate", expect=403)
    factory.api("dev", "PUT", f"{HOOK}/rules", json={"rules": []}, expect=403)
    factory.api("viewer", "GET", HOOK)
    factory.api("viewer", "GET", f"{HOOK}/deliveries")
    factory.api("viewer", "GET", f"{HOOK}/rules")
