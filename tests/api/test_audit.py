"""The audit trail: every change records who, what, from where, and before/after; secrets
never appear in it; OWNER+ read it, filtered and paginated."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from shipyard.models import AuditEvent, Credential, Server
from shipyard.models.types import utcnow
from shipyard.services.context import Runtime
from tests.api.conftest import BASE_URL, Browser, login
from tests.factories import Factory, World

ADDRESS = "203.0.113.50"  # where every change in this module comes from
ACME = "/spaces/acme"
AUDIT = f"{ACME}/audit"


@pytest.fixture
def audited(world: World, factory: Factory, app: FastAPI) -> Iterator[Factory]:
    """The world's factory, calling from ``ADDRESS``."""
    client = TestClient(app, base_url=BASE_URL, client=(ADDRESS, 40000))
    remote = Factory(factory.runtime, client, factory.tmp_path)
    remote.tokens = factory.tokens
    yield remote
    client.close()


def audit_log(factory: Factory, **filters: Any) -> list[dict[str, Any]]:
    return factory.api("owner", "GET", AUDIT, params={"limit": 200, **filters})["items"]


def all_events(runtime: Runtime) -> list[AuditEvent]:
    with runtime.sessions() as db:
        return list(db.scalars(select(AuditEvent).order_by(AuditEvent.id)))


@dataclass
class Change:
    """One kind of change: how to make it, and what its audit event must say."""

    action: str
    actor: str
    object_id: str | Callable[[World, Any], str]  # given the world and what make returned
    make: Callable[[Factory, World], Any]
    before: set[str] | None = None  # keys that must be in before (None: before is None)
    after: set[str] | None = None


def env(name: str) -> dict[str, Any]:
    return {"name": name}


TARGET = {"environment": "prod", "labels": ["web"], "webroot": "/srv/www/shop-prod",
          "releases": "/srv/releases/shop-prod"}
SHOP = f"{ACME}/projects/shop"


def submit(f: Factory, user: str = "submitter") -> dict[str, Any]:
    return f.api(user, "POST", f"{ACME}/tasks", expect=201,  # type: ignore[no-any-return]
                 json={"project": "shop", "environment": "test", "title": "again"})


def approved_task(f: Factory, w: World) -> int:
    f.api("master", "POST", f"{ACME}/tasks/{w.task_id}/approve", json={})
    return w.task_id


def forget_host_key(f: Factory, w: World) -> None:
    with f.runtime.sessions.begin() as db:  # as if recorded on first contact
        db.execute(update(Server).where(Server.name == "web-1")
                   .values(host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnown",
                           host_key_recorded_at=utcnow()))
    f.api("master", "POST", f"{ACME}/servers/web-1/forget-host-key")


def task_id(w: World, _: Any) -> str:
    return str(w.task_id)


