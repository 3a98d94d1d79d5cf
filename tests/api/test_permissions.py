"""Permissions, generated from the route table and checked against the one permission
table (``rbac.PERMISSIONS``), plus the role rules the services add on top of it.

Every route x method x caller is called for real, each on a fresh copy of the world, and
the answer must be what ``rbac.allowed`` says for that caller: a new endpoint without a
guard, or a guard that disagrees with the table, fails here by name.
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from shipyard.api.deps import Guard, PublicGuard
from shipyard.app import API_PREFIX, api_routes, build_runtime, create_app
from shipyard.auth import rbac
from shipyard.auth.rbac import Principal
from shipyard.db.engine import make_engine, make_sessionmaker
from shipyard.models import ApiToken, Project, Role, Server, User
from shipyard.services import accounts, lookup, spaces
from shipyard.services.context import Runtime, unit_of_work
from tests.api.conftest import (
    BASE_URL,
    Browser,
    WorldTemplate,
    checkpoint,
    login,
    template_settings,
)
from tests.factories import Factory, World

CALLERS = ("root", "owner", "master", "developer", "reporter", "outsider", None)
ALLOWED = "allowed"
PUBLIC = "public"

# Path parameters filled from the world. ``name`` depends on the collection it names.
SAMPLE_PARAMS = {"space": "acme", "project": "shop", "environment": "test",
                 "username": "reporter", "provider": "gitlab"}
SAMPLE_NAMES = {"environments": "test", "servers": "web-1", "credentials": "git-token",
                "channels": "ops"}

# Conditions the services add on top of the table, for this world. The table lets a
# DEVELOPER edit and cancel tasks, but only their own (MASTER+ may touch anyone's); the
# world task belongs to ``submitter``, so ``developer`` is refused by the service.
SERVICE_REFUSALS = {
    ("PATCH", "/spaces/{space}/tasks/{task_id}", "developer"),
    ("POST", "/spaces/{space}/tasks/{task_id}/cancel", "developer"),
}


def guards_of(route: APIRoute) -> list[Guard | PublicGuard]:
    found: list[Guard | PublicGuard] = []

    def walk(dependant: object) -> None:
        for dep in getattr(dependant, "dependencies", ()):
            if isinstance(dep.call, Guard | PublicGuard):
                found.append(dep.call)
            walk(dep)

    walk(route.dependant)
    return found


def route_cases() -> list[tuple[APIRoute, str]]:
    return [(route, method) for route in api_routes() for method in sorted(route.methods)]


def case_id(route: APIRoute, method: str) -> str:
    return f"{method} {route.path}"


ROUTE_CASES = route_cases()


# -- the route table --------------------------------------------------------------------


@pytest.mark.parametrize(("route", "method"), ROUTE_CASES,
                         ids=[case_id(r, m) for r, m in ROUTE_CASES])
def test_every_route_declares_exactly_one_permission_guard(route: APIRoute,
                                                           method: str) -> None:
    guards = guards_of(route)
    assert len(guards) == 1, (
        f"{method} {route.path} has {len(guards)} permission guards; declare exactly one: "
        "`call: guard(\"<action>\")` or `ctx: Public`")
    guard = guards[0]
    if isinstance(guard, Guard):
        assert guard.action in rbac.PERMISSIONS, f"{method} {route.path}: unknown action"


@pytest.mark.parametrize(("route", "method"),
                         [(r, m) for r, m in ROUTE_CASES if m in ("POST", "PUT", "PATCH",
                                                                  "DELETE")],
                         ids=[case_id(r, m) for r, m in ROUTE_CASES
                              if m in ("POST", "PUT", "PATCH", "DELETE")])
def test_no_route_that_changes_state_is_guarded_by_a_read_permission(route: APIRoute,
                                                                     method: str) -> None:
    # The matrix below checks routes against the table; this checks the action a route
    # names is not obviously the wrong one.
    for guard in guards_of(route):
        if isinstance(guard, Guard):
            assert not guard.action.endswith((".read", ".list")), \
                f"{method} {route.path} changes state but is guarded by {guard.action!r}"


def test_every_api_route_of_the_app_is_in_the_route_table(route_world: RouteWorld) -> None:
    """A router wired into the app but not into ``api_routes()`` would escape the
    permission matrix below."""
    app = route_world.client.app
    documented = {(method.upper(), path)
                  for path, operations in app.openapi()["paths"].items()  # type: ignore[attr-defined]
                  if path.startswith(API_PREFIX + "/")
                  for method in operations}
    walked = {(method, API_PREFIX + route.path) for route, method in ROUTE_CASES}
    assert documented - walked == set()


# -- the matrix: every route x method x caller --------------------------------------------


@dataclass
class RouteWorld:
    """One app over the world; each case gets its own copy of the database."""

    template: Path
    runtime: Runtime
    client: TestClient
    tokens: dict[str, str]
    token_ids: dict[str, int]
    principals: dict[str, Principal]
    space_id: int
    project_id: int
    task_id: int
    case_db: Path

    def fresh_database(self) -> None:
        """Give the app a new copy of the template: allowed calls change state. (The same
        file and engine each time: the engine's cache of compiled SQL is kept.)"""
        engine: Engine = self.runtime.sessions.kw["bind"]
        engine.dispose()
        for suffix in ("-wal", "-shm"):
            self.case_db.with_name(self.case_db.name + suffix).unlink(missing_ok=True)
        shutil.copy(self.template, self.case_db)


def closed_port() -> int:
    """A local port nothing listens on: connecting to it fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def route_world(world_template: WorldTemplate,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouteWorld]:
    # Always SQLite: this is about the route table, not the backend.
    root = tmp_path_factory.mktemp("routes")
    db = root / "routes.db"
    shutil.copy(world_template.db, db)
    runtime = build_runtime(template_settings(db, root / "home"))
    if runtime.dispatcher is not None:
        runtime.dispatcher.shutdown()
    runtime.dispatcher = None  # a start must never reach the real runner here
    runtime.listeners.clear()  # nor a notification leave
    client = TestClient(create_app(runtime=runtime), base_url=BASE_URL)
    port = closed_port()
    system = Principal(user_id=0, username="test", is_super=True)
    with unit_of_work(runtime, who=system) as ctx:
        space = lookup.space(ctx, "acme")
        project = lookup.named(ctx, Project, space.id, "shop")
        # So that removing reporter's project role has a role to remove; the same role as
        # their space role, so it changes none of their rights.
        spaces.set_project_member(ctx, project, "reporter", Role.REPORTER)
        # Routes that reach the servers (checks, releases) fail fast instead of talking
        # to whatever listens on the world's loopback addresses.
        ctx.db.execute(update(Server).values(host="127.0.0.1", port=port))
    response = client.post("/api/v1/spaces/acme/channels",
                           headers={"Authorization": f"Bearer {world_template.tokens['master']}"},
                           json={"name": "ops", "kind": "webhook",
                                 "url": "https://hooks.example.com/ops"})
    assert response.status_code == 201, f"cannot make the sample channel: {response.text}"
    with unit_of_work(runtime, who=system) as ctx:
        principals = {name: accounts.load_principal(ctx, lookup.user(ctx, name))
                      for name in CALLERS if name is not None}
        token_ids = {username: token_id for token_id, username in ctx.db.execute(
            select(ApiToken.id, User.username).join(User, User.id == ApiToken.user_id))}
    runtime.sessions.kw["bind"].dispose()
    checkpoint(db)
    case_db = root / "case.db"
    runtime.sessions = make_sessionmaker(make_engine(f"sqlite:///{case_db}"))
    with client:  # one event loop for all the requests
        yield RouteWorld(db, runtime, client, dict(world_template.tokens), token_ids,
                         principals, space.id, project.id, world_template.world.task_id,
                         case_db)
    runtime.sessions.kw["bind"].dispose()


@pytest.fixture
def fresh_world(route_world: RouteWorld) -> RouteWorld:
    route_world.fresh_database()
    return route_world


def fill_path(route: APIRoute, rw: RouteWorld, caller: str | None) -> str:
    path = route.path
    segments = path.split("/")
    for param in re.findall(r"{(\w+)}", path):
        if param == "name":
            collection = segments[segments.index("{name}") - 1]
            value = SAMPLE_NAMES.get(collection)
        elif param == "task_id":
            value = str(rw.task_id)
        elif param == "token_id":
            value = str(rw.token_ids[caller or "root"])  # a token of the caller's own
        else:
            value = SAMPLE_PARAMS.get(param)
        if value is None:
            pytest.fail(f"{route.path}: the permission test has no sample value for "
                        f"{{{param}}}; add one to SAMPLE_PARAMS or SAMPLE_NAMES")
        path = path.replace(f"{{{param}}}", value, 1)
    return path


def expected_outcome(route: APIRoute, method: str, caller: str | None,
                     rw: RouteWorld) -> int | str:
    """401, 404 or 403, ALLOWED, or PUBLIC, as the permission table decides."""
    guard = guards_of(route)[0]
    if isinstance(guard, PublicGuard):
        return PUBLIC
    if caller is None:
        return 401
    principal = rw.principals[caller]
    space_id = rw.space_id if "{space}" in route.path else None
    project_id = rw.project_id if "{project}" in route.path else None
    if space_id is not None and not principal.is_member(space_id):
        return 404  # a space you are not in does not exist for you
    if not rbac.allowed(principal, guard.action, space_id, project_id):
        return 403
    if (method, route.path, caller) in SERVICE_REFUSALS:
        return 403
    return ALLOWED


@dataclass
class Answer:
    status: int
    code: str | None
    text: str


def call_route(rw: RouteWorld, route: APIRoute, method: str, caller: str | None) -> Answer:
    headers = {"Authorization": f"Bearer {rw.tokens[caller]}"} if caller else {}
    body: dict[str, object] | None = {} if method in ("POST", "PUT", "PATCH") else None
    with rw.client.stream(method, API_PREFIX + fill_path(route, rw, caller), headers=headers,
                          json=body) as response:
        kind = response.headers.get("content-type", "")
        if kind.startswith("text/event-stream"):  # a live stream: its status is the answer
            return Answer(response.status_code, None, "(an event stream)")
        response.read()
        data = response.json() if kind.startswith("application/json") else None
        code = data.get("code") if isinstance(data, dict) else None
        return Answer(response.status_code, code, response.text)


MATRIX = [(route, method, caller) for route, method in ROUTE_CASES for caller in CALLERS]


@pytest.mark.parametrize(("route", "method", "caller"), MATRIX,
                         ids=[f"{caller or 'anonymous'}-{case_id(r, m)}"
                              for r, m, caller in MATRIX])
def test_route_answers_each_caller_as_the_permission_table_says(
        fresh_world: RouteWorld, route: APIRoute, method: str, caller: str | None) -> None:
    if len(guards_of(route)) != 1:
        pytest.fail(f"{method} {route.path} has no single permission guard")
    rw = fresh_world
    expected = expected_outcome(route, method, caller, rw)
    got = call_route(rw, route, method, caller)
    where = f"{caller or 'anonymous'} {method} {route.path}: got {got.status} {got.text}"
    if expected == PUBLIC:
        # Anyone may call it: the answer must not depend on who calls.
        rw.fresh_database()
        anonymous = call_route(rw, route, method, None)
        assert (got.status, got.code) == (anonymous.status, anonymous.code), \
            f"{where}; anonymous got {anonymous.status} {anonymous.text}"
    elif expected == ALLOWED:
        # Whatever the (empty) body or the world's state then makes of it, but never an
        # authentication or permission refusal.
        assert 200 <= got.status < 300 or got.status in (409, 422), \
            f"{where}; the table allows it"
    else:
        codes = {401: "not_authenticated", 403: "forbidden", 404: "not_found"}
        assert (got.status, got.code) == (expected, codes[int(expected)]), \
            f"{where}; expected {expected}"


def test_the_matrix_exercises_every_outcome(route_world: RouteWorld) -> None:
    outcomes = {expected_outcome(r, m, c, route_world) for r, m, c in MATRIX}
    assert outcomes == {PUBLIC, ALLOWED, 401, 403, 404}


def test_service_refusals_name_routes_the_table_allows(route_world: RouteWorld) -> None:
    """The exceptions above must stay exceptions: real routes the table alone allows."""
    by_key = {(m, r.path): r for r, m in ROUTE_CASES}
    for method, path, caller in SERVICE_REFUSALS:
        route = by_key[(method, path)]
        guard = guards_of(route)[0]
        assert isinstance(guard, Guard)
        assert rbac.allowed(route_world.principals[caller], guard.action,
                            route_world.space_id)


# -- role rules the services add ----------------------------------------------------------

TASKS = "/spaces/acme/tasks"
SHOP = "/spaces/acme/projects/shop"


def submit(factory: Factory, username: str, project: str = "shop",
           environment: str = "test", expect: int = 201) -> dict:
    return factory.api(username, "POST", TASKS, expect=expect,
                       json={"project": project, "environment": environment,
                             "title": f"deploy by {username}"})


def set_approval(factory: Factory, **policy: object) -> None:
    factory.api("master", "PATCH", f"{SHOP}/targets/test", json={"approval": policy})


def add_project(factory: Factory, world: World, name: str) -> None:
    """Another project in acme with a test target needing one approval."""
    factory.api("master", "POST", "/spaces/acme/projects", expect=201,
                json={"name": name, "repo": str(world.repo), "default_branch": "main"})
    factory.api("master", "POST", f"/spaces/acme/projects/{name}/targets", expect=201,
                json={"environment": "test", "labels": ["web"], "webroot": f"/srv/www/{name}",
                      "releases": f"/srv/releases/{name}", "approval": {"required": 1}})


def test_a_master_cannot_approve_their_own_task_by_default(world: World,
                                                           factory: Factory) -> None:
    task = submit(factory, "master")
    refused = factory.api("master", "POST", f"{TASKS}/{task['id']}/approve", json={},
                          expect=403)
    assert "own task" in refused["message"]
    assert factory.api("master", "GET", f"{TASKS}/{task['id']}")["state"] == \
        "pending_approval"


def test_self_approval_is_allowed_where_the_target_allows_it(world: World,
                                                             factory: Factory) -> None:
    task = submit(factory, "master")
    set_approval(factory, required=1, allow_self_approval=True)
    approved = factory.api("master", "POST", f"{TASKS}/{task['id']}/approve", json={})
    assert approved["state"] == "approved"
    assert [a["user"] for a in approved["approvals"]] == ["master"]


def test_a_task_stays_pending_until_the_nth_distinct_master_approves(
        world: World, factory: Factory) -> None:
    factory.member("acme", "master2", "master")
    set_approval(factory, required=3)
    approve = f"{TASKS}/{world.task_id}/approve"
    assert factory.api("master", "POST", approve, json={})["state"] == "pending_approval"
    # The same master again does not count twice.
    assert factory.api("master", "POST", approve, json={}, expect=409)["code"] == \
        "state_conflict"
    assert factory.api("master2", "POST", approve, json={})["state"] == "pending_approval"
    final = factory.api("owner", "POST", approve, json={})
    assert final["state"] == "approved"
    assert sorted(a["user"] for a in final["approvals"]) == ["master", "master2", "owner"]


def test_a_developer_cannot_approve_even_when_many_approvals_are_required(
        world: World, factory: Factory) -> None:
    set_approval(factory, required=2)
    factory.api("developer", "POST", f"{TASKS}/{world.task_id}/approve", json={},
                expect=403)


def test_project_master_overrides_space_reporter_for_that_project_only(
        world: World, factory: Factory) -> None:
    add_project(factory, world, "blog")
    blog_task = submit(factory, "submitter", project="blog")
    factory.api("owner", "PUT", f"{SHOP}/members/reporter", json={"role": "master"})

    approved = factory.api("reporter", "POST", f"{TASKS}/{world.task_id}/approve", json={})
    assert approved["state"] == "approved"
    factory.api("reporter", "PATCH", SHOP, json={"description": "managed by reporter"})
    # Still a reporter for the space and for other projects.
    factory.api("reporter", "POST", f"{TASKS}/{blog_task['id']}/approve", json={},
                expect=403)
    factory.api("reporter", "POST", "/spaces/acme/servers", expect=403,
                json={"name": "web-9", "host": "127.0.0.9"})
    factory.api("reporter", "PATCH", "/spaces/acme/projects/blog", expect=403,
                json={"description": "not mine"})


def test_project_reporter_overrides_space_developer_for_that_project_only(
        world: World, factory: Factory) -> None:
    add_project(factory, world, "blog")
    factory.api("owner", "PUT", f"{SHOP}/members/developer", json={"role": "reporter"})

    refused = submit(factory, "developer", project="shop", expect=403)
    assert refused["code"] == "forbidden"
    submit(factory, "developer", project="blog")
    # Reading is still fine.
    factory.api("developer", "GET", f"{TASKS}/{world.task_id}")


def test_removing_a_space_member_removes_their_project_roles_too(
        world: World, factory: Factory) -> None:
    factory.member("acme", "guest", "reporter")
    factory.api("owner", "PUT", f"{SHOP}/members/guest", json={"role": "developer"})
    factory.api("guest", "GET", f"{TASKS}/{world.task_id}")
    factory.api("owner", "DELETE", "/spaces/acme/members/guest", expect=204)
    assert factory.api("owner", "GET", f"{SHOP}/members") == []
    factory.api("guest", "GET", f"{TASKS}/{world.task_id}", expect=404)
    factory.api("guest", "GET", SHOP, expect=404)


def test_a_user_in_no_space_cannot_log_in_but_super_can(world: World, factory: Factory,
                                                        browser: Browser) -> None:
    factory.api("root", "POST", "/users", expect=201,
                json={"username": "loner", "password": "loner-password"})
    refused = login(browser(), "loner", "loner-password")
    assert refused.status_code == 403
    assert "not a member of any space" in refused.json()["message"]
    assert "shipyard_session" not in refused.cookies

    root = login(browser(), "root")
    assert root.status_code == 200
    assert root.json()["user"]["is_super"] is True


def test_a_user_in_two_spaces_sees_both_and_can_switch(world: World, factory: Factory,
                                                       browser: Browser) -> None:
    factory.api("outsider", "PUT", "/spaces/other/members/developer",
                json={"role": "reporter"})
    client = browser()
    me = login(client, "developer").json()
    assert {(s["name"], s["role"]) for s in me["spaces"]} == {("acme", "developer"),
                                                               ("other", "reporter")}
    assert me["current_space"] == "acme"
    csrf = {"X-CSRF-Token": me["csrf_token"]}

    switched = client.put("/api/v1/me/space", json={"space": "other"}, headers=csrf)
    assert switched.status_code == 200, switched.text
    assert switched.json()["current_space"] == "other"
    assert client.get("/api/v1/me").json()["current_space"] == "other"

    # A space you are not in cannot be switched to (nor told apart from a missing one).
    factory.api("root", "POST", "/spaces", expect=201, json={"name": "secret"})
    for name in ("secret", "no-such-space"):
        refused = client.put("/api/v1/me/space", json={"space": name}, headers=csrf)
        assert (refused.status_code, refused.json()["code"]) == (404, "not_found")
    assert client.get("/api/v1/me").json()["current_space"] == "other"


def test_an_outsider_cannot_tell_a_hidden_space_from_a_missing_one(
        world: World, factory: Factory) -> None:
    hidden = factory.api("outsider", "GET", "/spaces/acme/servers", expect=404)
    missing = factory.api("outsider", "GET", "/spaces/nowhere/servers", expect=404)
    assert hidden["code"] == missing["code"] == "not_found"
    assert [s["name"] for s in factory.api("outsider", "GET", "/spaces")] == ["other"]
