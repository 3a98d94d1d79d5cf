"""Create, read, update and delete through the API, for every kind of object, and the
deploy task's life: pinned refs, edits that withdraw approvals, reasons for rejections,
compare-and-set state changes, and paginated, filtered lists."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from shipyard.auth.rbac import Principal
from shipyard.errors import StateConflict
from shipyard.models import DeployTask, Server
from shipyard.models.types import utcnow
from shipyard.services import accounts, lookup, tasks
from shipyard.services.context import Runtime, unit_of_work
from tests.api.conftest import RecordingDispatcher
from tests.factories import Factory, World, commit, git

ACME = "/spaces/acme"
ENVS = f"{ACME}/environments"
SERVERS = f"{ACME}/servers"
CREDS = f"{ACME}/credentials"
PROJECTS = f"{ACME}/projects"
SHOP = f"{PROJECTS}/shop"
TASKS = f"{ACME}/tasks"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr4mWqLkK5ScsAAvLrBa4b1V6Yf3PnHr4NWv3Um8Gck"


def names(items: list[dict[str, Any]], key: str = "name") -> list[str]:
    return [item[key] for item in items]


# -- environments ----------------------------------------------------------------------------


def test_environments_round_trip_in_their_order(world: World, factory: Factory) -> None:
    def order() -> list[str]:
        return names(factory.api("reporter", "GET", ENVS))

    assert order() == ["test", "prod"]
    staging = factory.api("owner", "POST", ENVS, json={"name": "staging", "position": 5},
                          expect=201)
    assert staging == {"name": "staging", "position": 5}
    factory.api("owner", "POST", ENVS, json={"name": "dev"}, expect=201)  # goes last
    assert order() == ["test", "staging", "prod", "dev"]
    factory.api("owner", "PATCH", f"{ENVS}/dev", json={"position": 0})
    factory.api("owner", "PATCH", f"{ENVS}/test", json={"position": 1})
    assert order() == ["dev", "test", "staging", "prod"]
    assert factory.api("owner", "PATCH", f"{ENVS}/staging", json={"name": "stage"}) == \
        {"name": "stage", "position": 5}

    dup = factory.api("owner", "POST", ENVS, json={"name": "prod"}, expect=409)
    assert (dup["code"], dup["field"]) == ("already_exists", "name")
    factory.api("owner", "PATCH", f"{ENVS}/stage", json={"name": "prod"}, expect=409)
    factory.api("owner", "DELETE", f"{ENVS}/stage", expect=204)
    assert order() == ["dev", "test", "prod"]
    factory.api("owner", "PATCH", f"{ENVS}/stage", json={"position": 3}, expect=404)
    in_use = factory.api("owner", "DELETE", f"{ENVS}/test", expect=409)  # shop's target
    assert in_use["code"] == "conflict"


# -- servers ------------------------------------------------------------------------------------


def test_servers_round_trip_with_labels(world: World, factory: Factory) -> None:
    created = factory.api("master", "POST", SERVERS, expect=201,
                          json={"name": "db-1", "host": "10.0.0.21", "port": 2222,
                                "user": "deploy", "labels": ["db", "primary", "db"]})
    assert {k: created[k] for k in ("name", "host", "port", "user", "labels", "host_key")} \
        == {"name": "db-1", "host": "10.0.0.21", "port": 2222, "user": "deploy",
            "labels": ["db", "primary"], "host_key": None}
    assert factory.api("reporter", "GET", f"{SERVERS}/db-1") == created

    def labelled(label: str) -> list[str]:
        return names(factory.api("reporter", "GET", SERVERS, params={"label": label})["items"])

    assert (labelled("db"), labelled("web")) == (["db-1"], ["web-1", "web-2"])
    patched = factory.api("master", "PATCH", f"{SERVERS}/db-1", json={"labels": ["db"]})
    assert (patched["labels"], patched["port"], patched["user"]) == (["db"], 2222, "deploy")
    factory.api("master", "PATCH", f"{SERVERS}/db-1", json={"name": "db-2"})
    factory.api("reporter", "GET", f"{SERVERS}/db-1", expect=404)
    dup = factory.api("master", "POST", SERVERS, expect=409,
                      json={"name": "web-1", "host": "10.0.0.99"})
    assert (dup["code"], dup["field"]) == ("already_exists", "name")

    factory.api("master", "DELETE", f"{SERVERS}/db-2", expect=204)
    factory.api("reporter", "GET", f"{SERVERS}/db-2", expect=404)


def test_server_lists_are_paginated(world: World, factory: Factory) -> None:
    for i in range(3, 6):
        factory.api("master", "POST", SERVERS, json={"name": f"web-{i}", "host": f"10.0.0.{i}"},
                    expect=201)
    seen: list[str] = []
    cursor = None
    while True:
        page = factory.api("reporter", "GET", SERVERS,
                           params={"limit": 2} | ({"cursor": cursor} if cursor else {}))
        seen += names(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["web-1", "web-2", "web-3", "web-4", "web-5"]


def record_host_key(runtime: Runtime, name: str) -> None:
    """As the first SSH contact would."""
    with runtime.sessions.begin() as db:
        db.execute(update(Server).where(Server.name == name)
                   .values(host_key=HOST_KEY, host_key_recorded_at=utcnow()))


@pytest.mark.parametrize(("change", "forgets"), [
    ({"labels": ["web", "blue"]}, False),
    ({"user": "deploy"}, False),
    ({"host": "10.0.0.99"}, True),
    ({"port": 2222}, True),
])
def test_a_server_forgets_its_host_key_only_when_it_becomes_another_machine(
        world: World, factory: Factory, runtime: Runtime, change: dict[str, Any],
        forgets: bool) -> None:
    record_host_key(runtime, "web-1")
    server = factory.api("master", "PATCH", f"{SERVERS}/web-1", json=change)
    assert server["host_key"] == (None if forgets else HOST_KEY)
    assert (server["host_key_recorded_at"] is None) == forgets


def test_a_host_key_can_be_forgotten_on_purpose(world: World, factory: Factory,
                                                runtime: Runtime) -> None:
    record_host_key(runtime, "web-1")
    factory.api("developer", "POST", f"{SERVERS}/web-1/forget-host-key", expect=403)
    assert factory.api("master", "POST", f"{SERVERS}/web-1/forget-host-key")["host_key"] \
        is None


# -- credentials ----------------------------------------------------------------------------------


def test_credentials_are_write_only(world: World, factory: Factory) -> None:
    created = factory.api("master", "POST", CREDS, expect=201,
                          json={"name": "api", "kind": "token", "username": "bot",
                                "secret": "tok-SECRET-1"})
    assert "secret" not in created
    assert (created["has_secret"], created["public_key"], created["fingerprint"]) == \
        (True, None, "")
    assert factory.api("reporter", "GET", f"{CREDS}/api") == created
    assert names(factory.api("reporter", "GET", CREDS)) == ["api", "git-token"]

    patched = factory.api("master", "PATCH", f"{CREDS}/api", json={"username": "robot"})
    assert (patched["username"], patched["has_secret"]) == ("robot", True)
    factory.api("master", "PATCH", f"{CREDS}/api", json={"secret": "tok-SECRET-2"})
    factory.api("master", "DELETE", f"{CREDS}/api", expect=204)
    factory.api("master", "GET", f"{CREDS}/api", expect=404)


def ssh_keygen(path: Path, passphrase: str = "") -> tuple[str, str, str]:
    """A real ed25519 key made by OpenSSH: (private key, public key, SHA256 fingerprint)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "test",
                    "-f", str(path)], check=True)
    public = " ".join(path.with_suffix(".pub").read_text().split()[:2])
    listing = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f",
                              str(path.with_suffix(".pub"))], check=True,
                             capture_output=True, text=True).stdout
    return path.read_text(), public, listing.split()[1]