CHANGES = [
    Change("environment.create", "owner", "staging",
           lambda f, w: f.api("owner", "POST", f"{ACME}/environments", json=env("staging"),
                              expect=201), after={"name", "position"}),
    Change("environment.update", "owner", "prod",
           lambda f, w: f.api("owner", "PATCH", f"{ACME}/environments/prod",
                              json={"position": 50}), before={"position"}, after={"position"}),
    Change("environment.delete", "owner", "prod",
           lambda f, w: f.api("owner", "DELETE", f"{ACME}/environments/prod", expect=204),
           before={"name"}),
    Change("server.create", "master", "web-3",
           lambda f, w: f.api("master", "POST", f"{ACME}/servers", expect=201,
                              json={"name": "web-3", "host": "10.0.0.3"}),
           after={"name", "host", "port", "user"}),
    Change("server.update", "master", "web-1",
           lambda f, w: f.api("master", "PATCH", f"{ACME}/servers/web-1",
                              json={"port": 2222}), before={"port"}, after={"port"}),
    Change("server.forget_host_key", "master", "web-1",
           forget_host_key, before={"host_key"}, after={"host_key"}),
    Change("server.delete", "master", "web-2",
           lambda f, w: f.api("master", "DELETE", f"{ACME}/servers/web-2", expect=204),
           before={"name", "host"}),
    Change("credential.create", "master", "deploy-key",
           lambda f, w: f.api("master", "POST", f"{ACME}/credentials", expect=201,
                              json={"name": "deploy-key", "kind": "password",
                                    "secret": "hunter2-hunter2"}),
           after={"name", "kind"}),
    Change("credential.update", "master", "git-token",
           lambda f, w: f.api("master", "PATCH", f"{ACME}/credentials/git-token",
                              json={"username": "bot"}),
           before={"username"}, after={"username"}),
    Change("credential.delete", "master", "git-token",
           lambda f, w: f.api("master", "DELETE", f"{ACME}/credentials/git-token",
                              expect=204), before={"name", "kind"}),
    Change("project.create", "master", "blog",
           lambda f, w: f.api("master", "POST", f"{ACME}/projects", expect=201,
                              json={"name": "blog", "repo": str(w.repo),
                                    "default_branch": "main"}),
           after={"name", "repo_url", "default_branch"}),
    Change("project.update", "master", "shop",
           lambda f, w: f.api("master", "PATCH", SHOP, json={"description": "the shop"}),
           before={"description"}, after={"description"}),
    Change("project.delete", "master", "shop",
           lambda f, w: f.api("master", "DELETE", SHOP, expect=204), before={"name"}),
    Change("target.create", "master", "shop/prod",
           lambda f, w: f.api("master", "POST", f"{SHOP}/targets", json=TARGET, expect=201),
           after={"webroot", "releases_dir"}),
    Change("target.update", "master", "shop/test",
           lambda f, w: f.api("master", "PATCH", f"{SHOP}/targets/test", json={"keep": 3}),
           before={"keep"}, after={"keep"}),
    Change("target.delete", "master", "shop/test",
           lambda f, w: f.api("master", "DELETE", f"{SHOP}/targets/test", expect=204),
           before={"webroot"}),
    Change("space.update", "owner", "acme",
           lambda f, w: f.api("owner", "PATCH", ACME, json={"display_name": "Acme Inc"}),
           before={"display_name"}, after={"display_name"}),
    Change("member.set", "owner", "reporter",
           lambda f, w: f.api("owner", "PUT", f"{ACME}/members/reporter",
                              json={"role": "developer"}), before={"role"}, after={"role"}),
    Change("member.remove", "owner", "reporter",
           lambda f, w: f.api("owner", "DELETE", f"{ACME}/members/reporter", expect=204),
           before={"role"}),
    Change("project_member.set", "owner", "shop/reporter",
           lambda f, w: f.api("owner", "PUT", f"{SHOP}/members/reporter",
                              json={"role": "master"}), after={"role"}),
    Change("project_member.remove", "owner", "shop/reporter",
           lambda f, w: (f.api("owner", "PUT", f"{SHOP}/members/reporter",
                               json={"role": "master"}),
                         f.api("owner", "DELETE", f"{SHOP}/members/reporter", expect=204)),
           before={"role"}),
    Change("task.submit", "submitter", lambda w, task: str(task["id"]),
           lambda f, w: submit(f), after={"ref", "commit_sha", "state"}),
    Change("task.edit", "submitter", task_id,
           lambda f, w: f.api("submitter", "PATCH", f"{ACME}/tasks/{w.task_id}",
                              json={"title": "renamed"}), before={"title"}, after={"title"}),
    Change("task.approve", "master", task_id,
           lambda f, w: approved_task(f, w), after={"state"}),
    Change("task.reject", "master", task_id,
           lambda f, w: f.api("master", "POST", f"{ACME}/tasks/{w.task_id}/reject",
                              json={"reason": "not today"}),
           before={"state"}, after={"state", "reject_reason"}),
    Change("task.cancel", "submitter", task_id,
           lambda f, w: f.api("submitter", "POST", f"{ACME}/tasks/{w.task_id}/cancel"),
           before={"state"}, after={"state"}),
    Change("task.start", "developer", task_id,
           lambda f, w: f.api("developer", "POST",
                              f"{ACME}/tasks/{approved_task(f, w)}/start"),
           after={"state"}),
]


