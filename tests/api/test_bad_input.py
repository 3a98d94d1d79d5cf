"""Bad input through the API: refused with 422 (413 for an oversized body), as JSON with a
stable ``code`` and a ``field`` naming the culprit, before anything is stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipyard.app import create_app
from shipyard.services.context import Runtime
from tests.api.conftest import BASE_URL
from tests.factories import Factory, World

SERVERS = "/spaces/acme/servers"
PROJECTS = "/spaces/acme/projects"
TARGETS = "/spaces/acme/projects/shop/targets"
TASKS = "/spaces/acme/tasks"

SERVER = {"name": "web-9", "host": "10.0.0.9"}
PROJECT = {"name": "blog", "repo": "https://git.example.com/blog.git",
           "default_branch": "main"}
TARGET = {"environment": "prod", "labels": ["web"], "webroot": "/srv/www/shop",
          "releases": "/srv/releases/shop"}
TASK = {"project": "shop", "environment": "test", "title": "deploy"}


def refused(factory: Factory, user: str, method: str, path: str, body: dict[str, Any],
            field: str) -> dict[str, Any]:
    answer = factory.api(user, method, path, json=body, expect=422)
    assert answer["code"] == "invalid", answer
    assert answer["message"]
    assert answer["field"] == field or answer["field"].startswith(field + "."), answer
    return answer  # type: ignore[no-any-return]


@pytest.mark.parametrize(("change", "field"), [
    ({"name": "Web 9"}, "name"),
    ({"name": "web-9\n"}, "name"),
    ({"host": "-oProxyCommand=x"}, "host"),
    ({"host": "a b"}, "host"),
    ({"host": "host;rm -rf /"}, "host"),
    ({"host": "host\n"}, "host"),
    ({"port": 0}, "port"),
    ({"port": 65536}, "port"),
    ({"port": "22"}, "port"),
    ({"port": True}, "port"),
    ({"user": "-oProxyCommand=x"}, "user"),
    ({"user": "root;id"}, "user"),
    ({"labels": ["Web Servers"]}, "labels"),
    ({"credential": "Not A Name"}, "credential"),
    ({"credential": "no-such-credential"}, "credential"),
])
def test_server_input_is_refused_naming_the_field(world: World, factory: Factory,
                                                 change: dict[str, Any], field: str) -> None:
    refused(factory, "master", "POST", SERVERS, {**SERVER, **change}, field)
    assert "web-9" not in [s["name"] for s in
                           factory.api("master", "GET", SERVERS)["items"]]


def test_a_server_patch_is_validated_like_a_new_server(world: World,
                                                       factory: Factory) -> None:
    refused(factory, "master", "PATCH", f"{SERVERS}/web-1", {"host": "a b"}, "host")
    refused(factory, "master", "PATCH", f"{SERVERS}/web-1", {"port": 0}, "port")
    assert factory.api("master", "GET", f"{SERVERS}/web-1")["host"] == "127.0.0.2"


@pytest.mark.parametrize(("change", "field"), [
    ({"name": "Blog"}, "name"),
    ({"repo": "ext::sh -c touch% /tmp/pwned"}, "repo"),
    ({"repo": "-u evil"}, "repo"),
    ({"repo": "--upload-pack=touch /tmp/pwned"}, "repo"),
    ({"repo": "https://user:secret@git.example.com/blog.git"}, "repo"),
    ({"default_branch": "--upload-pack=x"}, "default_branch"),
    ({"default_branch": "a..b"}, "default_branch"),
    ({"default_branch": "HEAD"}, "default_branch"),
    ({"variables": {"1BAD": "x"}}, "variables"),
    ({"variables": {"A B": "x"}}, "variables"),
    ({"excludes": ["../outside"]}, "excludes"),
    ({"includes": ["/etc/passwd"]}, "includes"),
    ({"hooks": {"post_deploy": "make\x00"}}, "hooks"),
])
def test_project_input_is_refused_naming_the_field(world: World, factory: Factory,
                                                  change: dict[str, Any], field: str) -> None:
    refused(factory, "master", "POST", PROJECTS, {**PROJECT, **change}, field)
    assert [p["name"] for p in factory.api("master", "GET", PROJECTS)] == ["shop"]


def test_a_project_needs_a_default_branch(world: World, factory: Factory) -> None:
    body = {k: v for k, v in PROJECT.items() if k != "default_branch"}
    refused(factory, "master", "POST", PROJECTS, body, "default_branch")


@pytest.mark.parametrize("repo", ["file:///srv/git/blog.git", "/srv/git/blog.git"])
def test_local_repositories_only_when_the_operator_allows_them(
        world: World, factory: Factory, runtime: Runtime, repo: str) -> None:
    runtime.settings.allow_local_repos = False
    refused(factory, "master", "POST", PROJECTS, {**PROJECT, "repo": repo}, "repo")
    runtime.settings.allow_local_repos = True
    factory.api("master", "POST", PROJECTS, json={**PROJECT, "repo": repo}, expect=201)


@pytest.mark.parametrize(("change", "field"), [
    ({"webroot": "srv/www/shop"}, "webroot"),
    ({"webroot": "/srv/../etc/shop"}, "webroot"),
    ({"webroot": "/"}, "webroot"),
    ({"webroot": "/srv/www\n"}, "webroot"),
    ({"releases": "releases"}, "releases"),
    ({"webroot": "/srv/releases/shop/current"}, "webroot"),
    ({"releases": "/srv/www/shop/releases"}, "releases"),
    ({"environment": "Prod"}, "environment"),
    ({"environment": "staging"}, "environment"),
    ({"servers": ["Bad Name"]}, "servers"),
    ({"servers": ["web-9"]}, "servers"),
    ({"keep": 1}, "keep"),
    ({"strategy": {"pause": "soon"}}, "strategy"),
    ({"approval": {"required": -1}}, "approval"),
])
def test_target_input_is_refused_naming_the_field(world: World, factory: Factory,
                                                 change: dict[str, Any], field: str) -> None:
    refused(factory, "master", "POST", TARGETS, {**TARGET, **change}, field)
    assert [t["environment"] for t in factory.api("master", "GET", TARGETS)] == ["test"]


def test_target_paths_are_stored_normalised(world: World, factory: Factory) -> None:
    target = factory.api("master", "POST", TARGETS, expect=201,
                         json={**TARGET, "webroot": "//srv/./www//shop/",
                               "releases": "/srv/releases/shop/"})
    assert (target["webroot"], target["releases"]) == ("/srv/www/shop", "/srv/releases/shop")


@pytest.mark.parametrize(("change", "field"), [
    ({"ref": "--upload-pack=touch /tmp/pwned"}, "ref"),
    ({"ref": "-u"}, "ref"),
    ({"ref": "main..evil"}, "ref"),
    ({"ref": "main@{1}"}, "ref"),
    ({"ref": "no-such-branch"}, "ref"),
    ({"project": "Shop!"}, "project"),
    ({"environment": "Test"}, "environment"),
    ({"title": ""}, "title"),
    ({"title": "deploy\x1b[2J"}, "title"),
    ({"servers": ["web-9"]}, "servers"),
    ({"servers": []}, "servers"),
])
def test_task_input_is_refused_naming_the_field(world: World, factory: Factory,
                                               change: dict[str, Any], field: str) -> None:
    refused(factory, "developer", "POST", TASKS, {**TASK, **change}, field)
    assert [t["id"] for t in factory.api("developer", "GET", TASKS)["items"]] == \
        [world.task_id]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/spaces/acme/environments", {"name": "Pre Prod"}, "name"),
    ("/spaces/acme/environments", {"name": "qa", "position": -1}, "position"),
    ("/spaces/acme/credentials", {"name": "k", "kind": "ssh_key", "secret": "not a key"},
     "secret"),
    ("/spaces/acme/credentials", {"name": "k", "kind": "telepathy", "secret": "x"}, "kind"),
    ("/spaces/acme/credentials", {"name": "k", "kind": "token", "secret": ""}, "secret"),
])
def test_other_input_is_refused_naming_the_field(world: World, factory: Factory, path: str,
                                                body: dict[str, Any], field: str) -> None:
    refused(factory, "owner", "POST", path, body, field)


def test_a_missing_body_and_malformed_json_are_refused_as_json(world: World,
                                                               factory: Factory) -> None:
    headers = {**factory.headers("master"), "Content-Type": "application/json"}
    for content in (b"", b"{not json", b"[]"):
        response = factory.client.post(f"/api/v1{SERVERS}", content=content, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid"
        assert "field" in response.json()


def test_unknown_paths_and_methods_answer_json(world: World, factory: Factory) -> None:
    missing = factory.client.get("/api/v1/no/such/thing", headers=factory.headers("root"))
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    wrong = factory.client.put("/api/v1/spaces", headers=factory.headers("root"))
    assert (wrong.status_code, wrong.json()["code"]) == (405, "method_not_allowed")


# -- oversized bodies -----------------------------------------------------------------------

LIMIT = 4096


@pytest.fixture
def small_client(world: World, runtime: Runtime) -> Iterator[TestClient]:
    runtime.settings.max_body_bytes = LIMIT
    yield TestClient(create_app(runtime=runtime), base_url=BASE_URL)


def server_body(size: int) -> bytes:
    """A valid server as JSON, padded with spaces to exactly ``size`` bytes."""
    body = b'{"name": "web-9", "host": "10.0.0.9"}'
    return body + b" " * (size - len(body))


def test_a_body_over_the_limit_is_refused_with_413(small_client: TestClient,
                                                   factory: Factory) -> None:
    headers = {**factory.headers("master"), "Content-Type": "application/json"}
    response = small_client.post(f"/api/v1{SERVERS}", content=server_body(LIMIT + 1),
                                 headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert small_client.get(f"/api/v1{SERVERS}/web-9",
                            headers=factory.headers("master")).status_code == 404


def test_a_streamed_body_over_the_limit_is_refused_with_413(small_client: TestClient,
                                                            factory: Factory) -> None:
    # No Content-Length: the limit must hold while the body arrives.
    def chunks() -> Iterator[bytes]:
        body = server_body(LIMIT * 2)
        for start in range(0, len(body), 1024):
            yield body[start:start + 1024]

    headers = {**factory.headers("master"), "Content-Type": "application/json"}
    response = small_client.post(f"/api/v1{SERVERS}", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_a_body_at_the_limit_is_accepted(small_client: TestClient, factory: Factory) -> None:
    headers = {**factory.headers("master"), "Content-Type": "application/json"}
    response = small_client.post(f"/api/v1{SERVERS}", content=server_body(LIMIT),
                                 headers=headers)
    assert response.status_code == 201, response.text