def test_an_ssh_key_credential_shows_its_public_key_and_fingerprint(
        world: World, factory: Factory, tmp_path: Path) -> None:
    private, public, fingerprint = ssh_keygen(tmp_path / "id_ed25519")
    created = factory.api("master", "POST", CREDS, expect=201,
                          json={"name": "deploy-key", "kind": "ssh_key", "secret": private})
    assert created["public_key"] == public
    assert created["fingerprint"] == fingerprint
    assert "secret" not in created

    # The same key as PKCS#8 PEM is understood too; a new secret means new public parts.
    other = Ed25519PrivateKey.generate()
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
    patched = factory.api("master", "PATCH", f"{CREDS}/deploy-key", json={"secret": pem})
    assert patched["public_key"] == other.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    assert patched["fingerprint"] != fingerprint


def test_a_bad_or_protected_ssh_key_is_refused_naming_the_secret(
        world: World, factory: Factory, tmp_path: Path) -> None:
    protected, _, _ = ssh_keygen(tmp_path / "id_protected", passphrase="correct horse")
    for secret in ("not a key", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END "
                   "OPENSSH PRIVATE KEY-----\n", protected):
        refused = factory.api("master", "POST", CREDS, expect=422,
                              json={"name": "deploy-key", "kind": "ssh_key", "secret": secret})
        assert (refused["code"], refused["field"]) == ("invalid", "secret")
    factory.api("master", "GET", f"{CREDS}/deploy-key", expect=404)