@pytest.mark.parametrize("change", CHANGES, ids=[c.action for c in CHANGES])
def test_every_change_records_actor_action_address_and_before_after(
        audited: Factory, world: World, dispatched: object, change: Change) -> None:
    made = change.make(audited, world)
    object_id = change.object_id(world, made) if callable(change.object_id) \
        else change.object_id
    events = [e for e in audit_log(audited, action=change.action)
              if e["object_id"] == object_id]
    assert events, f"no {change.action} event for {object_id}"
    event = events[0]  # the newest
    assert (event["actor"], event["address"]) == (change.actor, ADDRESS)
    if change.before is None:
        assert event["before"] is None
    else:
        assert change.before <= set(event["before"]), event
    if change.after is None:
        assert event["after"] is None
    else:
        assert change.after <= set(event["after"]), event


def test_an_update_records_only_what_changed(audited: Factory, world: World) -> None:
    audited.api("master", "PATCH", f"{ACME}/servers/web-1", json={"port": 2222})
    [event] = audit_log(audited, action="server.update")
    assert (event["before"], event["after"]) == ({"port": 22}, {"port": 2222})


def test_account_changes_are_recorded_with_their_address(audited: Factory, world: World,
                                                         runtime: Runtime,
                                                         browser: Browser) -> None:
    """Logins, tokens and users belong to no space: they are in the trail all the same."""
    token = audited.api("developer", "POST", "/me/tokens", json={"name": "ci"}, expect=201)
    audited.api("developer", "DELETE", f"/me/tokens/{token['id']}")
    audited.api("root", "POST", "/users", expect=201,
                json={"username": "newbie", "password": "newbie-password"})
    audited.api("root", "PATCH", "/users/newbie", json={"display_name": "New"})
    client = browser(ADDRESS)
    assert login(client, "developer", "wrong-password").status_code == 401
    csrf = login(client, "developer").json()["csrf_token"]
    client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})

    recorded = {(e.action, e.actor, e.object_id, e.address) for e in all_events(runtime)}
    assert {
        ("token.create", "developer", str(token["id"]), ADDRESS),
        ("token.revoke", "developer", str(token["id"]), ADDRESS),
        ("user.create", "root", "newbie", ADDRESS),
        ("user.update", "root", "newbie", ADDRESS),
        ("auth.login_failed", "system", "developer", ADDRESS),
        ("auth.login", "developer", "developer", ADDRESS),
        ("auth.logout", "developer", "developer", ADDRESS),
    } <= recorded


# -- secrets ----------------------------------------------------------------------------------


