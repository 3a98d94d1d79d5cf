"""Factories for test data: users with tokens, spaces, real git repos, and a "world" with
one of everything, built through the same services and API the product uses."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.auth.rbac import Principal
from shipyard.models import Role
from shipyard.services import accounts, lookup, spaces, users
from shipyard.services.context import Runtime, unit_of_work

PASSWORD = "correct-horse-battery"
ROLES = ("owner", "master", "developer", "reporter")


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com",
                "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com",
                **(env or {})}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=full_env).stdout.strip()


def make_repo(path: Path, *, branch: str = "main", files: dict[str, str] | None = None) -> Path:
    """A real git repository with one commit on ``branch``."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", branch, str(path)], check=True)
    for name, content in (files or {"index.html": "<h1>v1</h1>\n"}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first commit")
    return path


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    for name, content in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class World:
    """Space ``acme`` with a member of each role, a ``submitter`` developer who owns the
    pending task, SUPER ``root``, and ``outsider`` who only belongs to space ``other``."""

    space: str = "acme"
    project: str = "shop"
    repo: Path | None = None
    task_id: int = 0
    users: dict[str, str] = field(default_factory=dict)  # role -> username


class Factory:
    def __init__(self, runtime: Runtime, client: Any, tmp_path: Path) -> None:
        self.runtime = runtime
        self.client = client
        self.tmp_path = tmp_path
        self.tokens: dict[str, str] = {}
        self.spaces_made: set[str] = set()

    # -- users and tokens ---------------------------------------------------------------

    def user(self, username: str, *, is_super: bool = False, password: str = PASSWORD) -> str:
        """Create a user (once) and return an API token for them."""
        if username in self.tokens:
            return self.tokens[username]
        with unit_of_work(self.runtime) as ctx:
            ctx.who = Principal(user_id=0, username="test", is_super=True)
            user = users.create_user(ctx, users.UserSpec(username=username, password=password,
                                                         is_super=is_super))
            _, plain = accounts.create_token(ctx, user, accounts.TokenSpec(name="test"))
        self.tokens[username] = plain
        return plain

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.user(username)}"}

    def api(self, username: str | None, method: str, path: str, *, expect: int | None = 200,
            **kwargs: Any) -> Any:
        headers = self.headers(username) if username else {}
        response = self.client.request(method, f"/api/v1{path}", headers=headers, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (method, path, response.status_code,
                                                    response.text)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # -- spaces -------------------------------------------------------------------------

    def space(self, name: str, members: dict[str, str] | None = None) -> str:
        self.spaces_made.add(name)
        for username in members or {}:
            self.user(username)
        with unit_of_work(self.runtime) as ctx:
            ctx.who = Principal(user_id=0, username="test", is_super=True)
            space = spaces.create_space(ctx, spaces.SpaceSpec(name=name))
            for username, role in (members or {}).items():
                spaces.set_member(ctx, space, username, Role.parse(role))
        return name

    def member(self, space: str, username: str, role: str) -> None:
        self.user(username)
        with unit_of_work(self.runtime) as ctx:
            ctx.who = Principal(user_id=0, username="test", is_super=True)
            spaces.set_member(ctx, lookup.space(ctx, space), username, Role.parse(role))

    def repo(self, name: str = "repo", **kwargs: Any) -> Path:
        return make_repo(self.tmp_path / "repos" / name, **kwargs)

    # -- a world with one of everything ---------------------------------------------------

    def world(self, *, approvals: int = 1) -> World:
        world = World(users={role: role for role in ROLES})
        self.user("root", is_super=True)
        self.space("acme", {role: role for role in ROLES} | {"submitter": "developer"})
        self.space("other", {"outsider": "owner"})
        world.users.update(submitter="submitter", root="root", outsider="outsider")
        world.repo = self.repo("shop")
        base = "/spaces/acme"
        for env in ("test", "prod"):
            self.api("owner", "POST", f"{base}/environments", json={"name": env},
                     expect=201)
        self.api("master", "POST", f"{base}/credentials", expect=201,
                 json={"name": "git-token", "kind": "token", "username": "ci",
                       "secret": "s3cr3t-token"})
        for i in (1, 2):
            self.api("master", "POST", f"{base}/servers", expect=201,
                     json={"name": f"web-{i}", "host": f"127.0.0.{i + 1}", "port": 22,
                           "user": "root", "labels": ["web"]})
        self.api("master", "POST", f"{base}/projects", expect=201,
                 json={"name": "shop", "repo": str(world.repo), "default_branch": "main"})
        self.api("master", "POST", f"{base}/projects/shop/targets", expect=201,
                 json={"environment": "test", "labels": ["web"], "webroot": "/srv/www/shop",
                       "releases": "/srv/releases/shop", "approval": {"required": approvals}})
        task = self.api("submitter", "POST", f"{base}/tasks", expect=201,
                        json={"project": "shop", "environment": "test", "title": "first"})
        world.task_id = task["id"]
        return world


@dataclass
class DeployWorld:
    """A space ``ops`` whose target ``app/test`` deploys to real fleet hosts."""

    space: str
    project: str
    environment: str
    repo: Path
    base: str  # unique /srv/<base> per world: the shared fleet keeps state across tests
    hosts: list[Any]

    @property
    def webroot(self) -> str:
        return f"/srv/{self.base}/www"

    @property
    def releases(self) -> str:
        return f"/srv/{self.base}/releases"

    def path_on(self, host: Any, remote: str) -> Path:
        """Where ``remote`` (a path under /srv on the host) is seen from this machine."""
        return Path(host.host_dir) / remote.removeprefix("/srv/")


def _deploy_world(self: Factory, hosts: list[Any], *, approvals: int = 0,
                  target: dict[str, Any] | None = None, project: dict[str, Any] | None = None,
                  files: dict[str, str] | None = None) -> DeployWorld:
    import secrets as _secrets

    base = "w" + _secrets.token_hex(4)
    self.user("root", is_super=True)
    if "ops" not in self.spaces_made:
        self.space("ops", {"lead": "master", "dev": "developer", "viewer": "reporter"})
        for env in ("test", "prod"):
            self.api("root", "POST", "/spaces/ops/environments", json={"name": env},
                     expect=201)
        self.api("lead", "POST", "/spaces/ops/credentials", expect=201,
                 json={"name": "fleet-key", "kind": "ssh_key",
                       "secret": hosts[0].client_private_key})
    for host in hosts:
        found = self.api("lead", "GET", f"/spaces/ops/servers/{host.name}", expect=None)
        if found.get("code") == "not_found":
            self.api("lead", "POST", "/spaces/ops/servers", expect=201,
                     json={"name": host.name, "host": host.address, "port": host.port,
                           "user": host.user, "credential": "fleet-key"})
    repo = self.repo(base, files=files or {"index.html": "<h1>v1</h1>\n",
                                           "static/app.js": "console.log(1)\n"})
    self.api("lead", "POST", "/spaces/ops/projects", expect=201,
             json={"name": base, "repo": str(repo), "default_branch": "main",
                   **(project or {})})
    self.api("lead", "POST", f"/spaces/ops/projects/{base}/targets", expect=201,
             json={"environment": "test", "servers": [h.name for h in hosts],
                   "webroot": f"/srv/{base}/www", "releases": f"/srv/{base}/releases",
                   "approval": {"required": approvals}, **(target or {})})
    return DeployWorld(space="ops", project=base, environment="test", repo=repo, base=base,
                       hosts=list(hosts))


def _deploy(self: Factory, world: DeployWorld, *, ref: str | None = None,
            servers: list[str] | None = None, user: str = "dev",
            expect_state: str | None = "succeeded", timeout: float = 90) -> dict[str, Any]:
    """Submit, start and wait for a deploy task; return the final task."""
    body: dict[str, Any] = {"project": world.project, "environment": world.environment,
                            "title": "deploy"}
    if ref:
        body["ref"] = ref
    if servers is not None:
        body["servers"] = servers
    task = self.api(user, "POST", f"/spaces/{world.space}/tasks", json=body, expect=201)
    self.api(user, "POST", f"/spaces/{world.space}/tasks/{task['id']}/start")
    return self.wait(world.space, task["id"], expect_state=expect_state, timeout=timeout)


def _wait(self: Factory, space: str, task_id: int, *, expect_state: str | None = "succeeded",
          timeout: float = 90) -> dict[str, Any]:
    """Poll until the task is final (bounded); assert its state if given."""
    import time as _time

    deadline = _time.monotonic() + timeout
    final = {"succeeded", "failed", "cancelled", "interrupted", "rejected"}
    while True:
        task = self.api("root", "GET", f"/spaces/{space}/tasks/{task_id}")
        if task["state"] in final:
            break
        assert _time.monotonic() < deadline, f"task {task_id} still {task['state']}"
        _time.sleep(0.1)
    if expect_state:
        assert task["state"] == expect_state, task
    return task


Factory.deploy_world = _deploy_world  # type: ignore[attr-defined]
Factory.deploy = _deploy  # type: ignore[attr-defined]
Factory.wait = _wait  # type: ignore[attr-defined]