def test_a_credential_in_use_cannot_be_deleted(world: World, factory: Factory,
                                               tmp_path: Path) -> None:
    private, _, _ = ssh_keygen(tmp_path / "id_ed25519")
    factory.api("master", "POST", CREDS, expect=201,
                json={"name": "deploy-key", "kind": "ssh_key", "secret": private})
    factory.api("master", "PATCH", f"{SERVERS}/web-1", json={"credential": "deploy-key"})
    assert factory.api("master", "DELETE", f"{CREDS}/deploy-key", expect=409)["code"] == \
        "conflict"
    assert factory.api("master", "GET", f"{SERVERS}/web-1")["credential"] == "deploy-key"


# -- projects and targets ---------------------------------------------------------------------


def test_a_project_uses_the_default_branch_it_is_given(world: World, factory: Factory) -> None:
    repo = factory.repo("blog", branch="trunk")
    project = factory.api("master", "POST", PROJECTS, expect=201,
                          json={"name": "blog", "repo": str(repo), "default_branch": "trunk",
                                "variables": {"NODE_ENV": "production"},
                                "excludes": [".git"]})
    assert project["default_branch"] == "trunk"
    factory.api("master", "POST", f"{PROJECTS}/blog/targets", expect=201,
                json={"environment": "test", "labels": ["web"], "webroot": "/srv/www/blog",
                      "releases": "/srv/releases/blog"})
    task = factory.api("developer", "POST", TASKS, expect=201,
                       json={"project": "blog", "environment": "test", "title": "first"})
    assert (task["ref"], task["commit"]) == ("trunk", git(repo, "rev-parse", "trunk"))
    assert task["state"] == "approved"  # the target needs no approval

    patched = factory.api("master", "PATCH", f"{PROJECTS}/blog",
                          json={"description": "the blog", "variables": {"A": "1"}})
    assert (patched["description"], patched["variables"], patched["default_branch"]) == \
        ("the blog", {"A": "1"}, "trunk")
    assert factory.api("reporter", "GET", f"{PROJECTS}/blog") == patched
    assert names(factory.api("reporter", "GET", PROJECTS)) == ["blog", "shop"]
    factory.api("master", "DELETE", f"{PROJECTS}/blog", expect=204)
    factory.api("reporter", "GET", f"{PROJECTS}/blog", expect=404)


def test_patching_one_build_hook_keeps_the_other(world: World, factory: Factory) -> None:
    factory.api("master", "PATCH", SHOP,
                json={"hooks": {"prev_deploy": "npm ci", "post_deploy": "npm run build"}})
    patched = factory.api("master", "PATCH", SHOP, json={"hooks": {"post_deploy": "make"}})
    assert patched["hooks"] == {"prev_deploy": "npm ci", "post_deploy": "make"}


TARGET = {"environment": "prod", "webroot": "/srv/www/shop-prod",
          "releases": "/srv/releases/shop-prod"}


def test_targets_round_trip_by_servers_and_by_labels(world: World, factory: Factory) -> None:
    targets = f"{SHOP}/targets"
    by_servers = factory.api("master", "POST", targets, expect=201,
                             json={**TARGET, "servers": ["web-1"], "keep": 5,
                                   "strategy": {"batch": 1, "pause": "10s"},
                                   "hooks": {"post_release": "sudo systemctl reload nginx"},
                                   "approval": {"required": 2}})
    assert (by_servers["servers"], by_servers["labels"], by_servers["keep"]) == \
        (["web-1"], [], 5)
    assert by_servers["strategy"]["batch"] == 1
    assert by_servers["strategy"]["pause"] == 10.0
    assert by_servers["approval"] == {"required": 2, "allow_self_approval": False}
    assert factory.api("reporter", "GET", f"{targets}/prod") == by_servers
    assert names(factory.api("reporter", "GET", targets), "environment") == ["test", "prod"]

    by_labels = factory.api("master", "PATCH", f"{targets}/prod",
                            json={"servers": [], "labels": ["web"]})
    assert (by_labels["servers"], by_labels["labels"]) == ([], ["web"])
    assert by_labels["keep"] == 5  # untouched

    dup = factory.api("master", "POST", targets, json=TARGET | {"environment": "test"},
                      expect=409)
    assert dup["field"] == "environment"
    factory.api("master", "DELETE", f"{targets}/prod", expect=204)
    factory.api("reporter", "GET", f"{targets}/prod", expect=404)