def ed25519_key() -> tuple[str, str]:
    """(private key in OpenSSH format, public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


def needles(secret: str) -> set[str]:
    """What a leaked secret looks like in text: as is, and JSON-escaped."""
    return {secret, json.dumps(secret)[1:-1]}


def test_secrets_appear_in_no_response_and_no_audit_record(world: World, factory: Factory,
                                                           runtime: Runtime) -> None:
    token, new_token, password = "tok-3f9a-SECRET", "tok-77b1-SECRET", "pw-5d2c-SECRET"
    private_key, public_key = ed25519_key()
    hidden = set().union(*(needles(s) for s in (token, new_token, password,
                                                password[::-1], private_key)))
    # Every line of the key's armoured body, but those that are the public key's too.
    hidden |= {line for line in private_key.splitlines()[1:-1] if line not in public_key}
    creds = f"{ACME}/credentials"

    responses = [
        factory.client.post(f"/api/v1{creds}", headers=factory.headers("master"),
                            json={"name": "api", "kind": "token", "secret": token}),
        factory.client.patch(f"/api/v1{creds}/api", headers=factory.headers("master"),
                             json={"secret": new_token}),
        factory.client.post(f"/api/v1{creds}", headers=factory.headers("master"),
                            json={"name": "deploy-key", "kind": "ssh_key",
                                  "secret": private_key}),
        factory.client.post("/api/v1/users", headers=factory.headers("root"),
                            json={"username": "newbie", "password": password}),
        factory.client.patch("/api/v1/users/newbie", headers=factory.headers("root"),
                             json={"password": password[::-1]}),
    ]
    responses += [factory.client.get(f"/api/v1{path}", headers=factory.headers(user))
                  for path, user in [(creds, "reporter"), (f"{creds}/api", "master"),
                                     (f"{creds}/deploy-key", "owner"), (AUDIT, "owner"),
                                     ("/users/newbie", "root")]]
    factory.api("master", "DELETE", f"{creds}/api", expect=204)
    responses.append(factory.client.get(f"/api/v1{AUDIT}", headers=factory.headers("owner")))

    for response in responses:
        assert response.status_code < 300, response.text
        leaked = [n for n in hidden if n in response.text]
        assert not leaked, f"{response.request.method} {response.request.url} shows a secret"
    assert public_key.split()[1] in responses[2].text  # the public half is shown
    with runtime.sessions() as db:
        for event in db.scalars(select(AuditEvent)):
            text = json.dumps([event.before, event.after])
            assert not [n for n in hidden if n in text], f"audit {event.action} holds a secret"
        for cred in db.scalars(select(Credential)):
            assert not any(n.encode() in cred.secret for n in hidden)  # encrypted at rest

    [change] = audit_log(factory, action="credential.update")
    assert change["before"]["secret"] != change["after"]["secret"]  # a change, masked


# -- reading the trail ---------------------------------------------------------------------


@pytest.mark.parametrize(("user", "status"), [
    ("root", 200), ("owner", 200), ("master", 403), ("developer", 403), ("reporter", 403),
    ("outsider", 404), (None, 401)])
def test_the_audit_log_is_for_owners_only(world: World, factory: Factory, user: str | None,
                                          status: int) -> None:
    factory.api(user, "GET", AUDIT, expect=status)


def test_the_audit_log_filters_by_action_actor_and_object_type(world: World,
                                                               factory: Factory) -> None:
    factory.api("master", "POST", f"{ACME}/servers", expect=201,
                json={"name": "web-3", "host": "10.0.0.3"})
    factory.api("owner", "PATCH", f"{ACME}/servers/web-3", json={"port": 2200})
    factory.api("owner", "POST", f"{ACME}/environments", json=env("staging"), expect=201)

    everything = audit_log(factory)
    assert {e["actor"] for e in everything} >= {"owner", "master", "submitter"}

    exact = audit_log(factory, action="server.create")
    assert [e["object_id"] for e in exact] == ["web-3", "web-2", "web-1"]
    prefix = audit_log(factory, action="server.")
    assert {e["action"] for e in prefix} == {"server.create", "server.update"}
    by_owner = audit_log(factory, actor="owner")
    assert by_owner and all(e["actor"] == "owner" for e in by_owner)
    assert {e["action"] for e in by_owner} >= {"server.update", "environment.create"}
    both = audit_log(factory, actor="owner", action="server.")
    assert [e["action"] for e in both] == ["server.update"]
    tasks = audit_log(factory, object_type="task")
    assert [e["action"] for e in tasks] == ["task.submit"]
    assert audit_log(factory, actor="nobody") == []


def test_the_audit_log_is_paginated_newest_first(world: World, factory: Factory) -> None:
    for i in range(7):
        factory.api("owner", "POST", f"{ACME}/environments", json=env(f"env-{i}"), expect=201)
    everything = audit_log(factory)
    assert len(everything) > 12

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        page = factory.api("owner", "GET", AUDIT, params=params)
        assert len(page["items"]) <= 5
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == 5
    assert seen == [e["id"] for e in everything]
    assert seen == sorted(seen, reverse=True)
    for limit in (0, 201):
        assert factory.api("owner", "GET", AUDIT, params={"limit": limit},
                           expect=422)["field"] == "limit"


def test_events_outside_any_space_are_readable_by_super_only(factory, client):
    from tests.factories import PASSWORD

    factory.user("root", is_super=True)
    factory.space("acme", {"boss": "owner"})
    client.post("/api/v1/auth/login", json={"username": "boss", "password": "wrong-one"})
    client.post("/api/v1/auth/login", json={"username": "boss", "password": PASSWORD})
    factory.api("boss", "GET", "/audit", expect=403)
    page = factory.api("root", "GET", "/audit", params={"actor": "boss"})
    actions = [e["action"] for e in page["items"]]
    assert "auth.login" in actions
    failed = factory.api("root", "GET", "/audit", params={"action": "auth.login_failed"})
    assert [e["object_id"] for e in failed["items"]] == ["boss"]
    assert all(e["address"] for e in failed["items"])
