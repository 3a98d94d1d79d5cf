"""Browser tests: Debian's Chromium, driven by Playwright for Python, against a real
``shipyard serve`` subprocess and the sshd test fleet.

Per test session (so per xdist worker): one server on a free loopback port, with its own
data dir and SQLite file, set up through the REST API the way a team would (space ``e2e``
with a member of each role, environment ``test``, the fleet's SSH key and its three hosts),
and one browser. Each test makes its own project (a real git repo) and target, so tests
share no deploy lock and no release dir.

Where Chromium is missing the tests are skipped, or fail when ``CI`` is set. Tests save
screenshots of the main pages to ``docs/screenshots/`` (the README shows some)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import commit, make_repo
from tests.fleet.harness import Fleet, FleetHost

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
# Screenshots go to the build's output dir; SHIPYARD_SCREENSHOTS=docs/screenshots refreshes
# the ones the README shows.
SCREENSHOTS = Path(os.environ.get("SHIPYARD_SCREENSHOTS")
                   or Path(__file__).resolve().parents[2] / ".test-output" / "screenshots")
VIEWPORT = {"width": 1280, "height": 800}
SERVER_START_TIMEOUT = 120.0  # seconds: migrations on a fresh SQLite file, then uvicorn
DEPLOY_TIMEOUT = 120.0  # seconds a test deploy (a few hosts, a small repo) may take at most
ADMIN_PASSWORD = "admin-" + secrets.token_hex(8)
PASSWORD = "e2e-" + secrets.token_hex(8)

# Records CSP violations where the test can see them (Chromium's own "Refused to ..."
# console errors are caught too). Playwright injects it over CDP, so the CSP allows it.
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + e.blockedURI);
});
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives a real browser against a running "
                                       "Shipyard (tests/e2e)")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium: skip without it, or fail when CI is set (CI installs it)."""
    if os.access(CHROMIUM, os.X_OK):
        return str(CHROMIUM)
    reason = f"{CHROMIUM} is missing: apt-get install -y chromium"
    if _in_ci():
        pytest.fail(f"{reason} (CI is set: browser tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


# -- a running Shipyard -----------------------------------------------------------------------

class _PortTaken(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process goes, so a killed run leaves no server."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class ShipyardServer:
    """``shipyard serve`` as a user starts it, on a free 127.0.0.1 port, with its own data
    dir and SQLite file. Launched at once; ``ready()`` waits for ``/healthz`` (so the
    server starts up while the fleet and the browser do)."""

    def __init__(self, workdirs: Callable[[], Path]) -> None:
        self._workdirs = workdirs
        self._ready = False
        self._launch()

    def _launch(self) -> None:
        workdir = self._workdirs()
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.home = workdir / "home"
        self.database = workdir / "shipyard.db"  # tests may write to it directly
        self.log = workdir / "server.log"  # its stdout and stderr
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
        env.update(SHIPYARD_HOME=str(self.home), SHIPYARD_HOST="127.0.0.1",
                   SHIPYARD_PORT=str(port), SHIPYARD_ALLOW_LOCAL_REPOS="true",
                   SHIPYARD_ADMIN_PASSWORD=ADMIN_PASSWORD,
                   SHIPYARD_DATABASE_URL=f"sqlite:///{self.database}")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shipyard.cli.main", "serve"], cwd=workdir, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, with the ssh it starts
                preexec_fn=(_die_with_parent if threading.current_thread()
                            is threading.main_thread() else None))

    def ready(self) -> ShipyardServer:
        """Return once the server answers /healthz (bounded); relaunch on another port if
        a parallel worker took ours."""
        if self._ready:
            return self
        for _attempt in range(3):
            try:
                self._wait_healthy()
            except _PortTaken:
                self._launch()
                continue
            self._ready = True
            return self
        raise RuntimeError("no free port for shipyard serve after 3 attempts")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if "address already in use" in tail.lower():
                    raise _PortTaken
                raise RuntimeError(f"shipyard serve exited ({self.proc.returncode}):\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"shipyard serve did not answer /healthz within "
                           f"{SERVER_START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@pytest.fixture(scope="session")
def shipyard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipyardServer]:
    """A launched server of this worker (call ``ready()`` before use); stopped at the end."""
    server = ShipyardServer(lambda: tmp_path_factory.mktemp("shipyard"))
    try:
        yield server
    finally:
        server.stop()


# -- the REST API, for setting things up ------------------------------------------------------

class Api:
    """The REST API, as any user (each gets a personal token by logging in once)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=f"{url}/api/v1", timeout=30)
        self.tokens: dict[str, str] = {}

    def login(self, username: str, password: str) -> None:
        response = self.http.post("/auth/token", json={
            "username": username, "password": password, "token_name": "e2e"})
        assert response.status_code == 201, response.text
        self.tokens[username] = response.json()["token"]

    def __call__(self, user: str, method: str, path: str, *, expect: int | None = 200,
                 **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs, headers={
            "Authorization": f"Bearer {self.tokens[user]}"})
        if expect is not None:
            assert response.status_code == expect, (method, path, response.status_code,
                                                    response.text)
        return response.json() if response.content else None

    def close(self) -> None:
        self.http.close()


@dataclass
class Project:
    """A project with one target (environment ``test``) on some fleet hosts."""

    name: str
    repo: Path
    hosts: list[FleetHost]

    @property
    def webroot(self) -> str:
        return f"/srv/{self.name}/www"

    @property
    def releases(self) -> str:
        return f"/srv/{self.name}/releases"

    def live_release_on(self, host: FleetHost) -> str:
        """The release the host's webroot symlink points at, read from its /srv."""
        link = Path(host.host_dir) / self.name / "www"
        return Path(os.readlink(link)).name


@dataclass
class Stage:
    """What the tests work with: the server, its API, the fleet, and space ``e2e``."""

    server: ShipyardServer
    api: Api
    fleet: Fleet
    workdir: Path
    space: str = "e2e"
    environment: str = "test"
    # username -> role in the space; every one logs in with PASSWORD
    members: dict[str, str] = field(default_factory=lambda: {
        "owner": "owner", "lead": "master", "dev": "developer", "viewer": "reporter"})

    def project_repo(self, name: str) -> Path:
        """A real git repo with two commits on ``main``."""
        repo = make_repo(self.workdir / "repos" / name, files={"index.html": "<h1>v1</h1>\n"})
        commit(repo, {"index.html": "<h1>v2</h1>\n", "about.html": "<p>about</p>\n"},
               "Add the about page")
        return repo

    def project(self, *, approvals: int = 0, hooks: dict[str, str] | None = None,
                hosts: list[FleetHost] | None = None) -> Project:
        """A new project (see ``project_repo``) and its target in ``test`` on fleet hosts."""
        name = "p" + secrets.token_hex(4)
        repo = self.project_repo(name)
        chosen = list(hosts or self.fleet.hosts)
        project = Project(name=name, repo=repo, hosts=chosen)
        self.api("lead", "POST", f"/spaces/{self.space}/projects", expect=201, json={
            "name": name, "repo": str(repo), "default_branch": "main"})
        self.api("lead", "POST", f"/spaces/{self.space}/projects/{name}/targets", expect=201,
                 json={"environment": self.environment, "servers": [h.name for h in chosen],
                       "webroot": project.webroot, "releases": project.releases,
                       "hooks": hooks or {}, "approval": {"required": approvals}})
        return project

    def submit(self, project: Project, *, user: str = "dev", ref: str | None = None,
               title: str = "deploy") -> dict[str, Any]:
        body = {"project": project.name, "environment": self.environment, "title": title}
        if ref:
            body["ref"] = ref
        return self.api(user, "POST", f"/spaces/{self.space}/tasks", json=body,  # type: ignore[no-any-return]
                        expect=201)

    def deploy(self, project: Project, *, user: str = "dev", ref: str | None = None,
               title: str = "deploy") -> dict[str, Any]:
        """Submit, start and wait for a deploy that needs no approval; the final task."""
        task = self.submit(project, user=user, ref=ref, title=title)
        self.api(user, "POST", f"/spaces/{self.space}/tasks/{task['id']}/start")
        return self.wait(task["id"])

    def wait(self, task_id: int, state: str = "succeeded",
             timeout: float = DEPLOY_TIMEOUT) -> dict[str, Any]:
        final = {"succeeded", "failed", "cancelled", "interrupted", "rejected"}
        deadline = time.monotonic() + timeout
        while True:
            task = self.api("owner", "GET", f"/spaces/{self.space}/tasks/{task_id}")
            if task["state"] in final:
                break
            assert time.monotonic() < deadline, f"task {task_id} still {task['state']}"
            time.sleep(0.1)
        assert task["state"] == state, task
        return task  # type: ignore[no-any-return]

    def pending_approvals(self) -> int:
        page = self.api("owner", "GET", f"/spaces/{self.space}/tasks",
                        params={"state": "pending_approval", "limit": 200})
        return len(page["items"])


@pytest.fixture(scope="session")
def stage(shipyard_server: ShipyardServer, fleet: Fleet,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    api = Api(shipyard_server.ready().url)
    api.login("admin", ADMIN_PASSWORD)
    world = Stage(shipyard_server, api, fleet, tmp_path_factory.mktemp("e2e"))
    api("admin", "POST", "/spaces", expect=201, json={"name": world.space,
                                                       "display_name": "Web team"})
    for username, role in world.members.items():
        api("admin", "POST", "/users", expect=201,
            json={"username": username, "password": PASSWORD})
        api("admin", "PUT", f"/spaces/{world.space}/members/{username}", json={"role": role})
        api.login(username, PASSWORD)  # only members of a space may log in
    api("owner", "POST", f"/spaces/{world.space}/environments", expect=201,
        json={"name": world.environment})
    api("lead", "POST", f"/spaces/{world.space}/credentials", expect=201, json={
        "name": "fleet-key", "kind": "ssh_key", "secret": fleet.hosts[0].client_private_key})
    for host in fleet.hosts:
        api("lead", "POST", f"/spaces/{world.space}/servers", expect=201, json={
            "name": host.name, "host": host.address, "port": host.port, "user": host.user,
            "labels": ["web"], "credential": "fleet-key"})
    try:
        yield world
    finally:
        api.close()


# -- the browser ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class UI:
    """One browser tab with its own cookies, and what a user does with it. Console
    errors, uncaught exceptions and CSP violations are collected in ``problems``."""

    def __init__(self, page: Any, stage: Stage) -> None:
        self.page = page
        self.stage = stage
        self.problems: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.problems.append(f"{page.url}: uncaught {exc}"))

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"{self.page.url}: console error: {message.text}")

    def open(self, path: str) -> Any:
        response = self.page.goto(path)
        assert response is not None and response.ok, (path, response and response.status)
        return self.page

    def space_path(self, path: str = "") -> str:
        return f"/s/{self.stage.space}/{path.lstrip('/')}"

    def login(self, username: str, password: str = PASSWORD) -> None:
        """Log in through the form, as a person does."""
        self.open("/login")
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        with self.page.expect_navigation():
            self.page.click("form[action='/login'] button[type=submit]")
        assert "/login" not in self.page.url, self.page.locator(".error-box").all_inner_texts()

    def logout(self) -> None:
        with self.page.expect_navigation():
            self.page.click("form[action='/logout'] button")
        assert self.page.url.endswith("/login")

    def csrf(self) -> str:
        token = self.page.get_attribute("meta[name=csrf-token]", "content")
        assert token
        return str(token)

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        """A PNG of the page in docs/screenshots (overwritten on every run)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page, type="png")
        return path


@pytest.fixture
def browse(shipyard_server: ShipyardServer, browser: Any,
           stage: Stage) -> Iterator[Callable[..., UI]]:
    """``browse(locale="en-US")``: a fresh tab (new cookie jar). At the end of the test,
    fails it if any page logged an error or broke the CSP."""
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    opened: list[tuple[Any, UI]] = []

    def open_tab(locale: str = "en-US") -> UI:
        context = browser.new_context(base_url=stage.server.url, viewport=VIEWPORT,
                                      locale=locale, timezone_id="UTC")
        context.set_default_timeout(30_000)
        context.add_init_script(CSP_WATCH)
        ui = UI(context.new_page(), stage)
        opened.append((context, ui))
        return ui

    yield open_tab
    problems = [p for _, ui in opened for p in ui.problems]
    for context, _ in opened:
        context.close()
    if problems:
        pytest.fail("the pages reported problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def ui(browse: Callable[..., UI]) -> UI:
    return browse()