@pytest.mark.parametrize(("pause", "seconds"), [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0),
                                                (3, 3.0), ("1.5", 1.5)])
def test_a_strategy_pause_is_stored_in_seconds(world: World, factory: Factory, pause: object,
                                               seconds: float) -> None:
    target = factory.api("master", "PATCH", f"{SHOP}/targets/test",
                         json={"strategy": {"batch": 2, "pause": pause}})
    assert target["strategy"]["pause"] == seconds


@pytest.mark.parametrize("change", [{"allow_self_approval": False}, {"required": 3}])
def test_patching_one_approval_setting_keeps_the_other(world: World, factory: Factory,
                                                       change: dict[str, Any]) -> None:
    # Losing ``required`` here would silently turn approvals off.
    policy = {"required": 2, "allow_self_approval": True}
    factory.api("master", "PATCH", f"{SHOP}/targets/test", json={"approval": policy})
    target = factory.api("master", "PATCH", f"{SHOP}/targets/test", json={"approval": change})
    assert target["approval"] == policy | change


def test_patching_the_pause_keeps_the_batch_size(world: World, factory: Factory) -> None:
    factory.api("master", "PATCH", f"{SHOP}/targets/test",
                json={"strategy": {"batch": 5, "pause": "10s"}})
    target = factory.api("master", "PATCH", f"{SHOP}/targets/test",
                         json={"strategy": {"pause": "1m"}})
    assert (target["strategy"]["batch"], target["strategy"]["pause"]) == (5, 60.0)


# -- tasks --------------------------------------------------------------------------------


def submit(factory: Factory, user: str = "submitter", **fields: Any) -> dict[str, Any]:
    body = {"project": "shop", "environment": "test", "title": "deploy"} | fields
    return factory.api(user, "POST", TASKS, json=body, expect=201)  # type: ignore[no-any-return]


def task_path(task_id: int, action: str = "") -> str:
    return f"{TASKS}/{task_id}" + (f"/{action}" if action else "")


def require_approvals(factory: Factory, required: int) -> None:
    factory.api("master", "PATCH", f"{SHOP}/targets/test", json={"approval": {
        "required": required, "allow_self_approval": False}})


def test_submitting_pins_the_ref_to_the_commit_it_names_now(world: World,
                                                            factory: Factory) -> None:
    assert world.repo is not None
    head = git(world.repo, "rev-parse", "main")
    first = submit(factory)
    assert (first["ref"], first["commit"]) == ("main", head)
    assert len(head) == 40

    newer = commit(world.repo, {"index.html": "<h1>v2</h1>\n"})
    second = submit(factory)
    assert second["commit"] == newer != head
    assert factory.api("reporter", "GET", task_path(first["id"]))["commit"] == head


def test_tags_and_short_shas_are_pinned_to_full_commit_shas(world: World,
                                                            factory: Factory) -> None:
    assert world.repo is not None
    head = git(world.repo, "rev-parse", "HEAD")
    git(world.repo, "tag", "-a", "v1.0", "-m", "release 1.0")  # a tag object, not a commit
    commit(world.repo, {"index.html": "<h1>v2</h1>\n"})
    assert submit(factory, ref="v1.0")["commit"] == head
    assert submit(factory, ref=head[:8])["commit"] == head


def test_an_unknown_ref_is_refused_at_submission(world: World, factory: Factory) -> None:
    refused = factory.api("submitter", "POST", TASKS, expect=422,
                          json={"project": "shop", "environment": "test", "title": "x",
                                "ref": "no-such-branch"})
    assert (refused["code"], refused["field"]) == ("invalid", "ref")
    assert "no-such-branch" in refused["message"]


def test_editing_a_pending_task_withdraws_its_approvals(world: World,
                                                       factory: Factory) -> None:
    require_approvals(factory, 2)
    approved_once = factory.api("master", "POST", task_path(world.task_id, "approve"), json={})
    assert len(approved_once["approvals"]) == 1
    edited = factory.api("submitter", "PATCH", task_path(world.task_id),
                         json={"title": "renamed"})
    assert (edited["title"], edited["state"], edited["approvals"]) == \
        ("renamed", "pending_approval", [])


def test_editing_an_approved_task_needs_approval_again(world: World, factory: Factory) -> None:
    assert world.repo is not None
    factory.api("master", "POST", task_path(world.task_id, "approve"), json={})
    newer = commit(world.repo, {"index.html": "<h1>v2</h1>\n"})
    edited = factory.api("submitter", "PATCH", task_path(world.task_id), json={"ref": "main"})
    assert (edited["state"], edited["approvals"], edited["commit"]) == \
        ("pending_approval", [], newer)


def test_only_the_submitter_or_a_master_may_edit_or_cancel_a_task(world: World,
                                                                  factory: Factory) -> None:
    for action, method, body in (("", "PATCH", {"title": "mine now"}),
                                 ("cancel", "POST", None)):
        refused = factory.api("developer", method, task_path(world.task_id, action),
                              json=body, expect=403)
        assert refused["code"] == "forbidden"
    assert factory.api("master", "PATCH", task_path(world.task_id),
                       json={"title": "fixed"})["title"] == "fixed"


def test_a_rejection_needs_a_reason(world: World, factory: Factory) -> None:
    path = task_path(world.task_id, "reject")
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        assert factory.api("master", "POST", path, json=body, expect=422)["field"] == "reason"
    rejected = factory.api("master", "POST", path, json={"reason": "  freeze week  "})
    assert (rejected["state"], rejected["reject_reason"]) == ("rejected", "freeze week")
    for action in ("approve", "start", "cancel"):
        conflict = factory.api("master", "POST", task_path(world.task_id, action), json={},
                               expect=409)
        assert conflict["code"] == "state_conflict"


def test_a_cancelled_task_stays_cancelled(world: World, factory: Factory) -> None:
    cancelled = factory.api("submitter", "POST", task_path(world.task_id, "cancel"))
    assert cancelled["state"] == "cancelled"
    assert cancelled["finished_at"] is not None
    for action in ("cancel", "approve"):
        factory.api("master", "POST", task_path(world.task_id, action), json={}, expect=409)
    factory.api("submitter", "PATCH", task_path(world.task_id), json={"title": "x"},
                expect=409)


def test_starting_queues_an_approved_task_and_dispatches_it_once(
        world: World, factory: Factory, dispatched: RecordingDispatcher) -> None:
    factory.api("developer", "POST", task_path(world.task_id, "start"), expect=409)
    factory.api("master", "POST", task_path(world.task_id, "approve"), json={})
    started = factory.api("developer", "POST", task_path(world.task_id, "start"))
    assert started["state"] == "queued"
    assert factory.api("developer", "POST", task_path(world.task_id, "start"),
                       expect=409)["code"] == "state_conflict"
    assert dispatched.task_ids == [world.task_id]


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at once (released together by a barrier) and return the answers."""
    barrier = threading.Barrier(len(calls))
    answers: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def outcomes(answers: list[Any]) -> list[tuple[int, str | None]]:
    return sorted((a.status_code, a.json().get("code")) for a in answers)


def test_concurrent_starts_never_both_win(world: World, factory: Factory,
                                          dispatched: RecordingDispatcher) -> None:
    factory.api("master", "POST", task_path(world.task_id, "approve"), json={})
    url = f"/api/v1{task_path(world.task_id, 'start')}"
    callers = ["developer", "submitter", "master", "owner"]
    answers = race([partial(factory.client.post, url, headers=factory.headers(u))
                    for u in callers])
    assert outcomes(answers) == [(200, None)] + [(409, "state_conflict")] * 3
    assert dispatched.task_ids == [world.task_id]


def test_concurrent_approvals_never_both_win(world: World, factory: Factory) -> None:
    url = f"/api/v1{task_path(world.task_id, 'approve')}"
    answers = race([partial(factory.client.post, url, json={}, headers=factory.headers(u))
                    for u in ("master", "owner", "root")])
    assert outcomes(answers) == [(200, None)] + [(409, "state_conflict")] * 2
    task = factory.api("reporter", "GET", task_path(world.task_id))
    assert task["state"] == "approved"
    assert len(task["approvals"]) == 1  # the losers' approvals were rolled back


def test_a_change_made_from_a_stale_read_loses(world: World, runtime: Runtime) -> None:
    """Compare-and-set on the task's version: two approvers who both read the task while
    it was pending cannot both move it on."""

    def principal(ctx: Any, username: str) -> Principal:
        return accounts.load_principal(ctx, lookup.user(ctx, username))

    with unit_of_work(runtime) as slow:
        slow.who = principal(slow, "owner")
        space = lookup.space(slow, "acme")
        stale = lookup.task(slow, space.id, world.task_id)  # read while pending
        with unit_of_work(runtime) as fast:
            fast.who = principal(fast, "master")
            tasks.approve(fast, lookup.space(fast, "acme"), world.task_id)
        assert stale.state.value == "pending_approval"  # what the slow one still sees
        with pytest.raises(StateConflict):
            tasks.approve(slow, space, world.task_id)
        slow.db.rollback()
    with runtime.sessions() as db:
        assert db.get_one(DeployTask, world.task_id).state.value == "approved"


# -- task lists -----------------------------------------------------------------------------------


@pytest.fixture
def many_tasks(world: World, factory: Factory) -> dict[str, int]:
    """Tasks across two projects, two environments, three submitters and four states."""
    assert world.repo is not None
    factory.api("master", "POST", f"{SHOP}/targets", expect=201,
                json={**TARGET, "labels": ["web"]})  # no approval needed
    factory.api("master", "POST", PROJECTS, expect=201,
                json={"name": "blog", "repo": str(world.repo), "default_branch": "main"})
    factory.api("master", "POST", f"{PROJECTS}/blog/targets", expect=201,
                json={"environment": "test", "labels": ["web"], "webroot": "/srv/www/blog",
                      "releases": "/srv/releases/blog"})
    ids = {"world": world.task_id}
    ids["shop-prod"] = submit(factory, "developer", environment="prod")["id"]
    ids["blog-test"] = submit(factory, "developer", project="blog")["id"]
    ids["master"] = submit(factory, "master")["id"]
    ids["cancelled"] = submit(factory)["id"]
    factory.api("submitter", "POST", task_path(ids["cancelled"], "cancel"))
    return ids


def listed(factory: Factory, **params: Any) -> list[int]:
    return [t["id"] for t in factory.api("reporter", "GET", TASKS, params=params)["items"]]


def test_task_lists_are_paginated_newest_first(world: World, factory: Factory,
                                               many_tasks: dict[str, int]) -> None:
    everything = listed(factory)
    assert everything == sorted(many_tasks.values(), reverse=True)
    pages: list[list[int]] = []
    cursor = None
    while True:
        page = factory.api("reporter", "GET", TASKS,
                           params={"limit": 2} | ({"cursor": cursor} if cursor else {}))
        pages.append([t["id"] for t in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == everything


@pytest.mark.parametrize(("params", "expected"), [
    ({"project": "blog"}, ["blog-test"]),
    ({"environment": "prod"}, ["shop-prod"]),
    ({"state": "approved"}, ["blog-test", "shop-prod"]),
    ({"state": "cancelled"}, ["cancelled"]),
    ({"submitted_by": "master"}, ["master"]),
    ({"submitted_by": "submitter"}, ["cancelled", "world"]),
    ({"project": "shop", "state": "pending_approval"}, ["master", "world"]),
    ({"project": "shop", "environment": "test", "submitted_by": "developer"}, []),
])
def test_task_lists_filter(world: World, factory: Factory, many_tasks: dict[str, int],
                           params: dict[str, str], expected: list[str]) -> None:
    assert listed(factory, **params) == sorted((many_tasks[k] for k in expected),
                                               reverse=True)


def test_an_unknown_state_filter_is_refused(world: World, factory: Factory) -> None:
    refused = factory.api("reporter", "GET", TASKS, params={"state": "done"}, expect=422)
    assert refused["field"] == "state"


def test_a_task_is_not_found_through_another_space(world: World, factory: Factory) -> None:
    factory.api("outsider", "GET", f"/spaces/other/tasks/{world.task_id}", expect=404)
    factory.api("outsider", "POST", f"/spaces/other/tasks/{world.task_id}/cancel",
                expect=404)
    assert factory.api("reporter", "GET", task_path(world.task_id))["state"] == \
        "pending_approval"
